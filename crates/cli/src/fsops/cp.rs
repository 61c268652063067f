//! `barge cp` (`docker cp`): operands, copying out of a container (`GET .../archive`, the
//! tar extracted on the host) and into one (`PUT .../archive`, a tar built on the host and
//! streamed), with docker's rules for names and destinations (`CopyInfoDestinationPath`,
//! `PrepareArchiveCopy`).
//!
//! **Invariants:** archive entries are rebased to the destination name and never written
//! outside the destination directory ([`safe_rel`] refuses `..`, parents are canonicalised and
//! checked in [`untar_host`]); tars are never buffered whole: blocking tar work runs on a
//! blocking thread fed by (or feeding) the HTTP body through bounded channels
//! ([`ChanReader`], [`SendWriter`]).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use barge_archive::inroot::{
    clean_entry_name, InRoot, InRootError, Owner, UnpackOptions, Unpacker, Unsupported,
};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;

use crate::client::{self, channel_body, empty, query, seg, Client};
use crate::format;
use crate::status;

/// A `docker cp` operand: `CONTAINER:PATH` or a local path (`-` for a tar on stdin/stdout).
#[derive(Debug, PartialEq)]
enum Operand {
    Local(String),
    Container(String, String),
}

/// docker's `splitCpArg`: a `:` before any `/` makes a container path; `./a:b` and absolute
/// paths are local.
fn split_cp_arg(arg: &str) -> Operand {
    if arg.starts_with('/') || arg.starts_with("./") || arg.starts_with("../") {
        return Operand::Local(arg.into());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => Operand::Container(c.into(), p.into()),
        _ => Operand::Local(arg.into()),
    }
}

/// Docker's `X-Docker-Container-Path-Stat`.
#[derive(Debug, Clone, serde::Deserialize)]
struct PathStat {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    size: i64,
    mode: u32,
    #[serde(rename = "linkTarget", default)]
    link_target: String,
}

impl PathStat {
    fn is_dir(&self) -> bool {
        self.mode & (1 << 31) != 0
    }
    fn is_symlink(&self) -> bool {
        self.mode & (1 << 27) != 0
    }
}

/// `HEAD /containers/{id}/archive`: `None` when the path does not exist.
async fn try_stat(client: &Client, container: &str, path: &str) -> Result<Option<PathStat>> {
    let p = format!(
        "/containers/{}/archive{}",
        seg(container),
        query(&[("path", Some(path.to_string()))])
    );
    let resp = client.raw(Method::HEAD, &p, empty(), &[]).await?;
    if resp.status() == hyper::StatusCode::NOT_FOUND {
        // No body on HEAD: tell a missing container from a missing path.
        client
            .send(
                Method::GET,
                &format!("/containers/{}/json", seg(container)),
                None,
            )
            .await?;
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(client::ApiError {
            status: resp.status().as_u16(),
            message: resp.status().to_string(),
        }
        .into());
    }
    decode_stat(resp.headers()).map(Some)
}

async fn stat_path(client: &Client, container: &str, path: &str) -> Result<PathStat> {
    try_stat(client, container, path).await?.ok_or_else(|| {
        status(
            1,
            format!("Error: No such container:path: {container}:{path}"),
        )
    })
}

fn decode_stat(h: &hyper::HeaderMap) -> Result<PathStat> {
    let v = h
        .get("X-Docker-Container-Path-Stat")
        .context("the daemon sent no path stat")?;
    let data = base64::engine::general_purpose::STANDARD.decode(v.as_bytes())?;
    Ok(serde_json::from_slice(&data)?)
}

/// The base name a path's archive entries carry (`dir/.` → `.`).
fn base_name(path: &str) -> String {
    if path.ends_with("/.") || path == "." {
        return ".".into();
    }
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Splits `path` into (dir, base) as Go's `filepath.Split` after trimming trailing slashes.
fn split_dir(path: &str) -> (String, String) {
    let t = path.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some(("", b)) => ("/".into(), b.into()),
        Some((d, b)) => (d.into(), b.into()),
        None => (".".into(), t.into()),
    }
}

/// Renames archive entries `old/...` to `new/...` (docker's `RebaseArchiveEntries`).
fn rebase(name: &[u8], old: &str, new: &str) -> Option<Vec<u8>> {
    let old = old.as_bytes();
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    if trimmed == old {
        let mut n = new.as_bytes().to_vec();
        if name.ends_with(b"/") {
            n.push(b'/');
        }
        return Some(n);
    }
    if name.starts_with(old) && name.get(old.len()) == Some(&b'/') {
        let mut n = new.as_bytes().to_vec();
        n.extend_from_slice(&name[old.len()..]);
        return Some(n);
    }
    None
}

