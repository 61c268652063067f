//! `pull`, `push`, `login`, `logout`: registry commands. Credentials live where docker keeps
//! them (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`: `auths`, `credsStore`,
//! `credHelpers`), and travel to the daemon in `X-Registry-Auth` (base64url JSON), as docker
//! sends them.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{for_each_json, full, json_body, query, read_all, seg, Client};
use crate::status;

/// Docker Hub's key in `config.json`.
const HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, Args)]
#[command(override_usage = "barge pull [OPTIONS] NAME[:TAG|@DIGEST]")]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Skip image verification (accepted for compatibility)
    #[arg(long = "disable-content-trust", default_value_t = true, hide = true)]
    pub disable_content_trust: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge push [OPTIONS] NAME[:TAG]")]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge login [OPTIONS] [SERVER]")]
pub struct LoginArgs {
    /// Username
    #[arg(short, long, value_name = "string")]
    pub username: Option<String>,
    /// Password
    #[arg(short, long, value_name = "string")]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge logout [SERVER]")]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

// ------------------------------------------------------------------ credentials

fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

fn read_config() -> Value {
    std::fs::read(config_path())
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_else(|| json!({}))
}

fn write_config(v: &Value) -> Result<()> {
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = p.with_extension("json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(v)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// The registry host of an image name (`busybox` → Docker Hub).
fn registry_of(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        first.to_string()
    } else {
        HUB_KEY.to_string()
    }
}

/// The `config.json` key of a server argument (`docker.io` → Docker Hub's key).
fn server_key(server: Option<&str>) -> String {
    match server.map(|s| s.trim_end_matches('/')) {
        None
        | Some("")
        | Some("docker.io")
        | Some("index.docker.io")
        | Some("https://index.docker.io/v1")
        | Some("registry-1.docker.io") => HUB_KEY.to_string(),
        Some(s) => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string(),
    }
}

fn helper_for(cfg: &Value, key: &str) -> Option<String> {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(key);
    cfg.get("credHelpers")
        .and_then(|h| h.get(host).or_else(|| h.get(key)))
        .and_then(Value::as_str)
        .or_else(|| cfg.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin.
fn run_helper(helper: &str, action: &str, input: &str) -> Result<String> {
    let prog = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&prog)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        bail!(
            "{prog} {action}: {}",
            if text.is_empty() { err } else { text }
        );
    }
    Ok(text)
}

/// Credentials for `key` (username, password) from config.json or a helper.
fn credentials(key: &str) -> Option<(String, String)> {
    match stored_auth(key)? {
        StoredAuth::Basic(u, p) => Some((u, p)),
        StoredAuth::IdentityToken(_) => None,
    }
}

/// What config.json (or its helper) holds for a registry.
enum StoredAuth {
    /// User name and password.
    Basic(String, String),
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `Username` of `<token>`).
    IdentityToken(String),
}

fn stored_auth(key: &str) -> Option<StoredAuth> {
    let cfg = read_config();
    if let Some(h) = helper_for(&cfg, key) {
        let out = run_helper(&h, "get", key).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        let user = v.get("Username")?.as_str()?.to_string();
        let secret = v.get("Secret")?.as_str()?.to_string();
        // docker's convention for identity tokens kept by helpers.
        if user == "<token>" {
            return Some(StoredAuth::IdentityToken(secret));
        }
        return Some(StoredAuth::Basic(user, secret));
    }
    let auths = cfg.get("auths")?;
    let entry = auths.get(key).or_else(|| {
        auths
            .as_object()?
            .iter()
            .find(|(k, _)| server_key(Some(k)) == key)
            .map(|(_, v)| v)
    })?;
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Some(StoredAuth::IdentityToken(t.to_string()));
    }
    let auth = entry.get("auth")?.as_str()?;
    let d = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let s = String::from_utf8(d).ok()?;
    let (u, p) = s.split_once(':')?;
    Some(StoredAuth::Basic(u.to_string(), p.to_string()))
}

