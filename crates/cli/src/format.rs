//! Output formatting: a Go-template subset for `--format`, docker's tab-aligned
//! tables, and docker's human-readable sizes and durations.

use anyhow::{bail, Result};
use serde_json::Value;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<String>),
    Block {
        kind: BlockKind,
        pipeline: Vec<String>,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BlockKind {
    If,
    Range,
    With,
}

/// A lexed piece of template source.
enum Token {
    Text(String),
    Action(Vec<String>),
}

/// A parsed template: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`, `{{join .X ","}}`,
/// `{{upper .X}}`, `{{lower .X}}`, `{{index .Labels "k"}}`, `{{len .X}}`,
/// `{{eq .A "x"}}`, `{{ne ..}}`, `{{not ..}}`, `{{println .X}}`, and the blocks
/// `{{if ..}}..{{else}}..{{end}}`, `{{range ..}}..{{end}}`, `{{with ..}}..{{end}}`.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// Whether the template started with `table`.
    pub table: bool,
}

/// Splits an action into words, keeping quoted strings whole (quotes stripped).
fn words(action: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = action.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == c {
                    closed = true;
                    break;
                }
                if ch == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(other) => s.push(other),
                        None => {}
                    }
                    continue;
                }
                s.push(ch);
            }
            if !closed {
                bail!("template: unterminated quoted string in {action:?}");
            }
            out.push(format!("\"{s}"));
        } else {
            let mut s = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                s.push(ch);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

impl Template {
    /// Parses a template. A leading `table` marks a table with headers.
    pub fn parse(src: &str) -> Result<Self> {
        let (table, src) = match src.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, src),
        };
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut tokens = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                tokens.push(Token::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("template: unclosed action");
            };
            let action = after[..end].trim_matches('-');
            let w = words(action)?;
            if w.is_empty() {
                bail!("template: missing value for command");
            }
            tokens.push(Token::Action(w));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            tokens.push(Token::Text(rest.to_string()));
        }
        let mut iter = tokens.into_iter();
        let (nodes, term) = parse_nodes(&mut iter)?;
        if let Some(t) = term {
            bail!("template: unexpected {{{{{t}}}}}");
        }
        Ok(Self { nodes, table })
    }

    /// Renders the template against `data`.
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// The table header: each action's field name mapped through `header`.
    pub fn header(&self, header: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Block { .. } => {}
                Node::Action(w) => {
                    let field = w
                        .iter()
                        .rev()
                        .find(|a| a.starts_with('.'))
                        .map(|a| a.trim_start_matches('.').to_string())
                        .unwrap_or_default();
                    out.push_str(&header(&field));
                }
            }
        }
        out
    }
}

/// Looks up `.A.B` in `data`. Missing fields yield `None`. docker's templates name Go struct
/// fields, whose JSON keys may differ in case (an event's `.Time`/`.TimeNano`/`.Status` are
/// `time`/`timeNano`/`status` on the wire): a key with no exact match is matched ignoring
/// ASCII case.
fn lookup<'a>(path: &str, data: &'a Value) -> Result<Option<&'a Value>> {
    if path == "." {
        return Ok(Some(data));
    }
    let Some(path) = path.strip_prefix('.') else {
        bail!("template: unsupported argument {path:?}");
    };
    let mut cur = data;
    for key in path.split('.') {
        match cur {
            Value::Object(map) => match map.get(key).or_else(|| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v)
            }) {
                Some(v) => cur = v,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            _ => bail!(
                "template: can't evaluate field {key} in type {}",
                type_name(cur)
            ),
        }
    }
    Ok(Some(cur))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn arg(word: &str, data: &Value) -> Result<Value> {
    if let Some(s) = word.strip_prefix('"') {
        return Ok(Value::String(s.to_string()));
    }
    if let Ok(n) = word.parse::<i64>() {
        return Ok(Value::from(n));
    }
    Ok(lookup(word, data)?.cloned().unwrap_or(Value::Null))
}