/// Extracts a tar into `dst_dir` on the host, renaming `rename.0` to `rename.1` at the top;
/// every write goes through [`InRoot`] on `dst_dir`, so nothing lands outside it (names leaving
/// it are refused, symlinks are followed only inside it).
fn untar_host(
    r: &mut dyn Read,
    dst_dir: &Path,
    rename: Option<(String, String)>,
    keep_owner: bool,
) -> Result<()> {
    let root =
        InRoot::open(dst_dir).with_context(|| format!("destination {}", dst_dir.display()))?;
    let owner = if keep_owner && nix::unistd::geteuid().is_root() {
        Owner::FromEntry
    } else {
        Owner::Unchanged
    };
    let mut u = Unpacker::new(
        &root,
        UnpackOptions {
            owner,
            xattrs: false,
            no_overwrite_dir_non_dir: true,
            specials: true,
            unsupported: Unsupported::Skip,
        },
    );
    let renamed = |name: Vec<u8>| match &rename {
        Some((old, new)) => rebase(&name, old, new).unwrap_or(name),
        None => name,
    };
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let mut e = entry?;
        let name = renamed(e.path_bytes().into_owned());
        let shown = String::from_utf8_lossy(&name).into_owned();
        let Some(rel) = clean_entry_name(&name) else {
            bail!("invalid archive entry {shown:?}: it leaves the destination");
        };
        if rel.as_os_str().is_empty() {
            // `./`: the destination directory itself.
            continue;
        }
        let link = match e.header().entry_type() {
            tar::EntryType::Link => {
                let l = e.link_name_bytes().context("hard link without target")?;
                let l = clean_entry_name(&renamed(l.into_owned())).with_context(|| {
                    format!("invalid hard link {shown:?}: it leaves the destination")
                })?;
                Some(l)
            }
            _ => None,
        };
        match u.unpack_entry(&mut e, &rel, link.as_deref()) {
            Ok(_) => {}
            Err(err @ InRootError::Overwrite { .. }) => bail!("{}", err.shown_under(dst_dir)),
            Err(err) => return Err(err).with_context(|| format!("extracting {}", rel.display())),
        }
    }
    u.finish()?;
    Ok(())
}

/// A blocking reader fed by an async task (a response body read on a worker thread).
struct ChanReader {
    rx: std::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Ok(b)) => self.cur = b,
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Feeds a response body to `f` (run on a blocking thread) as a `Read`; returns its result and
/// the number of bytes read.
async fn with_body_reader<T: Send + 'static>(
    body: hyper::body::Incoming,
    f: impl FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
) -> Result<(T, u64)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    let worker = tokio::task::spawn_blocking(move || {
        let mut r = ChanReader {
            rx,
            cur: Bytes::new(),
        };
        let out = f(&mut r);
        // Drain so the feeder never blocks on a full channel.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        out
    });
    let mut body = body;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    total += d.len() as u64;
                    let tx = tx.clone();
                    if tokio::task::spawn_blocking(move || tx.send(Ok(d)))
                        .await?
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                break;
            }
        }
    }
    drop(tx);
    Ok((worker.await??, total))
}

/// `barge cp`.
pub async fn cp(client: &Client, args: crate::cli::CpArgs) -> Result<i32> {
    let src = split_cp_arg(&args.src);
    let dst = split_cp_arg(&args.dst);
    match (src, dst) {
        (Operand::Container(c, p), Operand::Local(l)) => {
            copy_from_container(client, &c, &p, &l, &args).await
        }
        (Operand::Local(l), Operand::Container(c, p)) => {
            copy_to_container(client, &l, &c, &p, &args).await
        }
        (Operand::Container(..), Operand::Container(..)) => {
            Err(status(1, "copying between containers is not supported"))
        }
        (Operand::Local(..), Operand::Local(..)) => {
            Err(status(1, "must specify at least one container source"))
        }
    }
}

