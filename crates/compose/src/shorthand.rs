//! Compose's short syntaxes turned into their long forms: ports (`[[ip:]host:]container[/proto]`,
//! ranges), volumes (`[source:]target[:options]`, bind paths resolved, `~` expanded), Go
//! durations (`1m30s`), and shell-split command strings.

use crate::discovery::absolute;
use crate::model::*;
use serde_json::{Map, Value};
use std::path::Path;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn as_bool(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "yes" | "1" | "y" | "on"
        ),
        _ => false,
    }
}

/// Parse a Go duration (`1h2m3.5s`, `500ms`, `10us`, `0`) into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u128> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Some(total.round() as u128)
}

/// Format nanoseconds as Go's `time.Duration.String()` does (`1m30s`, `500ms`, `0s`).
pub fn format_duration(ns: u128) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (div, unit) = if ns < 1_000 {
            (1, "ns")
        } else if ns < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{unit}", frac(ns, div));
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s = ns % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s, 1_000_000_000)));
    out
}

fn frac(v: u128, div: u128) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Split a command string as a POSIX shell would (quotes, backslashes), as compose-go does.
pub fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            cur.push(chars.next().unwrap_or('\\'))
                        }
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Expand a leading `~` with `home`, then make `p` absolute against `dir`.
pub fn resolve_path(dir: &Path, p: &str, home: Option<&str>) -> String {
    let expanded = match (p.strip_prefix('~'), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => format!("{h}{rest}"),
        _ => p.to_string(),
    };
    absolute(dir, Path::new(&expanded)).display().to_string()
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => s.parse().ok().map(|p| (p, p)),
    }
}

/// Short port syntax (`[[ip:]published:]target[/proto]`, ranges) to long entries.
pub fn parse_port(spec: &str) -> Result<Vec<Port>, String> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // host ip may be [v6]
    let (host_ip, rest) = if let Some(r) = body.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or("invalid IP address")?;
        (
            ip.to_string(),
            after.strip_prefix(':').unwrap_or(after).to_string(),
        )
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), body.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err("too many colons".into()),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (p.to_string(), t.to_string()),
        None => (String::new(), rest.clone()),
    };
    let (t0, t1) =
        parse_range(&target).ok_or_else(|| format!("invalid containerPort: {target}"))?;
    let port = |target: u32, published: String| Port {
        mode: "ingress".into(),
        host_ip: host_ip.clone(),
        target,
        published,
        protocol: proto.clone(),
        ..Default::default()
    };
    if published.is_empty() {
        return Ok((t0..=t1).map(|t| port(t, String::new())).collect());
    }
    let (p0, p1) =
        parse_range(&published).ok_or_else(|| format!("invalid hostPort: {published}"))?;
    if t0 == t1 {
        let published = if p0 == p1 {
            p0.to_string()
        } else {
            published.clone()
        };
        return Ok(vec![port(t0, published)]);
    }
    if p1 - p0 != t1 - t0 {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {target} and {published}"
        ));
    }
    Ok((t0..=t1)
        .zip(p0..=p1)
        .map(|(t, p)| port(t, p.to_string()))
        .collect())
}

pub(crate) fn long_port(m: &Map<String, Value>) -> Result<Port, String> {
    let target = m.get("target").map(text).unwrap_or_default();
    Ok(Port {
        name: m.get("name").map(text).unwrap_or_default(),
        mode: m.get("mode").map(text).unwrap_or_else(|| "ingress".into()),
        host_ip: m.get("host_ip").map(text).unwrap_or_default(),
        target: target
            .parse()
            .map_err(|_| format!("invalid target port: {target:?}"))?,
        published: m.get("published").map(text).unwrap_or_default(),
        protocol: m.get("protocol").map(text).unwrap_or_else(|| "tcp".into()),
        app_protocol: m.get("app_protocol").map(text).unwrap_or_default(),
    })
}

fn is_path_like(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

/// Short volume syntax (`[source:]target[:options]`) to the long form; bind sources resolved.
pub fn parse_volume(spec: &str, dir: &Path, home: Option<&str>) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err("too many colons".into()),
    };
    if target.is_empty() {
        return Err("empty section between colons".into());
    }
    let mut v = VolumeMount {
        target: target.to_string(),
        ..Default::default()
    };
    if source.is_empty() {
        v.kind = "volume".into();
        v.volume = Some(VolumeOptions::default());
    } else if is_path_like(source) {
        v.kind = "bind".into();
        v.source = resolve_path(dir, source, home);
        v.bind = Some(BindOptions {
            create_host_path: true,
            ..Default::default()
        });
    } else {
        v.kind = "volume".into();
        v.source = source.to_string();
        v.volume = Some(VolumeOptions::default());
    }
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => v.read_only = true,
            "rw" => v.read_only = false,
            "z" | "Z" => v.bind.get_or_insert_with(Default::default).selinux = opt.into(),
            "nocopy" => v.volume.get_or_insert_with(Default::default).nocopy = true,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                v.bind.get_or_insert_with(Default::default).propagation = opt.into()
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(v)
}

