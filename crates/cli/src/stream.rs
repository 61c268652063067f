//! Container I/O: stdcopy demultiplexing, hijacked attach/exec streams, raw
//! terminal mode and TTY resizing.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{Client, Hijacked};

pub use barge_stdx::stdcopy::{Demux, STDERR, STDIN, STDOUT};

/// Writes container output to our stdout/stderr, demultiplexing unless `tty`.
pub struct OutputSink {
    tty: bool,
    demux: Demux,
}

impl OutputSink {
    /// A sink for a container with (`tty`) or without a terminal.
    pub fn new(tty: bool) -> Self {
        Self {
            tty,
            demux: Demux::default(),
        }
    }

    /// Writes one chunk of the daemon's stream.
    pub fn write(&mut self, data: &[u8]) {
        if self.tty {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(data);
            let _ = out.flush();
            return;
        }
        self.demux.feed(data, |stream, payload| {
            if stream == STDERR {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(payload);
                let _ = err.flush();
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(payload);
                let _ = out.flush();
            }
        });
    }
}

/// Copies a (non-hijacked) response body to our stdout/stderr.
pub async fn copy_body(body: Incoming, tty: bool) -> Result<()> {
    let mut body = body;
    let mut sink = OutputSink::new(tty);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sink.write(&data);
        }
    }
    Ok(())
}

/// Spawns a thread reading our stdin into a channel (closed at EOF).
fn stdin_channel() -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Pumps a hijacked stream: our stdin to the container (if `stdin`), its output to
/// our stdout/stderr. Returns when the output ends.
pub async fn pump(hijacked: Hijacked, tty: bool, stdin: bool) -> Result<()> {
    let io = match hijacked {
        Hijacked::Body(body) => return copy_body(body, tty).await,
        Hijacked::Upgraded(io) => io,
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let input = stdin.then(|| {
        tokio::spawn(async move {
            let mut rx = stdin_channel();
            while let Some(chunk) = rx.recv().await {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
                let _ = wr.flush().await;
            }
            let _ = wr.shutdown().await;
        })
    });
    let mut sink = OutputSink::new(tty);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        sink.write(&buf[..n]);
    }
    if let Some(task) = input {
        task.abort();
    }
    Ok(())
}

/// Puts the terminal on stdin in raw mode; restores it when dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Enters raw mode if stdin is a terminal.
    pub fn enter() -> Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Like docker (moby/term MakeRaw), output post-processing is off too: the container's
        // TTY already turned "\n" into "\r\n".
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(Some(Self { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The size (rows, columns) of the terminal on stdout, if any.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively borrowed
        // struct we pass; the fd is only read.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Sends the terminal size now and on every SIGWINCH. `path` is
/// `/containers/{id}` or `/exec/{id}`.
pub fn spawn_resizer(client: &Client, path: String) {
    let client = client.clone();
    tokio::spawn(async move {
        let resize = |client: Client, path: String| async move {
            if let Some((h, w)) = terminal_size() {
                let _ = client
                    .send(
                        hyper::Method::POST,
                        &format!("{path}/resize?h={h}&w={w}"),
                        None,
                    )
                    .await;
            }
        };
        resize(client.clone(), path.clone()).await;
        let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            resize(client.clone(), path.clone()).await;
        }
    });
}

/// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT we receive to the container (docker's
/// `--sig-proxy`), for attached containers without a TTY.
pub fn spawn_signal_proxy(client: &Client, container: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    let sigs = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    for (kind, name) in sigs {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let client = client.clone();
        let path = format!(
            "/containers/{}/kill?signal={name}",
            crate::client::seg(container)
        );
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = client.send(hyper::Method::POST, &path, None).await;
            }
        });
    }
}