/// `X-Registry-Auth` value for `image` (empty JSON object when there are no credentials); an
/// identity token goes in `identitytoken`, as the docker CLI sends it.
fn auth_header(image: &str) -> String {
    let key = registry_of(image);
    let v = match stored_auth(&key) {
        Some(StoredAuth::Basic(u, p)) => {
            json!({ "username": u, "password": p, "serveraddress": key })
        }
        Some(StoredAuth::IdentityToken(t)) => {
            json!({ "identitytoken": t, "serveraddress": key })
        }
        None => json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

// ------------------------------------------------------------------ progress

/// Renders Docker's JSON progress stream: bars redrawn in place on a TTY, plain lines
/// otherwise (no per-chunk `Downloading` lines).
struct Renderer {
    tty: bool,
    quiet: bool,
    ids: Vec<String>,
    lines: HashMap<String, usize>,
    out: Box<dyn Write>,
}

impl Renderer {
    fn new(quiet: bool, to_stderr: bool) -> Self {
        let (tty, out): (bool, Box<dyn Write>) = if to_stderr {
            (std::io::stderr().is_terminal(), Box::new(std::io::stderr()))
        } else {
            (std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
        };
        Renderer {
            tty,
            quiet,
            ids: Vec::new(),
            lines: HashMap::new(),
            out,
        }
    }

    fn bar(cur: u64, total: u64) -> String {
        if total == 0 {
            return human(cur);
        }
        let width = 50usize;
        let filled = ((cur.min(total) as f64 / total as f64) * width as f64) as usize;
        let mut b = "=".repeat(filled);
        if filled < width {
            b.push('>');
            b.push_str(&" ".repeat(width - filled - 1));
        }
        format!("[{b}]  {}/{}", human(cur), human(total))
    }

    /// Handles one message; returns the error text of an error message.
    fn message(&mut self, v: &Value) -> Option<String> {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Some(e.to_string());
        }
        if self.quiet {
            return None;
        }
        let status = v.get("status").and_then(Value::as_str).unwrap_or("");
        let id = v.get("id").and_then(Value::as_str).unwrap_or("");
        if status.is_empty() {
            return None;
        }
        let detail = v.get("progressDetail");
        let cur = detail
            .and_then(|d| d.get("current"))
            .and_then(Value::as_u64);
        let total = detail
            .and_then(|d| d.get("total"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if id.is_empty() || status.starts_with("Pulling from") {
            let line = if id.is_empty() {
                status.to_string()
            } else {
                format!("{id}: {status}")
            };
            let _ = writeln!(self.out, "{line}");
            if self.tty {
                // Lines above are final; start a fresh block of bars.
                self.ids.clear();
                self.lines.clear();
            }
            return None;
        }
        let text = match cur {
            Some(c) => format!("{id}: {status} {}", Self::bar(c, total)),
            None => format!("{id}: {status}"),
        };
        if !self.tty {
            if cur.is_none() {
                let _ = writeln!(self.out, "{text}");
            }
            return None;
        }
        match self.lines.get(id) {
            None => {
                self.lines.insert(id.to_string(), self.ids.len());
                self.ids.push(id.to_string());
                let _ = writeln!(self.out, "{text}\x1b[K");
            }
            Some(&i) => {
                let up = self.ids.len() - i;
                let _ = write!(self.out, "\x1b[{up}A\r{text}\x1b[K\x1b[{up}B\r");
            }
        }
        let _ = self.out.flush();
        None
    }
}

fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.2}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

// ------------------------------------------------------------------ commands

/// Pulls `image` through the daemon, rendering progress. `to_stderr` for `run`/`create`.
pub(crate) async fn pull_image(
    client: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    let (name, tag) = split_tag(image);
    pull_request(client, name, tag, platform, quiet, to_stderr).await
}

/// `POST /images/create?fromImage=NAME&tag=TAG` (no tag: every tag) with progress rendering.
async fn pull_request(
    client: &Client,
    name: String,
    tag: Option<String>,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    let path = format!(
        "/images/create{}",
        query(&[
            ("fromImage", Some(name.clone())),
            ("tag", tag.clone()),
            ("platform", platform.map(str::to_string)),
        ])
    );
    let auth = auth_header(&name);
    let resp = client
        .request(Method::POST, &path, full(""), &[("X-Registry-Auth", &auth)])
        .await?;
    let mut r = Renderer::new(quiet, to_stderr);
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = r.message(&v) {
            err = Some(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    Ok(())
}

/// `name[:tag|@digest]` → (name, tag or digest); none → `latest`.
fn split_tag(image: &str) -> (String, Option<String>) {
    if let Some((n, d)) = image.split_once('@') {
        return (n.to_string(), Some(d.to_string()));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if let Some((_, t)) = last.rsplit_once(':') {
        let n = &image[..image.len() - t.len() - 1];
        return (n.to_string(), Some(t.to_string()));
    }
    (image.to_string(), Some("latest".to_string()))
}

/// `barge pull`.
pub async fn pull(client: &Client, args: PullArgs) -> Result<i32> {
    if args.all_tags {
        let (n, _) = split_tag(&args.name);
        if n != args.name {
            return Err(status(1, "tag can't be used with --all-tags/-a"));
        }
        // No tag: the daemon pulls every tag of the repository.
        pull_request(
            client,
            n.clone(),
            None,
            args.platform.as_deref(),
            args.quiet,
            false,
        )
        .await?;
        println!("{}", full_name(&n));
        return Ok(0);
    }
    pull_image(
        client,
        &args.name,
        args.platform.as_deref(),
        args.quiet,
        false,
    )
    .await?;
    let (n, t) = split_tag(&args.name);
    let sep = if t.as_deref().is_some_and(|t| t.starts_with("sha256:")) {
        "@"
    } else {
        ":"
    };
    println!(
        "{}{sep}{}",
        full_name(&n),
        t.unwrap_or_else(|| "latest".into())
    );
    Ok(0)
}

/// `busybox` → `docker.io/library/busybox` (what docker prints after a pull).
fn full_name(name: &str) -> String {
    if registry_of(name) != HUB_KEY {
        return name.to_string();
    }
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    if n.contains('/') {
        format!("docker.io/{n}")
    } else {
        format!("docker.io/library/{n}")
    }
}

/// `barge push`.
pub async fn push(client: &Client, args: PushArgs) -> Result<i32> {
    let (name, tag) = if args.all_tags || args.name.contains('@') {
        (args.name.clone(), None)
    } else {
        let last = args.name.rsplit('/').next().unwrap_or(&args.name);
        match last.rsplit_once(':') {
            Some((_, t)) => (
                args.name[..args.name.len() - t.len() - 1].to_string(),
                Some(t.to_string()),
            ),
            None => (args.name.clone(), Some("latest".to_string())),
        }
    };
    let path = format!("/images/{}/push{}", seg(&name), query(&[("tag", tag)]));
    let auth = auth_header(&name);
    let resp = client
        .request(Method::POST, &path, full(""), &[("X-Registry-Auth", &auth)])
        .await?;
    let mut r = Renderer::new(args.quiet, false);
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = r.message(&v) {
            err = Some(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    if args.quiet {
        println!("{}", args.name);
    }
    Ok(0)
}

/// `barge login`.
pub async fn login(client: &Client, args: LoginArgs) -> Result<i32> {
    let key = server_key(args.server.as_deref());
    let mut username = args.username.clone();
    let mut password = args.password.clone();
    if args.password_stdin {
        if password.is_some() {
            return Err(status(
                1,
                "--password and --password-stdin are mutually exclusive",
            ));
        }
        if username.is_none() {
            return Err(status(1, "Must provide --username with --password-stdin"));
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        password = Some(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if username.is_none() || password.is_none() {
        if let Some((u, p)) = credentials(&key) {
            if username.is_none() || username.as_deref() == Some(u.as_str()) {
                username.get_or_insert(u);
                password.get_or_insert(p);
            }
        }
    }
    if username.is_none() {
        if !std::io::stdin().is_terminal() {
            return Err(status(
                1,
                "Cannot perform an interactive login from a non TTY device",
            ));
        }
        eprint!("Username: ");
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        username = Some(s.trim().to_string());
    }
    if password.is_none() {
        if !std::io::stdin().is_terminal() {
            return Err(status(
                1,
                "Cannot perform an interactive login from a non TTY device",
            ));
        }
        eprint!("Password: ");
        let s = read_password()?;
        eprintln!();
        password = Some(s.trim_end_matches(['\n', '\r']).to_string());
    }
    let (username, password) = (username.unwrap_or_default(), password.unwrap_or_default());
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let body = json!({ "username": username, "password": password, "serveraddress": key });
    let resp = client
        .request(
            Method::POST,
            "/auth",
            json_body(&body)?,
            &[("Content-Type", "application/json")],
        )
        .await?;
    let answer: Value = serde_json::from_slice(&read_all(resp).await?).unwrap_or_default();
    let token = answer
        .get("IdentityToken")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut cfg = read_config();
    if let Some(h) = helper_for(&cfg, &key) {
        let input = json!({ "ServerURL": key, "Username": username, "Secret": if token.is_empty() { &password } else { &token } });
        run_helper(&h, "store", &input.to_string())?;
        let auths = cfg
            .as_object_mut()
            .expect("object")
            .entry("auths")
            .or_insert_with(|| json!({}));
        auths[&key] = json!({});
    } else {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        if !cfg.is_object() {
            cfg = json!({});
        }
        let auths = cfg
            .as_object_mut()
            .expect("object")
            .entry("auths")
            .or_insert_with(|| json!({}));
        auths[&key] = json!({ "auth": auth });
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/engine/reference/commandline/login/#credential-stores\n",
            config_path().display()
        );
    }
    write_config(&cfg)?;
    println!("Login Succeeded");
    Ok(0)
}

/// Reads a line from the terminal with echo off.
fn read_password() -> Result<String> {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let mut s = String::new();
    let r = stdin.read_line(&mut s);
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
    }
    r?;
    Ok(s)
}

/// `barge logout`.
pub async fn logout(_client: &Client, args: LogoutArgs) -> Result<i32> {
    let key = server_key(args.server.as_deref());
    let mut cfg = read_config();
    let had = cfg.get("auths").and_then(|a| a.get(&key)).is_some();
    if let Some(h) = helper_for(&cfg, &key) {
        let _ = run_helper(&h, "erase", &key);
    }
    if !had && helper_for(&cfg, &key).is_none() {
        println!("Not logged in to {key}");
        return Ok(0);
    }
    println!("Removing login credentials for {key}");
    if let Some(a) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        a.remove(&key);
    }
    write_config(&cfg)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(registry_of("busybox"), HUB_KEY);
        assert_eq!(
            registry_of("127.0.0.1:5000/library/busybox"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_of("localhost/x"), "localhost");
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b"),
            ("127.0.0.1:5000/a/b".into(), Some("latest".into()))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a/b:1"),
            ("127.0.0.1:5000/a/b".into(), Some("1".into()))
        );
        assert_eq!(
            split_tag("b@sha256:00"),
            ("b".into(), Some("sha256:00".into()))
        );
        assert_eq!(server_key(None), HUB_KEY);
        assert_eq!(server_key(Some("http://127.0.0.1:5000/")), "127.0.0.1:5000");
        assert_eq!(full_name("busybox"), "docker.io/library/busybox");
    }
}
