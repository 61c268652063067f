//! The Dockerfile syntax, per <https://docs.docker.com/reference/dockerfile/>.
//!
//! [`parse`] turns the text into [`Instruction`]s (parser directives, comments, line
//! continuations, heredocs, `--flags`, JSON vs shell form). Variable expansion happens later,
//! per instruction, with [`expand`] / [`expand_words`], because ARG/ENV scoping depends on the
//! instructions executed before.

use std::collections::HashMap;

/// A syntax or expansion error, naming file, line and instruction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {instruction}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub instruction: String,
    pub message: String,
}

/// A heredoc body (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Whether the delimiter was unquoted (the body is then subject to expansion).
    pub expand: bool,
    /// Whether `<<-` (leading tabs stripped).
    pub strip_tabs: bool,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// Upper-case keyword (`RUN`, `COPY`...).
    pub keyword: String,
    /// Leading `--name=value` flags (name without dashes; value empty when absent).
    pub flags: Vec<(String, String)>,
    /// The arguments after the flags, raw (continuations joined).
    pub rest: String,
    /// The JSON (exec) form, when `rest` is a JSON array of strings.
    pub json: Option<Vec<String>>,
    pub heredocs: Vec<Heredoc>,
    /// The whole logical line as written (for messages and history).
    pub original: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub file: String,
    pub escape: char,
    pub directives: HashMap<String, String>,
    pub instructions: Vec<Instruction>,
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

fn err(file: &str, line: usize, instruction: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        file: file.to_string(),
        line,
        instruction: instruction.to_string(),
        message: message.into(),
    }
}

/// Parses a parser directive line `# key=value`.
fn directive(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    let t = t.strip_prefix('#')?;
    let (k, v) = t.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// Parses `text` (the contents of `file`).
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut directives = HashMap::new();
    let mut i = 0;
    while i < lines.len() {
        match directive(lines[i]) {
            Some((k, v)) if k == "syntax" || k == "escape" || k == "check" => {
                if directives.contains_key(&k) {
                    return Err(err(
                        file,
                        i + 1,
                        "directive",
                        format!("only one {k} parser directive can be used"),
                    ));
                }
                directives.insert(k, v);
                i += 1;
            }
            _ => break,
        }
    }
    let escape = match directives.get("escape").map(String::as_str) {
        None | Some("\\") => '\\',
        Some("`") => '`',
        Some(o) => {
            return Err(err(
                file,
                i.max(1),
                "directive",
                format!("invalid escape token '{o}' does not match ` or \\"),
            ))
        }
    };
    let mut out = Vec::new();
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        loop {
            let cur = lines[i];
            i += 1;
            let trimmed = cur.trim_end();
            if let Some(body) = trimmed.strip_suffix(escape) {
                logical.push_str(body);
                // Skip comment and empty lines inside a continuation.
                while i < lines.len() && {
                    let t = lines[i].trim_start();
                    t.is_empty() || t.starts_with('#')
                } {
                    i += 1;
                }
                if i >= lines.len() {
                    break;
                }
            } else {
                logical.push_str(cur);
                break;
            }
        }
        let logical = logical.trim().to_string();
        let (kw, rest) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim_start()),
            None => (logical.as_str(), ""),
        };
        let keyword = kw.to_ascii_uppercase();
        if !KEYWORDS.contains(&keyword.as_str()) {
            return Err(err(
                file,
                start + 1,
                kw,
                format!("unknown instruction: {kw}"),
            ));
        }
        let (flags, rest) = split_flags(rest);
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, expand, strip_tabs) in heredoc_names(&rest) {
                let mut content = String::new();
                let mut found = false;
                while i < lines.len() {
                    let mut l = lines[i];
                    i += 1;
                    if strip_tabs {
                        l = l.trim_start_matches('\t');
                    }
                    if l == name {
                        found = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !found {
                    return Err(err(
                        file,
                        start + 1,
                        &keyword,
                        format!("unterminated heredoc {name}"),
                    ));
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    strip_tabs,
                });
            }
        }
        let json = if rest.starts_with('[') {
            serde_json::from_str::<Vec<String>>(&rest).ok()
        } else {
            None
        };
        if rest.is_empty() && heredocs.is_empty() && !matches!(keyword.as_str(), "ONBUILD") {
            return Err(err(
                file,
                start + 1,
                &keyword,
                format!("{keyword} requires at least one argument"),
            ));
        }
        out.push(Instruction {
            line: start + 1,
            keyword,
            flags,
            rest,
            json,
            heredocs,
            original: logical.clone(),
        });
    }
    Ok(Dockerfile {
        file: file.to_string(),
        escape,
        directives,
        instructions: out,
    })
}

