//! Foreground output: containers attached (or their logs followed) with docker compose's
//! `name  | ` prefixes, colours on a TTY.

use std::io::Write;

use anyhow::Result;
use barge_stdx::stdcopy::Demux;
use http_body_util::BodyExt;
use tokio::io::AsyncReadExt;

use super::up::inspect;
use crate::client::{seg, Client, Hijacked};

/// `web-1` for `project-web-1` (compose's log prefix).
pub fn short_name(project: &str, name: &str) -> String {
    name.strip_prefix(&format!("{project}-"))
        .unwrap_or(name)
        .to_string()
}

/// compose's rainbow of prefix colours.
const COLORS: [&str; 12] = [
    "36", "33", "32", "35", "34", "31", "36;1", "33;1", "32;1", "35;1", "34;1", "31;1",
];

/// Writes prefixed lines of the containers' output.
pub struct Prefixer {
    prefix: String,
    partial: [Vec<u8>; 3],
}

impl Prefixer {
    /// A prefixer for `name` among names at most `width` long: padded to `width + 1` then
    /// `| ` (compose's `logConsumer`), coloured with `color` if set.
    pub fn new(name: &str, width: usize, color: Option<&str>, plain: bool) -> Self {
        let prefix = if plain {
            String::new()
        } else {
            let width = width + 1;
            let p = format!("{name:<width$} | ");
            match color {
                Some(c) => format!("\x1b[{c}m{p}\x1b[0m"),
                None => p,
            }
        };
        Self {
            prefix,
            partial: Default::default(),
        }
    }

    /// Feeds output of `stream` (1 stdout, 2 stderr); prints complete lines.
    pub fn feed(&mut self, stream: u8, data: &[u8]) {
        let buf = &mut self.partial[(stream as usize).min(2)];
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(&line);
        }
        if !out.is_empty() {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&out);
            let _ = o.flush();
        }
    }

    /// Prints what is left without a newline.
    pub fn finish(&mut self) {
        for i in 0..3 {
            if !self.partial[i].is_empty() {
                let mut data = std::mem::take(&mut self.partial[i]);
                data.push(b'\n');
                self.feed(i as u8, &data);
            }
        }
    }
}

/// Attached containers: each `(service, id, name)` arrives on `exits` when its output ends.
pub struct Attached {
    /// Number of attached containers.
    pub count: usize,
    /// Where ended containers are reported.
    pub exits: tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
}

/// Attaches to `(service, id, name)` containers (before they start: nothing is missed).
pub async fn attach_all(
    client: &Client,
    project: &str,
    list: Vec<(String, String, String)>,
    color: bool,
    plain: bool,
) -> Result<Attached> {
    let width = list
        .iter()
        .map(|(_, _, n)| short_name(project, n).len())
        .max()
        .unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut services: Vec<&String> = list.iter().map(|(s, _, _)| s).collect();
    services.dedup();
    for (service, id, name) in list.iter().cloned() {
        let idx = services.iter().position(|s| **s == service).unwrap_or(0);
        let mut p = Prefixer::new(
            &short_name(project, &name),
            width,
            color.then_some(COLORS[idx % COLORS.len()]),
            plain,
        );
        let info = inspect(client, &id).await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let hijacked = client
            .hijack(
                &format!("/containers/{}/attach?stream=1&stdout=1&stderr=1", seg(&id)),
                crate::client::empty(),
            )
            .await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            pump_prefixed(hijacked, tty, &mut p).await;
            p.finish();
            let _ = tx.send((service, id, name));
        });
    }
    Ok(Attached {
        count: list.len(),
        exits: rx,
    })
}

/// Copies a container's (multiplexed unless `tty`) output through `p` until it ends.
pub async fn pump_prefixed(h: Hijacked, tty: bool, p: &mut Prefixer) {
    let mut demux = Demux::default();
    let mut handle = |data: &[u8], p: &mut Prefixer| {
        if tty {
            p.feed(1, data);
        } else {
            demux.feed(data, |s, d| p.feed(s, d));
        }
    };
    match h {
        Hijacked::Upgraded(mut io) => {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                handle(&buf[..n], p);
            }
        }
        Hijacked::Body(mut body) => {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(d) = frame.into_data() {
                    handle(&d, p);
                }
            }
        }
    }
}