async fn copy_from_container(
    client: &Client,
    container: &str,
    src: &str,
    dst: &str,
    args: &crate::cli::CpArgs,
) -> Result<i32> {
    if src.is_empty() {
        return Err(status(1, "source can not be empty"));
    }
    let mut src_path = src.to_string();
    let mut rebase_name = None;
    if dst != "-" && args.follow_link {
        let st = stat_path(client, container, &src_path).await?;
        if st.is_symlink() {
            let (d, _) = split_dir(&src_path);
            let t = if st.link_target.starts_with('/') {
                st.link_target.clone()
            } else {
                format!("{d}/{}", st.link_target)
            };
            rebase_name = Some(base_name(&src_path));
            src_path = t;
        }
    }
    let st = stat_path(client, container, &src_path).await?;
    let path = format!(
        "/containers/{}/archive{}",
        seg(container),
        query(&[("path", Some(src_path.clone()))])
    );
    let resp = client.request(Method::GET, &path, empty(), &[]).await?;
    if dst == "-" {
        let mut body = resp.into_body();
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame?.into_data() {
                out.write_all(&d)?;
            }
        }
        out.flush()?;
        return Ok(0);
    }
    // docker's CopyInfoDestinationPath + PrepareArchiveCopy.
    let dst_path = Path::new(dst);
    let dst_md = std::fs::metadata(dst_path).ok();
    // The archive's top entry is named after the path asked for; with -L it takes the link's
    // name.
    let top = base_name(&src_path);
    let (dst_dir, rename): (PathBuf, Option<(String, String)>) = match &dst_md {
        Some(md) if md.is_dir() => (
            dst_path.to_path_buf(),
            rebase_name.map(|n| (top.clone(), n)),
        ),
        Some(_) if st.is_dir() => {
            return Err(status(1, "cannot copy a directory to a file"));
        }
        _ => {
            if dst_md.is_none() && dst.ends_with('/') && !st.is_dir() {
                return Err(status(
                    1,
                    format!("destination directory \"{dst}\" does not exist"),
                ));
            }
            let (d, b) = split_dir(dst);
            let parent = PathBuf::from(&d);
            if !parent.is_dir() {
                return Err(status(
                    1,
                    format!("lstat {}: no such file or directory", parent.display()),
                ));
            }
            (parent, Some((top.clone(), b)))
        }
    };
    let keep_owner = args.archive;
    let (_, size) = with_body_reader(resp.into_body(), move |r| {
        untar_host(r, &dst_dir, rename, keep_owner)
    })
    .await?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {dst}",
            format::human_size_prec(size as f64, 3)
        );
    }
    Ok(0)
}

async fn copy_to_container(
    client: &Client,
    src: &str,
    container: &str,
    dst: &str,
    args: &crate::cli::CpArgs,
) -> Result<i32> {
    if dst.is_empty() {
        return Err(status(1, "destination can not be empty"));
    }
    // Where the destination resolves to in the container (following a symlink at it).
    let mut dst_path = dst.to_string();
    let mut dst_stat = try_stat(client, container, &dst_path).await?;
    if let Some(st) = &dst_stat {
        if st.is_symlink() && !dst.ends_with('/') {
            let (d, _) = split_dir(&dst_path);
            dst_path = if st.link_target.starts_with('/') {
                st.link_target.clone()
            } else {
                format!("{d}/{}", st.link_target)
            };
            dst_stat = try_stat(client, container, &dst_path).await?;
        }
    }
    let dst_is_dir = dst_stat.as_ref().is_some_and(PathStat::is_dir);
    let (tx, body) = channel_body();
    let target_dir;
    if src == "-" {
        if !dst_is_dir {
            return Err(status(
                1,
                format!("destination \"{container}:{dst}\" must be a directory"),
            ));
        }
        target_dir = dst_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        break;
                    }
                }
            }
        });
    } else {
        let mut src_path = PathBuf::from(src);
        let lmd = std::fs::symlink_metadata(&src_path)
            .map_err(|e| status(1, format!("lstat {src}: {}", io_text(&e))))?;
        let src_base = base_name(src);
        if args.follow_link && lmd.file_type().is_symlink() {
            src_path = std::fs::canonicalize(&src_path)?;
        }
        let src_is_dir = std::fs::metadata(&src_path).is_ok_and(|m| m.is_dir())
            && (args.follow_link || !lmd.file_type().is_symlink());
        // PrepareArchiveCopy: into an existing dir as is; otherwise into the parent, renamed.
        let rename = if dst_is_dir {
            None
        } else if dst_stat.is_some() && src_is_dir {
            return Err(status(1, "cannot copy a directory to a file"));
        } else {
            if dst_stat.is_none() && dst.ends_with('/') && !src_is_dir {
                return Err(status(
                    1,
                    format!("destination directory \"{container}:{dst}\" does not exist"),
                ));
            }
            Some(split_dir(&dst_path).1)
        };
        target_dir = match &rename {
            None => dst_path.clone(),
            Some(_) => split_dir(&dst_path).0,
        };
        // The top entry: renamed to the destination's name, else `.` for `dir/.` (its
        // entries `./x` land in the destination directory), else the source's base name.
        let top = match rename {
            Some(new) => new,
            None => src_base,
        };
        tokio::task::spawn_blocking(move || {
            let err_tx = tx.clone();
            let w = SendWriter(tx, Vec::new());
            let r = (|| -> std::io::Result<()> {
                let mut t = barge_archive::TreeTar::new(w);
                t.add_tree(&src_path, Path::new(&top), &|_| false)?;
                let mut w = t.finish()?;
                w.flush()
            })();
            if let Err(e) = r {
                let _ = err_tx.blocking_send(Err(e));
            }
        });
    }
    let path = format!(
        "/containers/{}/archive{}",
        seg(container),
        query(&[
            ("path", Some(target_dir)),
            ("noOverwriteDirNonDir", Some("true".into())),
            ("copyUIDGID", args.archive.then(|| "true".to_string())),
        ])
    );
    let resp = client
        .request(
            Method::PUT,
            &path,
            body,
            &[("Content-Type", "application/x-tar")],
        )
        .await?;
    client::read_all(resp).await?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!("Successfully copied to {container}:{dst}");
    }
    Ok(0)
}

