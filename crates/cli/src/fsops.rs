//! Container file systems and housekeeping: `cp`, `diff`, `export`, `commit`, `attach`,
//! `system df`, `system prune`.
//!
//! `cp` lives in the `cp` submodule, `system df` and `system prune` in `df`; this file holds
//! `diff`, `export`, `commit` and `attach`.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{empty, json_body, query, seg, Client, Hijacked};
use crate::status;
use crate::stream::{self, OutputSink, RawMode};

mod cp;
mod df;

pub use cp::cp;
pub(crate) use cp::io_text;
pub use df::{df, system_prune};

// ------------------------------------------------------------------ diff, export, commit

/// `barge diff`.
pub async fn diff(client: &Client, args: crate::cli::ContainerArg) -> Result<i32> {
    let list: Vec<Value> = client
        .json(
            Method::GET,
            &format!("/containers/{}/changes", seg(&args.container)),
            None,
        )
        .await?;
    let mut out = std::io::stdout().lock();
    for c in list {
        let k = match c["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        writeln!(out, "{k} {}", c["Path"].as_str().unwrap_or_default())?;
    }
    Ok(0)
}

/// `barge export`.
pub async fn export(client: &Client, args: crate::cli::ExportArgs) -> Result<i32> {
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("failed to export container: {p}"))?,
        ),
        None => {
            if std::io::stdout().is_terminal() {
                return Err(status(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let resp = client
        .request(
            Method::GET,
            &format!("/containers/{}/export", seg(&args.container)),
            empty(),
            &[],
        )
        .await?;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            out.write_all(&d)?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// `barge commit`.
pub async fn commit(client: &Client, args: crate::cli::CommitArgs) -> Result<i32> {
    let (repo, tag) = match &args.reference {
        None => (None, None),
        Some(r) => {
            let last = r.rsplit('/').next().unwrap_or(r);
            match last.rsplit_once(':') {
                Some((_, t)) if !r.contains('@') => (
                    Some(r[..r.len() - t.len() - 1].to_string()),
                    Some(t.to_string()),
                ),
                _ => (Some(r.clone()), None),
            }
        }
    };
    let mut params: Vec<(&str, Option<String>)> = vec![
        ("container", Some(args.container.clone())),
        ("repo", repo),
        ("tag", tag),
        ("comment", args.message.clone()),
        ("author", args.author.clone()),
        ("pause", Some(args.pause.to_string())),
    ];
    for c in &args.change {
        params.push(("changes", Some(c.clone())));
    }
    let path = format!("/commit{}", query(&params));
    let resp: Value = client
        .json(Method::POST, &path, Some(json_body(&json!({}))?))
        .await?;
    println!("{}", resp["Id"].as_str().unwrap_or_default());
    Ok(0)
}

// ------------------------------------------------------------------ attach

/// The `--detach-keys` sequence (`ctrl-p,ctrl-q` by default) as bytes.
fn detach_sequence(spec: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in spec.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c {
                "@" => 0,
                "[" => 27,
                "\\" => 28,
                "]" => 29,
                "^" => 30,
                "_" => 31,
                c if c.len() == 1 && c.as_bytes()[0].is_ascii_lowercase() => {
                    c.as_bytes()[0] - b'a' + 1
                }
                _ => bail!("Invalid detach keys ({spec}) provided"),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            bail!("Invalid detach keys ({spec}) provided");
        }
    }
    Ok(out)
}

/// `barge attach`.
pub async fn attach(client: &Client, args: crate::cli::AttachArgs) -> Result<i32> {
    let info: Value = client
        .json(
            Method::GET,
            &format!("/containers/{}/json", seg(&args.container)),
            None,
        )
        .await?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        return Err(status(
            1,
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if info["State"]["Paused"].as_bool().unwrap_or(false) {
        return Err(status(
            1,
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let with_stdin = !args.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    if tty && with_stdin && !std::io::stdin().is_terminal() {
        return Err(status(1, "the input device is not a TTY"));
    }
    let detach = detach_sequence(args.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
    let id = info["Id"].as_str().unwrap_or(&args.container).to_string();
    let cid = seg(&id);
    let waiter = {
        let client = client.clone();
        let path = format!("/containers/{cid}/wait?condition=not-running");
        tokio::spawn(async move {
            let v: Value = client.json(Method::POST, &path, None).await?;
            anyhow::Ok(v["StatusCode"].as_i64().unwrap_or(0))
        })
    };
    let hijacked = client
        .hijack(
            &format!(
                "/containers/{cid}/attach?stream=1&stdin={}&stdout=1&stderr=1",
                u8::from(with_stdin)
            ),
            empty(),
        )
        .await?;
    let raw = if tty && with_stdin {
        RawMode::enter()?
    } else {
        None
    };
    if tty && std::io::stdout().is_terminal() {
        stream::spawn_resizer(client, format!("/containers/{cid}"));
    }
    if !tty && args.sig_proxy {
        stream::spawn_signal_proxy(client, &id);
    }
    let detached = pump_attach(hijacked, tty, with_stdin, detach).await;
    drop(raw);
    match detached? {
        true => {
            waiter.abort();
            eprintln!("read escape sequence");
            Ok(0)
        }
        false => match tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await {
            Ok(Ok(Ok(code))) => Ok(code as i32),
            _ => Ok(0),
        },
    }
}

/// Like [`stream::pump`], but stops (returning `true`) when stdin carries the detach keys.
async fn pump_attach(hijacked: Hijacked, tty: bool, stdin: bool, keys: Vec<u8>) -> Result<bool> {
    let io = match hijacked {
        Hijacked::Body(body) => {
            stream::copy_body(body, tty).await?;
            return Ok(false);
        }
        Hijacked::Upgraded(io) => io,
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let (det_tx, mut det_rx) = tokio::sync::oneshot::channel::<()>();
    let input = stdin.then(|| {
        tokio::spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut s = std::io::stdin();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            let mut matched = 0usize;
            while let Some(chunk) = rx.recv().await {
                let mut out = Vec::with_capacity(chunk.len());
                for &b in chunk.iter() {
                    if tty && !keys.is_empty() && b == keys[matched] {
                        matched += 1;
                        if matched == keys.len() {
                            let _ = wr.write_all(&out).await;
                            let _ = det_tx.send(());
                            return;
                        }
                        continue;
                    }
                    if matched > 0 {
                        out.extend_from_slice(&keys[..matched]);
                        matched = 0;
                    }
                    out.push(b);
                }
                if wr.write_all(&out).await.is_err() {
                    return;
                }
                let _ = wr.flush().await;
            }
            let _ = wr.shutdown().await;
        })
    });
    let mut sink = OutputSink::new(tty);
    let mut buf = vec![0u8; 32 * 1024];
    let detached = loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    break false;
                }
                sink.write(&buf[..n]);
            }
            r = &mut det_rx, if stdin => {
                if r.is_ok() {
                    break true;
                }
            }
        }
    };
    if let Some(task) = input {
        task.abort();
    }
    Ok(detached)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(detach_sequence("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(detach_sequence("a,ctrl-[").unwrap(), vec![b'a', 27]);
        assert!(detach_sequence("ctrl-pp").is_err());
    }
}
