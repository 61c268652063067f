//! `.dockerignore` patterns (docker's `patternmatcher` rules): one pattern per line, `#`
//! comments, paths cleaned and relative to the context root, `*`/`?`/`[...]` within a path
//! component, `**` across any number of components, `!` re-includes; the last matching pattern
//! wins, and a pattern matching a directory matches everything below it.

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Shell-style match of one component (`*`, `?`, `[a-z]`, `[^a]`, `\x`).
pub fn match_component(pat: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        if p.is_empty() {
            return n.is_empty();
        }
        match p[0] {
            '*' => (0..=n.len()).any(|k| m(&p[1..], &n[k..])),
            '?' => !n.is_empty() && m(&p[1..], &n[1..]),
            '[' => {
                if n.is_empty() {
                    return false;
                }
                let mut i = 1;
                let neg = p.get(1) == Some(&'^') || p.get(1) == Some(&'!');
                if neg {
                    i += 1;
                }
                let mut matched = false;
                let mut first = true;
                while i < p.len() && (first || p[i] != ']') {
                    first = false;
                    let lo = p[i];
                    if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                        if lo <= n[0] && n[0] <= p[i + 2] {
                            matched = true;
                        }
                        i += 3;
                    } else {
                        if lo == n[0] {
                            matched = true;
                        }
                        i += 1;
                    }
                }
                if i >= p.len() {
                    return false;
                }
                matched != neg && m(&p[i + 1..], &n[1..])
            }
            '\\' if p.len() > 1 => !n.is_empty() && n[0] == p[1] && m(&p[2..], &n[1..]),
            c => !n.is_empty() && n[0] == c && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

/// Whether the component pattern list matches the path components (a prefix match counts:
/// the pattern names a parent directory).
fn match_path(pat: &[String], path: &[&str], prefix_ok: bool) -> bool {
    if pat.is_empty() {
        return path.is_empty() || prefix_ok;
    }
    if pat[0] == "**" {
        return (0..=path.len()).any(|k| match_path(&pat[1..], &path[k..], prefix_ok));
    }
    !path.is_empty()
        && match_component(&pat[0], path[0])
        && match_path(&pat[1..], &path[1..], prefix_ok)
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let c = clean(p);
            if c.is_empty() {
                continue;
            }
            patterns.push((neg, c));
        }
        Ignore { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a path relative to the context root, `/`-separated) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut ex = false;
        for (neg, pat) in &self.patterns {
            if match_path(pat, &parts, true) {
                ex = !neg;
            }
        }
        ex
    }

    /// Whether some `!` exception could re-include something below directory `rel`
    /// (so an excluded directory must still be walked).
    pub fn may_reinclude_below(&self, rel: &str) -> bool {
        let depth = rel.split('/').filter(|c| !c.is_empty()).count();
        self.patterns
            .iter()
            .any(|(neg, p)| *neg && (p.len() > depth || p.iter().any(|c| c == "**")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let i = Ignore::parse("# comment\n*.md\n!README.md\ntmp\n/build/\n**/*.o\ndocs/**/x\n");
        assert!(i.excluded("a.md"));
        assert!(!i.excluded("README.md"));
        assert!(!i.excluded("sub/a.md"), "* does not cross /");
        assert!(i.excluded("tmp"));
        assert!(
            i.excluded("tmp/deep/file"),
            "a matched dir excludes its contents"
        );
        assert!(i.excluded("build/out"));
        assert!(i.excluded("x.o"));
        assert!(i.excluded("a/b/c.o"));
        assert!(i.excluded("docs/x"));
        assert!(i.excluded("docs/a/b/x"));
        assert!(!i.excluded("src/main.rs"));
        assert!(!i.may_reinclude_below("tmp/a/b"));
        assert!(i.may_reinclude_below(""));
    }

    #[test]
    fn components() {
        assert!(match_component("a?c", "abc"));
        assert!(match_component("[a-c]x", "bx"));
        assert!(!match_component("[^a-c]x", "bx"));
        assert!(match_component("*.txt", ".txt"));
        assert!(match_component("\\*", "*"));
        assert!(!match_component("\\*", "a"));
    }

    #[test]
    fn last_match_wins() {
        let i = Ignore::parse("*\n!keep\nkeep/secret\n");
        assert!(i.excluded("other"));
        assert!(!i.excluded("keep"));
        assert!(!i.excluded("keep/file"));
        assert!(i.excluded("keep/secret"));
    }
}
