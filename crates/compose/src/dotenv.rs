//! `.env` / `--env-file` parsing with compose-go's dotenv rules: `KEY=VALUE` or `KEY: VALUE`,
//! optional `export `, `#` comments (inline only after whitespace in unquoted values),
//! single quotes (literal, may span lines), double quotes (escapes, `${VAR}` expansion, may span
//! lines), unquoted values trimmed and expanded, and a bare `KEY` taken from the environment.

use crate::interpolate::{substitute, TemplateError};

/// A dotenv parse failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DotenvError {
    /// A character not allowed in a variable name (`near` is the rest of the line).
    #[error("line {line}: unexpected character \"{ch}\" in variable name \"{near}\"")]
    BadName { line: usize, ch: char, near: String },
    /// A name with a space inside.
    #[error("line {line}: key cannot contain a space")]
    SpaceInKey { line: usize },
    /// A quoted value without its closing quote.
    #[error("line {line}: unterminated quoted value")]
    Unterminated { line: usize },
    /// `${...}` expansion failed inside the file.
    #[error("line {line}: {reason}")]
    Expand { line: usize, reason: String },
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '[' | ']')
}

/// Parse dotenv `src`; `lookup` resolves variables not defined earlier in the file (the OS
/// environment). Returns the pairs in file order (a later duplicate overrides an earlier one).
pub fn parse(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    parse_with(src, lookup, &|_| None)
}

/// [`parse`], where a key `wins` knows takes that value instead of the file's (compose-go's
/// project `.env`: the OS environment wins, also for later expansions in the file).
pub fn parse_with(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    wins: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let src = src.replace("\r\n", "\n");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest: &str = &src;
    let mut line = 1usize;
    while !rest.is_empty() {
        // one logical line
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let (raw_line, after) = match trimmed.find('\n') {
            Some(n) => (&trimmed[..n], &trimmed[n + 1..]),
            None => (trimmed, ""),
        };
        let this_line = line;
        if raw_line.trim().is_empty() || raw_line.starts_with('#') {
            rest = after;
            line += 1;
            continue;
        }
        let mut body = raw_line;
        if let Some(b) = body.strip_prefix("export ") {
            body = b.trim_start();
        }
        let sep = body.find(['=', ':']);
        let (name, value_start) = match sep {
            Some(n) => (body[..n].trim_end(), Some(n + 1)),
            None => (body.trim_end(), None),
        };
        if name.contains([' ', '\t']) {
            return Err(DotenvError::SpaceInKey { line: this_line });
        }
        if let Some(ch) = name.chars().find(|c| !valid_name_char(*c)) {
            return Err(DotenvError::BadName {
                line: this_line,
                ch,
                near: body.to_string(),
            });
        }
        let name = name.to_string();
        let Some(vs) = value_start else {
            // bare KEY: inherit from the environment when set
            if let Some(v) = lookup(&name) {
                out.push((name, v));
            }
            rest = after;
            line += 1;
            continue;
        };
        // the value may span lines when quoted: work on the remainder of the whole input
        let offset = trimmed.len() - raw_line.len();
        let _ = offset;
        let value_region = &trimmed[(body.as_ptr() as usize - trimmed.as_ptr() as usize) + vs..];
        let value_region = value_region.trim_start_matches([' ', '\t']);
        // compose-go expands with the environment first, then the file's earlier values
        let lookup_now = |k: &str| {
            lookup(k).or_else(|| {
                out.iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            })
        };
        let expand = |s: &str| -> Result<String, DotenvError> {
            let mut w = Vec::new();
            substitute(s, &lookup_now, &mut w).map_err(|e| DotenvError::Expand {
                line: this_line,
                reason: match e {
                    TemplateError::Invalid => format!("invalid interpolation format in {s:?}"),
                    TemplateError::Required(n, r) if r.is_empty() => {
                        format!("required variable {n} is missing a value")
                    }
                    TemplateError::Required(n, r) => {
                        format!("required variable {n} is missing a value: {r}")
                    }
                },
            })
        };
        let (value, consumed) = match value_region.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let body = &value_region[1..];
                let mut end = None;
                let bytes = body.as_bytes();
                let mut k = 0;
                while k < bytes.len() {
                    if q == '"' && bytes[k] == b'\\' {
                        k += 2;
                        continue;
                    }
                    if bytes[k] == q as u8 {
                        end = Some(k);
                        break;
                    }
                    k += 1;
                }
                let end = end.ok_or(DotenvError::Unterminated { line: this_line })?;
                let inner = &body[..end];
                let v = if q == '\'' {
                    inner.to_string()
                } else {
                    expand(&unescape(inner))?
                };
                (v, 1 + end + 1)
            }
            _ => {
                let l = value_region.find('\n').unwrap_or(value_region.len());
                let mut v = &value_region[..l];
                // an inline comment starts at ` #`
                if let Some(p) = v.find(" #").or_else(|| v.find("\t#")) {
                    v = &v[..p];
                }
                (expand(v.trim())?, l)
            }
        };
        let consumed_text = &value_region[..consumed];
        line += 1 + consumed_text.matches('\n').count();
        let tail = &value_region[consumed..];
        rest = match tail.find('\n') {
            Some(n) => &tail[n + 1..],
            None => "",
        };
        let value = match wins(&name) {
            Some(v) => v,
            None => value,
        };
        out.retain(|(n, _)| *n != name);
        out.push((name, value));
    }
    Ok(out)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            // compose-go: \n and \r are control characters, `\X` is X except before `$`
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('$') => out.push_str("\\$"),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        parse(s, &|k| (k == "HOSTVAR").then(|| "fromhost".to_string())).unwrap()
    }
    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn rules() {
        let src = "# comment\n\nA=1\nexport B = two words # note\nC='single $A # kept'\nD=\"dq ${A} \\\"x\\\"\\nnl\"\nE: colon\nHOSTVAR\nMISSING\nF=${B}-${HOSTVAR}\nG=\"multi\nline\"\nH='a\nb'\nI=\nJ=x#nocomment\n";
        assert_eq!(
            p(src),
            kv(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "single $A # kept"),
                ("D", "dq 1 \"x\"\nnl"),
                ("E", "colon"),
                ("HOSTVAR", "fromhost"),
                ("F", "two words-fromhost"),
                ("G", "multi\nline"),
                ("H", "a\nb"),
                ("I", ""),
                ("J", "x#nocomment"),
            ])
        );
    }

    #[test]
    fn environment_first() {
        let os = |k: &str| (k == "A").then(|| "os".to_string());
        let got = parse_with("A=file\nB=${A}\nC=\"t\\tx\\$A\"\n", &os, &os).unwrap();
        assert_eq!(got, kv(&[("A", "os"), ("B", "os"), ("C", "ttx\\os")]));
        // without `wins` the file's value is kept, but expansions still see the environment first
        assert_eq!(
            parse("A=file\nB=${A}\n", &os).unwrap(),
            kv(&[("A", "file"), ("B", "os")])
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("A=1\nB C=2\n", &|_| None).unwrap_err().to_string(),
            "line 2: key cannot contain a space"
        );
        assert_eq!(
            parse("A=1\n\nB*C=2\n", &|_| None).unwrap_err().to_string(),
            "line 3: unexpected character \"*\" in variable name \"B*C=2\""
        );
        assert_eq!(
            parse("A=\"open\n", &|_| None).unwrap_err(),
            DotenvError::Unterminated { line: 1 }
        );
        assert!(parse("A=${X:?need}\n", &|_| None)
            .unwrap_err()
            .to_string()
            .contains("required variable X is missing a value: need"));
    }
}