/// An I/O error worded as Go prints it (`no such file or directory`).
pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// A blocking writer that sends 64 KiB chunks to a request body channel.
struct SendWriter(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>, Vec<u8>);

impl Write for SendWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(data);
        if self.1.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.1.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.1));
        self.0
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_operands() {
        assert_eq!(
            split_cp_arg("web:/etc/hosts"),
            Operand::Container("web".into(), "/etc/hosts".into())
        );
        assert_eq!(split_cp_arg("/tmp/a:b"), Operand::Local("/tmp/a:b".into()));
        assert_eq!(split_cp_arg("./a:b"), Operand::Local("./a:b".into()));
        assert_eq!(split_cp_arg("-"), Operand::Local("-".into()));
        assert_eq!(split_cp_arg("dir/a:b"), Operand::Local("dir/a:b".into()));
    }

    #[test]
    fn rebasing_and_names() {
        assert_eq!(rebase(b"etc/", "etc", "out"), Some(b"out/".to_vec()));
        assert_eq!(
            rebase(b"etc/passwd", "etc", "out"),
            Some(b"out/passwd".to_vec())
        );
        assert_eq!(rebase(b"./", ".", "out"), Some(b"out/".to_vec()));
        assert_eq!(rebase(b"./x", ".", "out"), Some(b"out/x".to_vec()));
        assert_eq!(rebase(b"etcx", "etc", "out"), None);
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/etc/."), ".");
        assert_eq!(split_dir("/a/b/"), ("/a".to_string(), "b".to_string()));
        assert_eq!(split_dir("/b"), ("/".to_string(), "b".to_string()));
        assert_eq!(split_dir("b"), (".".to_string(), "b".to_string()));
    }

    #[test]
    fn untar_host_stays_in_the_destination() {
        let d = std::env::temp_dir().join(format!(
            "barge-cli-untar-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let dst = d.join("dst");
        let outside = d.join("outside");
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let out = outside.display().to_string();
        // A link out of the destination, then files through it: they land inside it.
        std::fs::create_dir_all(dst.join(outside.strip_prefix("/").unwrap())).unwrap();
        let t = barge_archive::raw_tar(&[
            ("top/", tar::EntryType::Directory, "", 0o755),
            ("top/evil", tar::EntryType::Symlink, &out, 0o644),
            ("top/evil/pwned", tar::EntryType::Regular, "x", 0o644),
            ("top/up", tar::EntryType::Symlink, "../../..", 0o644),
            ("top/up/pwned2", tar::EntryType::Regular, "y", 0o644),
        ]);
        untar_host(
            &mut &t[..],
            &dst,
            Some(("top".into(), "copy".into())),
            false,
        )
        .unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(dst
            .join(outside.strip_prefix("/").unwrap())
            .join("pwned")
            .is_file());
        assert!(dst.join("pwned2").is_file());
        assert!(dst.join("copy/evil").is_symlink());
        for bad in ["../x", "a/../../x"] {
            let t = barge_archive::raw_tar(&[(bad, tar::EntryType::Regular, "x", 0o644)]);
            let e = untar_host(&mut &t[..], &dst, None, false).unwrap_err();
            assert!(e.to_string().contains("leaves the destination"), "{e}");
        }
        let t = barge_archive::raw_tar(&[("copy", tar::EntryType::Regular, "x", 0o644)]);
        let e = untar_host(&mut &t[..], &dst, None, false).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot overwrite directory"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