/// Splits leading `--flag[=value]` words off `rest`.
pub fn split_flags(rest: &str) -> (Vec<(String, String)>, String) {
    let mut flags = Vec::new();
    let mut r = rest.trim_start();
    while let Some(f) = r.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        if word.is_empty() {
            break;
        }
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        flags.push((k.to_string(), v.to_string()));
        r = f[end..].trim_start();
    }
    (flags, r.to_string())
}

/// Heredoc markers in an instruction line: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`.
fn heredoc_names(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() + 1 {
        if b[i..].starts_with(b"<<") && (i + 2 < b.len()) && b[i + 2] != b'<' {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    j += 1;
                    Some(q)
                }
                _ => None,
            };
            let s = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > s && (quote.is_none() || b.get(j) == quote.as_ref()) {
                out.push((rest[s..j].to_string(), quote.is_none(), strip));
            }
            i = j.max(i + 2);
        } else {
            i += 1;
        }
    }
    out
}

/// Splits `s` into whitespace-separated words, keeping quotes and escapes as written (they are
/// processed by [`expand`] later).
pub fn split_raw_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        if c == escape && quote != Some('\'') {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_word = true;
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Expands variables in `word` and removes quotes and escapes, as the builder does for
/// ENV/ARG/LABEL values, paths, USER, WORKDIR... `lookup` gives variable values.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    Ok(expand_inner(word, escape, lookup, false)?.join(" "))
}

/// Like [`expand`] but splits the result into words on unquoted whitespace (EXPOSE, VOLUME,
/// COPY sources...).
pub fn expand_words(
    s: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    expand_inner(s, escape, lookup, true)
}

fn expand_inner(
    s: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
    split: bool,
) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut has_word = false;
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some('\'') => {
                if c == '\'' {
                    quote = None;
                } else {
                    cur.push(c);
                }
                i += 1;
            }
            Some(_) => {
                if c == '"' {
                    quote = None;
                    i += 1;
                } else if c == escape && i + 1 < chars.len() {
                    let n = chars[i + 1];
                    if n == '"' || n == '$' || n == escape {
                        cur.push(n);
                    } else {
                        cur.push(c);
                        cur.push(n);
                    }
                    i += 2;
                } else if c == '$' {
                    let (v, n) = variable(&chars, i, escape, lookup)?;
                    cur.push_str(&v);
                    i = n;
                } else {
                    cur.push(c);
                    i += 1;
                }
            }
            None => {
                if c == escape && i + 1 < chars.len() {
                    cur.push(chars[i + 1]);
                    has_word = true;
                    i += 2;
                } else if c == '\'' || c == '"' {
                    quote = Some(c);
                    has_word = true;
                    i += 1;
                } else if c == '$' {
                    let (v, n) = variable(&chars, i, escape, lookup)?;
                    if split {
                        // Unquoted expansions are split into words too.
                        for (k, part) in v.split(char::is_whitespace).enumerate() {
                            if k > 0 {
                                if has_word || !cur.is_empty() {
                                    words.push(std::mem::take(&mut cur));
                                }
                                has_word = false;
                            }
                            if !part.is_empty() {
                                cur.push_str(part);
                                has_word = true;
                            }
                        }
                    } else {
                        cur.push_str(&v);
                        has_word |= !v.is_empty();
                    }
                    i = n;
                } else if split && c.is_whitespace() {
                    if has_word || !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                    has_word = false;
                    i += 1;
                } else {
                    cur.push(c);
                    has_word = true;
                    i += 1;
                }
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!(
            "unexpected end of statement while looking for matching {q}"
        ));
    }
    if !split || has_word || !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}