/// Parses nodes up to `{{end}}`/`{{else}}` (returned) or the end of input.
fn parse_nodes(
    tokens: &mut std::vec::IntoIter<Token>,
) -> Result<(Vec<Node>, Option<&'static str>)> {
    let mut nodes = Vec::new();
    while let Some(tok) = tokens.next() {
        let w = match tok {
            Token::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Token::Action(w) => w,
        };
        let kind = match w[0].as_str() {
            "end" => return Ok((nodes, Some("end"))),
            "else" => return Ok((nodes, Some("else"))),
            "if" => BlockKind::If,
            "range" => BlockKind::Range,
            "with" => BlockKind::With,
            _ => {
                nodes.push(Node::Action(w));
                continue;
            }
        };
        let pipeline = w[1..].to_vec();
        if pipeline.is_empty() {
            bail!("template: missing value for {}", w[0]);
        }
        let (body, term) = parse_nodes(tokens)?;
        let otherwise = match term {
            Some("end") => Vec::new(),
            Some(_) => match parse_nodes(tokens)? {
                (otherwise, Some("end")) => otherwise,
                _ => bail!("template: unexpected EOF: missing {{{{end}}}}"),
            },
            None => bail!("template: unexpected EOF: missing {{{{end}}}}"),
        };
        nodes.push(Node::Block {
            kind,
            pipeline,
            body,
            otherwise,
        });
    }
    Ok((nodes, None))
}

