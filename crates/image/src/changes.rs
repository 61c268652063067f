//! `docker import --change` / `docker commit --change` Dockerfile instructions applied to a
//! container config. Supported: `CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`,
//! `LABEL`, `VOLUME`, `STOPSIGNAL` ([Dockerfile reference](https://docs.docker.com/reference/dockerfile/)).

use std::collections::BTreeMap;

use crate::{ContainerConfig, ImageError};

fn bad(change: &str, reason: &str) -> ImageError {
    ImageError::InvalidChange {
        change: change.to_string(),
        reason: reason.to_string(),
    }
}

/// Exec form (`["a","b"]`) or shell form (`a b` → `["/bin/sh","-c","a b"]`).
fn command(change: &str, rest: &str) -> Result<Vec<String>, ImageError> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return Ok(v);
        }
    }
    if rest.is_empty() {
        return Err(bad(change, "missing argument"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].replace("\\\"", "\"")
    } else {
        s.to_string()
    }
}

/// Splits `k=v k2="v 2"` respecting double quotes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match (c, quote) {
            ('\\', _) => escaped = true,
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            (c, None) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `k=v ...` pairs, or the legacy single `k v` form.
fn pairs(change: &str, rest: &str) -> Result<Vec<(String, String)>, ImageError> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return Err(bad(change, "missing argument"));
    }
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(change, "missing value"))?;
        return Ok(vec![(k.to_string(), unquote(v))]);
    }
    words(rest)
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(change, "expected key=value")),
        })
        .collect()
}

/// Applies Dockerfile-style `changes` to `config`. Errors: [`ImageError::InvalidChange`] naming
/// the line.
pub fn apply_changes(config: &mut ContainerConfig, changes: &[String]) -> Result<(), ImageError> {
    for change in changes {
        let line = change.trim();
        if line.is_empty() {
            continue;
        }
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(command(change, rest)?),
            "ENTRYPOINT" => config.entrypoint = Some(command(change, rest)?),
            "ENV" => {
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs(change, rest)? {
                    let prefix = format!("{k}=");
                    env.retain(|e| !e.starts_with(&prefix));
                    env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let labels = config.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs(change, rest)? {
                    labels.insert(k, v);
                }
            }
            "WORKDIR" => {
                if rest.is_empty() {
                    return Err(bad(change, "missing path"));
                }
                config.working_dir = Some(unquote(rest));
            }
            "USER" => {
                if rest.is_empty() {
                    return Err(bad(change, "missing user"));
                }
                config.user = Some(unquote(rest));
            }
            "STOPSIGNAL" => {
                if rest.is_empty() {
                    return Err(bad(change, "missing signal"));
                }
                config.stop_signal = Some(rest.to_string());
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                if rest.is_empty() {
                    return Err(bad(change, "missing port"));
                }
                for p in rest.split_whitespace() {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    let ok_port = port
                        .split_once('-')
                        .map_or(port.parse::<u16>().is_ok(), |(a, b)| {
                            a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok()
                        });
                    if !ok_port || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(bad(change, &format!("invalid port {p}")));
                    }
                    ports.insert(format!("{port}/{proto}"), serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest).map_err(|_| bad(change, "invalid JSON array"))?
                } else {
                    rest.split_whitespace().map(str::to_string).collect()
                };
                if vols.is_empty() {
                    return Err(bad(change, "missing path"));
                }
                let v = config.volumes.get_or_insert_with(BTreeMap::new);
                for p in vols {
                    v.insert(p, serde_json::json!({}));
                }
            }
            other => {
                return Err(bad(
                    change,
                    &format!("{other} is not a supported change instruction"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<ContainerConfig, ImageError> {
        let mut c = ContainerConfig::default();
        let v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &v).map(|_| c)
    }

    #[test]
    fn table() {
        let c = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --x",
            "ENV A=1 B=\"two words\"",
            "ENV C 3",
            "ENV A=override",
            "WORKDIR /app",
            "USER 1234:1234",
            "EXPOSE 8080 53/udp",
            "LABEL a=b \"c\"=d",
            "VOLUME [\"/data\"]",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/app --x"]);
        assert_eq!(c.env.unwrap(), ["B=two words", "C=3", "A=override"]);
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("1234:1234"));
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "8080/tcp"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c"], "d");
        assert!(c.volumes.unwrap().contains_key("/data"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "RUN echo",
            "EXPOSE abc",
            "EXPOSE 80/xyz",
            "ENV",
            "WORKDIR",
            "CMD",
            "ENV =x",
        ] {
            let e = apply(&[bad]).expect_err(bad);
            assert!(matches!(e, ImageError::InvalidChange { .. }), "{bad}: {e}");
        }
    }
}