pub(crate) fn long_volume(m: &Map<String, Value>, dir: &Path, home: Option<&str>) -> VolumeMount {
    let kind = m.get("type").map(text).unwrap_or_else(|| "volume".into());
    let mut source = m.get("source").map(text).unwrap_or_default();
    if kind == "bind" && !source.is_empty() {
        source = resolve_path(dir, &source, home);
    }
    let bind = m
        .get("bind")
        .and_then(Value::as_object)
        .map(|b| BindOptions {
            propagation: b.get("propagation").map(text).unwrap_or_default(),
            create_host_path: as_bool(b.get("create_host_path")),
            selinux: b.get("selinux").map(text).unwrap_or_default(),
        });
    let volume = m
        .get("volume")
        .and_then(Value::as_object)
        .map(|b| VolumeOptions {
            nocopy: as_bool(b.get("nocopy")),
            subpath: b.get("subpath").map(text).unwrap_or_default(),
        });
    VolumeMount {
        kind,
        source,
        target: m.get("target").map(text).unwrap_or_default(),
        read_only: as_bool(m.get("read_only")),
        bind,
        volume,
        tmpfs: m.get("tmpfs").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p = |s: &str| parse_port(s).unwrap();
        let one = |target, published: &str, host_ip: &str, protocol: &str| Port {
            mode: "ingress".into(),
            target,
            published: published.into(),
            host_ip: host_ip.into(),
            protocol: protocol.into(),
            ..Default::default()
        };
        assert_eq!(p("80"), [one(80, "", "", "tcp")]);
        assert_eq!(p("8080:80/udp"), [one(80, "8080", "", "udp")]);
        assert_eq!(
            p("127.0.0.1:8080:80"),
            [one(80, "8080", "127.0.0.1", "tcp")]
        );
        assert_eq!(p("127.0.0.1::80"), [one(80, "", "127.0.0.1", "tcp")]);
        assert_eq!(p("[::1]:53:53/udp"), [one(53, "53", "::1", "udp")]);
        assert_eq!(
            p("3000-3001"),
            [one(3000, "", "", "tcp"), one(3001, "", "", "tcp")]
        );
        assert_eq!(
            p("9090-9091:8080-8081"),
            [one(8080, "9090", "", "tcp"), one(8081, "9091", "", "tcp")]
        );
        assert_eq!(p("8000-8010:80"), [one(80, "8000-8010", "", "tcp")]);
        assert!(parse_port("1-3:1-2")
            .unwrap_err()
            .contains("invalid ranges"));
        assert!(parse_port("80/xyz").is_err());
    }

    #[test]
    fn volumes() {
        let d = Path::new("/proj");
        let v = parse_volume("./data:/data:ro,z", d, Some("/root")).unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.read_only),
            ("bind", "/proj/data", true)
        );
        assert_eq!(
            v.bind,
            Some(BindOptions {
                create_host_path: true,
                selinux: "z".into(),
                ..Default::default()
            })
        );
        let v = parse_volume("~/x:/x", d, Some("/home/u")).unwrap();
        assert_eq!(v.source, "/home/u/x");
        let v = parse_volume("db:/var/lib/db:nocopy", d, None).unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.volume.unwrap().nocopy),
            ("volume", "db", true)
        );
        let v = parse_volume("/anon", d, None).unwrap();
        assert_eq!(
            (v.kind.as_str(), v.source.as_str(), v.target.as_str()),
            ("volume", "", "/anon")
        );
        assert!(parse_volume("a:/b:bogus", d, None).is_err());
    }

    #[test]
    fn durations() {
        for (i, o) in [
            ("90s", "1m30s"),
            ("1h", "1h0m0s"),
            ("500ms", "500ms"),
            ("1.5s", "1.5s"),
            ("0", "0s"),
            ("2m", "2m0s"),
        ] {
            assert_eq!(format_duration(parse_duration(i).unwrap()), o);
        }
        assert!(parse_duration("10").is_none());
        assert!(parse_duration("5x").is_none());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c "echo 'a b' \"q\"" x\ y"#),
            ["sh", "-c", "echo 'a b' \"q\"", "x y"]
        );
    }
}
