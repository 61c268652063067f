//! Variable interpolation of compose values, as compose-go's `template` package does it:
//! `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`, `${VAR:+r}`, `${VAR+r}`,
//! nesting inside the default/error/replacement part, and `$$` for a literal `$`.
//! Only values are interpolated, never keys (spec: interpolation.md).

use serde_json::Value;

/// An interpolation failure, worded as compose-go words it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterpolateError {
    /// A `$` not followed by `$`, a name or a well-formed `${...}`.
    #[error("invalid interpolation format for {path}.\nYou may need to escape any $ with another $.\n{template}")]
    Invalid { path: String, template: String },
    /// `${VAR:?msg}` / `${VAR?msg}` with the variable unset (or empty for `:?`).
    #[error("error while interpolating {path}: required variable {name} is missing a value{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Required {
        path: String,
        name: String,
        reason: String,
    },
}

/// Why a single string failed (no path yet).
#[derive(Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// Malformed `$` use.
    Invalid,
    /// A required variable is missing: (name, reason).
    Required(String, String),
}

fn is_name_start(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}
fn is_name_char(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphanumeric()
}

/// Substitute variables in `template`; `lookup` returns `None` for an unset variable.
/// Unset variables used without a default yield "" and push compose-go's warning to `warnings`.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, TemplateError> {
    let b = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        out.push_str(&template[lit..i]);
        let next = b.get(i + 1).copied();
        match next {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(c) if is_name_start(c) => {
                let mut j = i + 1;
                while j < b.len() && is_name_char(b[j]) {
                    j += 1;
                }
                let name = &template[i + 1..j];
                out.push_str(&plain(name, lookup, warnings));
                i = j;
            }
            Some(b'{') => {
                // find the matching close brace, counting nested `${`
                let mut depth = 0usize;
                let mut k = i;
                let mut close = None;
                while k < b.len() {
                    if b[k] == b'}' {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(k);
                            break;
                        }
                    }
                    if b[k] == b'$' && b.get(k + 1) == Some(&b'{') {
                        depth += 1;
                        k += 1;
                    }
                    k += 1;
                }
                let close = close.ok_or(TemplateError::Invalid)?;
                let inner = &template[i + 2..close];
                out.push_str(&braced(inner, lookup, warnings)?);
                i = close + 1;
            }
            _ => return Err(TemplateError::Invalid),
        }
        lit = i;
    }
    out.push_str(&template[lit..]);
    Ok(out)
}

fn plain(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> String {
    match lookup(name) {
        Some(v) => v,
        None => {
            warnings.push(format!(
                "The \"{name}\" variable is not set. Defaulting to a blank string."
            ));
            String::new()
        }
    }
}

fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, TemplateError> {
    let b = inner.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) {
        return Err(TemplateError::Invalid);
    }
    let mut j = 1;
    while j < b.len() && is_name_char(b[j]) {
        j += 1;
    }
    let name = &inner[..j];
    if j == b.len() {
        return Ok(plain(name, lookup, warnings));
    }
    let (colon, op_at) = if b[j] == b':' {
        (true, j + 1)
    } else {
        (false, j)
    };
    let op = *b.get(op_at).ok_or(TemplateError::Invalid)?;
    if !matches!(op, b'-' | b'?' | b'+') {
        return Err(TemplateError::Invalid);
    }
    let rest = &inner[op_at + 1..];
    let value = lookup(name);
    let set = value.is_some();
    let usable = if colon {
        value.as_deref().is_some_and(|v| !v.is_empty())
    } else {
        set
    };
    match op {
        b'-' => {
            if usable {
                Ok(value.unwrap_or_default())
            } else {
                substitute(rest, lookup, warnings)
            }
        }
        b'+' => {
            if usable {
                substitute(rest, lookup, warnings)
            } else {
                Ok(String::new())
            }
        }
        _ => {
            if usable {
                Ok(value.unwrap_or_default())
            } else {
                let reason = substitute(rest, lookup, warnings)?;
                Err(TemplateError::Required(name.to_string(), reason))
            }
        }
    }
}

/// Interpolate every string value under `value` (keys untouched); `path` is the dotted path of
/// `value` used in error messages (compose-go's `services.web.image` form).
pub fn interpolate(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), InterpolateError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = substitute(s, lookup, warnings).map_err(|e| match e {
                TemplateError::Invalid => InterpolateError::Invalid {
                    path: path.to_string(),
                    template: s.clone(),
                },
                TemplateError::Required(name, reason) => InterpolateError::Required {
                    path: path.to_string(),
                    name,
                    reason,
                },
            })?;
        }
        Value::Array(items) => {
            for item in items {
                interpolate(item, &format!("{path}.[]"), lookup, warnings)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let p = if k.starts_with('\0') {
                    path.to_string()
                } else if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate(v, &p, lookup, warnings)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([("A", "a"), ("E", ""), ("N", "nested")])
    }
    fn sub(t: &str) -> Result<String, TemplateError> {
        let e = env();
        let mut w = Vec::new();
        substitute(t, &|k| e.get(k).map(|v| v.to_string()), &mut w)
    }

    #[test]
    fn forms() {
        assert_eq!(sub("$A-${A}x").unwrap(), "a-ax");
        assert_eq!(sub("${U:-d}|${E:-d}|${E-d}|${U-d}").unwrap(), "d|d||d");
        assert_eq!(sub("${A:+r}|${E:+r}|${E+r}|${U+r}").unwrap(), "r||r|");
        assert_eq!(sub("${U:-${N}}/${U:-${U2:-deep}}").unwrap(), "nested/deep");
        assert_eq!(sub("$$A $${A}").unwrap(), "$A ${A}");
        assert_eq!(sub("${A:?boom}${E?ok}").unwrap(), "a");
        assert_eq!(
            sub("${E:?need $A}"),
            Err(TemplateError::Required("E".into(), "need a".into()))
        );
        assert_eq!(
            sub("${U?}"),
            Err(TemplateError::Required("U".into(), "".into()))
        );
        for bad in ["$", "$1", "${", "${}", "${A/x}", "${1A}", "x $ y"] {
            assert_eq!(sub(bad), Err(TemplateError::Invalid), "{bad}");
        }
    }

    #[test]
    fn unset_warns() {
        let mut w = Vec::new();
        assert_eq!(substitute("x${NOPE}", &|_| None, &mut w).unwrap(), "x");
        assert_eq!(
            w,
            ["The \"NOPE\" variable is not set. Defaulting to a blank string."]
        );
    }

    #[test]
    fn values_only_with_paths() {
        let mut v =
            serde_json::json!({"services": {"web": {"image": "${A}", "$A": ["${A}"], "n": 1}}});
        let e = env();
        let look = |k: &str| e.get(k).map(|v| v.to_string());
        interpolate(&mut v, "", &look, &mut Vec::new()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"services": {"web": {"image": "a", "$A": ["a"], "n": 1}}})
        );
        let mut v = serde_json::json!({"services": {"web": {"image": "${X:?set X}"}}});
        let err = interpolate(&mut v, "", &look, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error while interpolating services.web.image: required variable X is missing a value: set X"
        );
        let mut v = serde_json::json!({"services": {"web": {"command": ["echo $1"]}}});
        let err = interpolate(&mut v, "", &look, &mut Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interpolation format for services.web.command.[].\nYou may need to escape any $ with another $.\necho $1"
        );
    }
}