/// Expands the variable reference at `chars[i] == '$'`; returns the value and the next index.
fn variable(
    chars: &[char],
    i: usize,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, usize), String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut j = i + 1;
    if j >= chars.len() {
        return Ok(("$".into(), j));
    }
    if chars[j] == '{' {
        j += 1;
        let s = j;
        while j < chars.len() && name_char(chars[j]) {
            j += 1;
        }
        let name: String = chars[s..j].iter().collect();
        if name.is_empty() {
            return Err("bad substitution: missing variable name".into());
        }
        if j >= chars.len() {
            return Err(format!("missing '}}' in ${{{name}"));
        }
        if chars[j] == '}' {
            return Ok((lookup(&name).unwrap_or_default(), j + 1));
        }
        let colon = chars[j] == ':';
        if colon {
            j += 1;
        }
        let op = *chars
            .get(j)
            .ok_or_else(|| format!("missing '}}' in ${{{name}"))?;
        j += 1;
        // The word runs to the matching '}'.
        let s = j;
        let mut depth = 1;
        while j < chars.len() {
            if chars[j] == escape {
                j += 2;
                continue;
            }
            if chars[j] == '{' {
                depth += 1;
            } else if chars[j] == '}' {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            j += 1;
        }
        if j >= chars.len() {
            return Err(format!("missing '}}' in ${{{name}"));
        }
        let word_raw: String = chars[s..j].iter().collect();
        let word = || expand(&word_raw, escape, lookup);
        let val = lookup(&name);
        let set = match &val {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        let out = match op {
            '-' => {
                if set {
                    val.unwrap_or_default()
                } else {
                    word()?
                }
            }
            '+' => {
                if set {
                    word()?
                } else {
                    String::new()
                }
            }
            '?' => {
                if set {
                    val.unwrap_or_default()
                } else {
                    let m = word()?;
                    return Err(format!(
                        "{name}: {}",
                        if m.is_empty() {
                            "is not allowed to be unset".to_string()
                        } else {
                            m
                        }
                    ));
                }
            }
            o => return Err(format!("unsupported modifier ({o}) in substitution")),
        };
        return Ok((out, j + 1));
    }
    let s = j;
    while j < chars.len() && name_char(chars[j]) {
        j += 1;
    }
    if j == s {
        return Ok(("$".into(), j));
    }
    let name: String = chars[s..j].iter().collect();
    Ok((lookup(&name).unwrap_or_default(), j))
}

/// Parses `KEY=value ...` pairs (ENV, LABEL, ARG) or the legacy `KEY value` form (ENV, LABEL)
/// into (raw key, raw value) pairs; the caller expands them.
pub fn key_values(
    rest: &str,
    escape: char,
    legacy_ok: bool,
) -> Result<Vec<(String, Option<String>)>, String> {
    let words = split_raw_words(rest, escape);
    if words.is_empty() {
        return Err("requires at least one argument".into());
    }
    if !words[0].contains('=') && legacy_ok {
        let key = words[0].clone();
        let value = rest.trim_start()[key.len()..].trim().to_string();
        if words.len() == 1 {
            return Err(format!("{key} must have two arguments"));
        }
        // The legacy form keeps the rest verbatim (whitespace included), minus quotes/escapes.
        return Ok(vec![(key, Some(value))]);
    }
    let mut out = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None if !legacy_ok => out.push((w, None)),
            None => {
                return Err(format!(
                    "syntax error - can't find = in \"{w}\". Must be of the form: name=value"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn basic_instructions_and_forms() {
        let df = parse("Dockerfile", "FROM busybox AS b\n# comment\n\nRUN echo hi \\\n  && echo there\nCMD [\"sh\", \"-c\", \"x\"]\nentrypoint [not json\n").unwrap();
        let k: Vec<_> = df.instructions.iter().map(|i| i.keyword.as_str()).collect();
        assert_eq!(k, ["FROM", "RUN", "CMD", "ENTRYPOINT"]);
        assert_eq!(df.instructions[1].rest, "echo hi   && echo there");
        assert_eq!(df.instructions[1].line, 4);
        assert_eq!(
            df.instructions[2].json.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "x".into()][..])
        );
        assert_eq!(df.instructions[3].json, None);
        assert_eq!(df.instructions[3].line, 7);
    }

    #[test]
    fn continuation_skips_comments_and_blank_lines() {
        let df = parse("D", "RUN a \\\n# c\n\n  b\nRUN c").unwrap();
        assert_eq!(df.instructions[0].rest, "a   b");
        assert_eq!(df.instructions[1].line, 5);
    }

    #[test]
    fn escape_directive() {
        let df = parse("D", "# escape=`\nFROM x\nRUN a `\n b\nCOPY c:\\dir d\\\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.instructions[1].rest, "a  b");
        assert_eq!(df.instructions[2].rest, "c:\\dir d\\");
        let df = parse("D", "# syntax=docker/dockerfile:1\n# escape=\\\nFROM x").unwrap();
        assert_eq!(df.directives["syntax"], "docker/dockerfile:1");
        // A directive after an instruction is a comment.
        let df = parse("D", "FROM x\n# escape=`\nRUN a \\\n b").unwrap();
        assert_eq!(df.escape, '\\');
        assert_eq!(df.instructions[1].rest, "a  b");
        assert!(parse("D", "# escape=x\nFROM a").is_err());
    }

    #[test]
    fn errors_name_file_line_instruction() {
        let e = parse("sub/Dockerfile", "FROM a\n\nFOO bar").unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.file, "sub/Dockerfile");
        assert!(e.to_string().contains("sub/Dockerfile:3"), "{e}");
        assert!(e.to_string().contains("unknown instruction: FOO"));
        let e = parse("D", "FROM a\nRUN\n").unwrap_err();
        assert_eq!((e.line, e.instruction.as_str()), (2, "RUN"));
    }

    #[test]
    fn flags() {
        let df = parse(
            "D",
            "COPY --chown=1:2 --from=build a b\nFROM --platform=$BUILDPLATFORM x AS y",
        )
        .unwrap();
        assert_eq!(df.instructions[0].flag("chown"), Some("1:2"));
        assert_eq!(df.instructions[0].flag("from"), Some("build"));
        assert_eq!(df.instructions[0].rest, "a b");
        assert_eq!(df.instructions[1].flag("platform"), Some("$BUILDPLATFORM"));
    }

    #[test]
    fn heredocs() {
        let df = parse(
            "D",
            "FROM x\nRUN <<EOF\necho a\necho b\nEOF\nCOPY <<-'END' /f\n\thello $X\n\tEND\nRUN true",
        )
        .unwrap();
        let r = &df.instructions[1];
        assert_eq!(r.heredocs[0].content, "echo a\necho b\n");
        assert!(r.heredocs[0].expand);
        let c = &df.instructions[2];
        assert_eq!(c.heredocs[0].content, "hello $X\n");
        assert!(!c.heredocs[0].expand);
        assert_eq!(df.instructions[3].keyword, "RUN");
        assert!(parse("D", "RUN <<EOF\nx\n").is_err());
    }

    #[test]
    fn expansion() {
        let v = vars(&[("A", "a"), ("E", ""), ("SP", "x y")]);
        let x = |s: &str| expand(s, '\\', &v).unwrap();
        assert_eq!(x("$A"), "a");
        assert_eq!(x("${A}b"), "ab");
        assert_eq!(x("$Ab"), "");
        assert_eq!(x("${N:-def}"), "def");
        assert_eq!(x("${E:-def}"), "def");
        assert_eq!(x("${E-def}"), "");
        assert_eq!(x("${A:-def}"), "a");
        assert_eq!(x("${A:+alt}"), "alt");
        assert_eq!(x("${N:+alt}"), "");
        assert_eq!(x("${E+alt}"), "alt");
        assert_eq!(x("${N:-${A}x}"), "ax");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "a b");
        assert_eq!(x("\"\\$A\""), "$A");
        assert_eq!(x("hello\\ world"), "hello world");
        assert_eq!(x("a$"), "a$");
        assert!(expand("${N:?must be set}", '\\', &v)
            .unwrap_err()
            .contains("must be set"));
        assert!(expand("${A", '\\', &v).is_err());
        assert!(expand("\"abc", '\\', &v).is_err());
        assert_eq!(expand("`$A", '`', &v).unwrap(), "$A");
        assert_eq!(
            expand_words("$SP \"$SP\" c", '\\', &v).unwrap(),
            ["x", "y", "x y", "c"]
        );
        assert_eq!(expand_words("  ", '\\', &v).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn key_value_forms() {
        let kv = key_values("A=1 B=\"x y\" C=a\\ b", '\\', true).unwrap();
        assert_eq!(kv[1], ("B".into(), Some("\"x y\"".into())));
        assert_eq!(
            expand(kv[2].1.as_deref().unwrap(), '\\', &|_| None).unwrap(),
            "a b"
        );
        let kv = key_values("KEY some value  here", '\\', true).unwrap();
        assert_eq!(kv, vec![("KEY".into(), Some("some value  here".into()))]);
        let kv = key_values("NAME", '\\', false).unwrap();
        assert_eq!(kv, vec![("NAME".into(), None)]);
        assert!(key_values("A=1 B", '\\', true).is_err());
    }
}