/// Go's truthiness for `if`/`with`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn render_nodes(nodes: &[Node], data: &Value, out: &mut String) -> Result<()> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(w) => out.push_str(&go_string(&eval(w, data)?)),
            Node::Block {
                kind,
                pipeline,
                body,
                otherwise,
            } => {
                let v = eval(pipeline, data)?;
                match kind {
                    BlockKind::If if truthy(&v) => render_nodes(body, data, out)?,
                    BlockKind::With if truthy(&v) => render_nodes(body, &v, out)?,
                    BlockKind::If | BlockKind::With => render_nodes(otherwise, data, out)?,
                    BlockKind::Range => {
                        let items: Vec<Value> = match v {
                            Value::Array(a) => a,
                            Value::Object(m) => {
                                let mut entries: Vec<_> = m.into_iter().collect();
                                entries.sort_by(|a, b| a.0.cmp(&b.0));
                                entries.into_iter().map(|(_, v)| v).collect()
                            }
                            Value::Null => Vec::new(),
                            other => {
                                bail!("template: range can't iterate over {}", go_string(&other))
                            }
                        };
                        if items.is_empty() {
                            render_nodes(otherwise, data, out)?;
                        }
                        for item in &items {
                            render_nodes(body, item, out)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn eval(words: &[String], data: &Value) -> Result<Value> {
    let func = words[0].as_str();
    let args = &words[1..];
    let one = || -> Result<Value> {
        match args {
            [a] => arg(a, data),
            _ => bail!(
                "template: wrong number of args for {func}: want 1 got {}",
                args.len()
            ),
        }
    };
    let two = || -> Result<(Value, Value)> {
        match args {
            [a, b] => Ok((arg(a, data)?, arg(b, data)?)),
            _ => bail!(
                "template: wrong number of args for {func}: want 2 got {}",
                args.len()
            ),
        }
    };
    let s = |v: String| Ok(Value::String(v));
    match func {
        "json" => s(go_json(&one()?)?),
        "upper" => s(go_string(&one()?).to_uppercase()),
        "lower" => s(go_string(&one()?).to_lowercase()),
        "title" => {
            let text = go_string(&one()?);
            let mut c = text.chars();
            s(c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default())
        }
        "len" => match one()? {
            Value::Array(a) => Ok(Value::from(a.len())),
            Value::Object(m) => Ok(Value::from(m.len())),
            Value::String(t) => Ok(Value::from(t.len())),
            Value::Null => Ok(Value::from(0)),
            other => bail!("template: len of {}", go_string(&other)),
        },
        "not" => Ok(Value::Bool(!truthy(&one()?))),
        "eq" => {
            let (a, b) = two()?;
            Ok(Value::Bool(a == b))
        }
        "ne" => {
            let (a, b) = two()?;
            Ok(Value::Bool(a != b))
        }
        "println" => {
            let parts: Result<Vec<String>> = args
                .iter()
                .map(|a| arg(a, data).map(|v| go_string(&v)))
                .collect();
            s(parts?.join(" ") + "\n")
        }
        "join" => {
            let (list, sep) = two()?;
            let sep = go_string(&sep);
            s(match list {
                Value::Array(items) => items.iter().map(go_string).collect::<Vec<_>>().join(&sep),
                Value::Null => String::new(),
                other => go_string(&other),
            })
        }
        "index" => {
            let (obj, key) = two()?;
            Ok(match (&obj, &key) {
                (Value::Object(m), Value::String(k)) => m.get(k).cloned(),
                (Value::Array(a), Value::Number(n)) => {
                    n.as_u64().and_then(|i| a.get(i as usize).cloned())
                }
                _ => None,
            }
            .unwrap_or(Value::Null))
        }
        w if w.starts_with('.') => {
            if !args.is_empty() {
                bail!("template: can't give argument to non-function {w}");
            }
            Ok(lookup(w, data)?.cloned().unwrap_or(Value::Null))
        }
        other => bail!("template: function {other:?} not defined"),
    }
}

/// Escapes `<`, `>` and `&` like Go's `encoding/json` (they only occur in strings).
pub fn go_json_escape(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Compact JSON as Go's `json.Marshal` writes it.
pub fn go_json(v: &impl serde::Serialize) -> Result<String> {
    Ok(go_json_escape(&serde_json::to_string(v)?))
}

/// Prints a value like Go's `fmt.Print` does for decoded JSON.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() >= 1e21 => format!("{f:e}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_string(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Aligns tab-separated cells like Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`,
/// which docker uses for every table.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        // The last cell of a line is not tab-terminated, so it does not size a column.
        for (i, cell) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = (cell.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for cells in &lines {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// How a list command should print.
pub enum Output {
    /// A table (with header) or a plain template per row.
    Template(Template),
    /// One JSON object per line.
    Json,
}

impl Output {
    /// Interprets `--format` (None = `default`).
    pub fn from_flag(flag: Option<&str>, default: &str) -> Result<Self> {
        match flag.map(str::trim) {
            Some("json") => Ok(Self::Json),
            None | Some("") | Some("table") => Ok(Self::Template(Template::parse(default)?)),
            Some(t) => Ok(Self::Template(Template::parse(t)?)),
        }
    }

    /// Renders rows (each a JSON object of docker's format fields).
    pub fn render(&self, rows: &[Value], header: impl Fn(&str) -> String) -> Result<String> {
        match self {
            Self::Json => {
                let mut out = String::new();
                for r in rows {
                    out.push_str(&go_json(r)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Self::Template(t) => {
                let mut out = String::new();
                if t.table {
                    out.push_str(&t.header(header));
                    out.push('\n');
                }
                for r in rows {
                    out.push_str(&t.render(r)?);
                    out.push('\n');
                }
                Ok(if t.table { tabwrite(&out) } else { out })
            }
        }
    }
}

/// Prints a prune report's list of removed objects (`Deleted Containers:` and one ID per
/// line, then a blank line), as docker does; nothing when the list is empty.
pub fn print_deleted(title: &str, v: &Value) {
    if let Some(items) = v.as_array().filter(|a| !a.is_empty()) {
        println!("{title}");
        for it in items {
            println!("{}", it.as_str().unwrap_or_default());
        }
        println!();
    }
}

/// Formats like Go's `%.{prec}g` (trailing zeros removed), for values below 1e15.
pub(crate) fn fmt_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    // Rounding may have added a digit (e.g. 999.95 -> 1000.0); re-round once.
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    s
}

/// docker's `units.HumanSizeWithPrecision(size, prec)`: decimal units, `kB`, `MB`...
pub fn human_size_prec(size: f64, prec: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, prec), UNITS[i])
}

/// docker's image/container size column (3 significant digits).
pub fn human_size(size: i64) -> String {
    human_size_prec(size as f64, 3)
}

/// docker's `units.HumanDuration`.
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0 / 24.0 / 365.0) as i64)
}

/// `"<duration> ago"` for a unix timestamp.
pub fn since_unix(ts: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let d = std::time::Duration::from_secs((now - ts).max(0) as u64);
    format!("{} ago", human_duration(d))
}

/// Go's `time.Time.String()`-like local time used by docker's `CreatedAt`
/// (`2024-01-02 15:04:05 +0000 UTC`).
pub fn created_at(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| {
            let local = t.with_timezone(&chrono::Local);
            let zone = if local.offset().local_minus_utc() == 0 {
                "UTC".to_string()
            } else {
                local.format("%:z").to_string()
            };
            format!("{} {zone}", local.format("%Y-%m-%d %H:%M:%S %z"))
        })
        .unwrap_or_default()
}

/// docker's event time stamp (`RFC3339NanoFixed` in local time, `Z` for UTC).
pub fn rfc3339_nano_fixed(t: chrono::DateTime<chrono::Utc>) -> String {
    let local = t.with_timezone(&chrono::Local);
    let zone = if local.offset().local_minus_utc() == 0 {
        "Z".to_string()
    } else {
        local.format("%:z").to_string()
    };
    format!("{}{zone}", local.format("%Y-%m-%dT%H:%M:%S%.9f"))
}

/// Shortens to `max` characters, ending with `…` like docker's `Ellipsis`.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `ip:port` as docker's CLI joins them (Go's `net.JoinHostPort`): `0.0.0.0:8080`,
/// `[::]:8080`.
pub fn host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A 12-character image or container ID without the `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Converts a `tabwrite`-ready header name for docker's format fields.
pub fn header_name(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedSince" => "CREATED".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        "CreatedBy" => "CREATED BY".into(),
        other => other.to_uppercase(),
    }
}

/// Header names for image tables (`ID` is `IMAGE ID`).
pub fn image_header_name(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        other => header_name(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn renders_fields_and_functions() {
        let data = json!({"State": {"Status": "running", "Pid": 42}, "Name": "/x",
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v"}}});
        let r = |t: &str| Template::parse(t).unwrap().render(&data).unwrap();
        assert_eq!(r("{{.State.Status}}"), "running");
        assert_eq!(r("{{.State.Pid}} {{.Name}}"), "42 /x");
        assert_eq!(r("{{json .State}}"), r#"{"Pid":42,"Status":"running"}"#);
        assert_eq!(r("{{join .Config.Env \",\"}}"), "A=1,B=2");
        assert_eq!(r("{{index .Config.Labels \"k\"}}"), "v");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        let event =
            json!({"Type": "container", "time": 1796635947, "timeNano": 5, "status": "die"});
        let e = |t: &str| Template::parse(t).unwrap().render(&event).unwrap();
        assert_eq!(
            e("{{.Time}} {{.TimeNano}} {{.Status}} {{.Type}}"),
            "1796635947 5 die container"
        );
        assert_eq!(r("{{.Config.Env}}"), "[A=1 B=2]");
        assert_eq!(r("{{upper .State.Status}}"), "RUNNING");
        assert_eq!(r("{{range .Config.Env}}[{{.}}]{{end}}"), "[A=1][B=2]");
        assert_eq!(r("{{range .Nope}}x{{else}}none{{end}}"), "none");
        assert_eq!(
            r("{{if eq .State.Status \"running\"}}up{{else}}down{{end}}"),
            "up"
        );
        assert_eq!(r("{{with .State}}{{.Pid}}{{end}}"), "42");
        assert_eq!(r("{{len .Config.Env}} {{not .Missing}}"), "2 true");
        assert!(Template::parse("{{if .X}}open").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{.State").is_err());
        assert!(Template::parse("{{nope .X}}")
            .unwrap()
            .render(&data)
            .is_err());
    }

    #[test]
    fn table_headers_and_alignment() {
        let out = Output::from_flag(Some("table {{.ID}}\t{{.Names}}"), "")
            .unwrap()
            .render(&[json!({"ID": "abc", "Names": "n1"})], header_name)
            .unwrap();
        assert_eq!(out, "CONTAINER ID   NAMES\nabc            n1\n");
        let json_out = Output::from_flag(Some("json"), "")
            .unwrap()
            .render(&[json!({"ID": "abc"})], header_name)
            .unwrap();
        assert_eq!(json_out, "{\"ID\":\"abc\"}\n");
        assert_eq!(
            go_json(&json!({"D": "<none>&"})).unwrap(),
            r#"{"D":"\u003cnone\u003e\u0026"}"#
        );
    }

    #[test]
    fn tabwriter_min_width() {
        assert_eq!(tabwrite("A\tB\nxx\ty\n"), "A         B\nxx        y\n");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_234), "1.23kB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size_prec(1_234_567.0, 4), "1.235MB");
    }

    #[test]
    fn human_durations() {
        let d = Duration::from_secs;
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(d(1)), "1 second");
        assert_eq!(human_duration(d(45)), "45 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(600)), "10 minutes");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(5 * 3600)), "5 hours");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(d(100 * 86400)), "3 months");
        assert_eq!(human_duration(d(800 * 86400)), "2 years");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("sleep 1000000000000000000", 20),
            "sleep 1000000000000…"
        );
        assert_eq!(ellipsis("sh", 20), "sh");
    }
}
