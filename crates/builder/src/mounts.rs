//! `RUN --mount` as BuildKit does it
//! (<https://docs.docker.com/reference/dockerfile/#run---mount>): the option syntax
//! ([`parse`]), and the store of persistent cache mounts ([`CacheMounts`]).
//!
//! - `type=bind` (the default): `target`, `source` (default: the root of `from`), `from` (a
//!   stage or image; default the build context), `rw` (writes allowed but discarded: an
//!   overlay on the source, thrown away after the step).
//! - `type=cache`: `target`, `id` (default: the target), `sharing=shared|private|locked`,
//!   `from`/`source` (the initial content), `mode`/`uid`/`gid` (of a new, empty cache
//!   directory), `ro`. Cache directories live in `<data-root>/builder/mounts` and persist across
//!   builds and daemon restarts until `builder prune`.
//! - `type=tmpfs`: `target`, `size`.
//!
//! Mounts are never part of the step's layer (their mount points are left out of the diff).
//! They are part of the step's cache key as in BuildKit: the mount definitions, and for bind
//! mounts the content of what is mounted; the content of a cache mount is not.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A `--mount` option that is not valid, or a cache directory that cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The option text is malformed (the message says how).
    #[error("--mount={spec}: {message}")]
    Invalid { spec: String, message: String },
    /// A mount type barge's builder does not implement.
    #[error("--mount={spec}: mount type {kind} is not supported by barge's builder (bind, cache and tmpfs are)")]
    Unsupported { spec: String, kind: String },
    /// File system work on the cache store failed.
    #[error("cache mount {what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> MountError {
    let what = what.into();
    move |source| MountError::Io { what, source }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Every user gets the same directory at the same time (BuildKit's default).
    #[default]
    Shared,
    /// A user gets a directory nobody else uses at the moment (a new one if all are busy).
    Private,
    /// Users of the directory take turns.
    Locked,
}

impl Sharing {
    /// BuildKit's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Private => "private",
            Sharing::Locked => "locked",
        }
    }
}

/// One `RUN --mount=...`, with its values expanded; `target` is still as written (relative
/// targets are resolved against the working directory by the executor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind`.
    Bind {
        target: String,
        source: String,
        from: Option<String>,
        rw: bool,
    },
    /// `type=cache`.
    Cache {
        target: String,
        id: String,
        sharing: Sharing,
        from: Option<String>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
    },
    /// `type=tmpfs`.
    Tmpfs { target: String, size: Option<u64> },
}

impl RunMount {
    /// The mount's target as written.
    pub fn target(&self) -> &str {
        match self {
            RunMount::Bind { target, .. }
            | RunMount::Cache { target, .. }
            | RunMount::Tmpfs { target, .. } => target,
        }
    }

    /// The stage or image the mount reads from, if any.
    pub fn from(&self) -> Option<&str> {
        match self {
            RunMount::Bind { from, .. } | RunMount::Cache { from, .. } => from.as_deref(),
            RunMount::Tmpfs { .. } => None,
        }
    }
}

/// Splits a CSV line as Go's `encoding/csv` does for one record (double quotes group).
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_bool(v: Option<&str>) -> Option<bool> {
    match v {
        None => Some(true),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Some(true),
            "0" | "f" | "false" => Some(false),
            _ => None,
        },
    }
}

/// Parses a size as docker's `go-units` `RAMInBytes` does (`64m`, `1g`, `512k`, `100`; binary
/// multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    barge_stdx::units::ram_in_bytes(s.trim())
        .ok()
        .map(|v| v as u64)
}

/// Parses one `--mount` value (already variable-expanded), e.g.
/// `type=cache,target=/root/.cache,sharing=locked`.
pub fn parse(spec: &str) -> Result<RunMount, MountError> {
    let bad = |m: String| MountError::Invalid {
        spec: spec.to_string(),
        message: m,
    };
    let mut kind = "bind".to_string();
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for f in csv_fields(spec) {
        let f = f.trim();
        if f.is_empty() {
            continue;
        }
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (f.to_ascii_lowercase(), None),
        };
        if k == "type" {
            kind = v.unwrap_or_default().to_ascii_lowercase();
        } else {
            kv.push((k, v));
        }
    }
    let (mut target, mut source, mut from, mut id) = (None, String::new(), None, None);
    let (mut rw, mut readonly, mut sharing, mut size) = (None, None, Sharing::Shared, None);
    let (mut mode, mut uid, mut gid) = (0o755u32, 0u32, 0u32);
    match kind.as_str() {
        "bind" | "cache" | "tmpfs" => {}
        "secret" | "ssh" => {
            return Err(MountError::Unsupported {
                spec: spec.to_string(),
                kind,
            })
        }
        o => return Err(bad(format!("unsupported mount type {o:?}"))),
    }
    for (k, v) in kv {
        let val = || {
            v.clone()
                .ok_or_else(|| bad(format!("{k} requires a value")))
        };
        match k.as_str() {
            "target" | "dst" | "destination" => target = Some(val()?),
            "source" | "src" => source = val()?,
            "from" => from = Some(val()?).filter(|f| !f.is_empty()),
            "id" => id = Some(val()?),
            "ro" | "readonly" => {
                readonly = Some(
                    parse_bool(v.as_deref())
                        .ok_or_else(|| bad(format!("invalid value for {k}")))?,
                )
            }
            "rw" | "readwrite" => {
                rw = Some(
                    parse_bool(v.as_deref())
                        .ok_or_else(|| bad(format!("invalid value for {k}")))?,
                )
            }
            "sharing" => {
                sharing = match val()?.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    o => return Err(bad(format!("unsupported sharing value {o:?}"))),
                }
            }
            "mode" => {
                let m = val()?;
                mode = u32::from_str_radix(&m, 8)
                    .map_err(|_| bad(format!("invalid mode {m:?} (octal expected)")))?
            }
            "uid" => {
                let u = val()?;
                uid = u.parse().map_err(|_| bad(format!("invalid uid {u:?}")))?
            }
            "gid" => {
                let g = val()?;
                gid = g.parse().map_err(|_| bad(format!("invalid gid {g:?}")))?
            }
            "size" if kind == "tmpfs" => {
                let s = val()?;
                size = Some(parse_size(&s).ok_or_else(|| bad(format!("invalid size {s:?}")))?)
            }
            "tmpfs-size" if kind == "tmpfs" => {
                let s = val()?;
                size = Some(parse_size(&s).ok_or_else(|| bad(format!("invalid size {s:?}")))?)
            }
            o => return Err(bad(format!("unexpected key '{o}' for a {kind} mount"))),
        }
    }
    let target = target
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("mount target is required".into()))?;
    let only = |what: &str, set: bool| {
        if set {
            Err(bad(format!("{what} is not valid for a {kind} mount")))
        } else {
            Ok(())
        }
    };
    Ok(match kind.as_str() {
        "bind" => {
            only("id", id.is_some())?;
            let rw = match (rw, readonly) {
                (Some(true), Some(true)) => {
                    return Err(bad("a mount cannot be both rw and readonly".into()))
                }
                (Some(rw), _) => rw,
                (None, Some(ro)) => !ro,
                (None, None) => false,
            };
            RunMount::Bind {
                target,
                source,
                from,
                rw,
            }
        }
        "cache" => RunMount::Cache {
            id: id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| target.clone()),
            target,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly: match (readonly, rw) {
                (Some(ro), _) => ro,
                (None, Some(rw)) => !rw,
                (None, None) => false,
            },
        },
        _ => {
            only("from", from.is_some())?;
            only("source", !source.is_empty())?;
            only("id", id.is_some())?;
            RunMount::Tmpfs { target, size }
        }
    })
}

/// The persistent cache mount directories: `<dir>/<key>/<n>/` with a lock file
/// `<dir>/<key>/<n>.lock` per instance (flock: shared for `sharing=shared`, exclusive for
/// `locked` and `private`). A new instance is made in a temp dir and renamed into place, so
/// a crash never leaves a half-seeded cache.
pub struct CacheMounts {
    dir: PathBuf,
}

/// A cache directory in use by one step; its lock is released on drop.
pub struct CacheLease {
    /// The host directory to bind-mount.
    pub path: PathBuf,
    _lock: File,
}

fn flock(f: &File, op: libc::c_int) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: a valid open file descriptor.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(e),
        }
    }
}

impl CacheMounts {
    /// The store under `dir` (`<data-root>/builder/mounts`).
    pub fn new(dir: PathBuf) -> CacheMounts {
        CacheMounts { dir }
    }

    /// The store key of a cache mount: its id plus what a new directory starts from.
    pub fn key(id: &str, origin: &str) -> String {
        let mut h = Sha256::new();
        h.update(id.as_bytes());
        h.update(b"\0");
        h.update(origin.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    }

    /// Takes a cache directory for `key` under `sharing`, creating it with `init` (which fills
    /// a new empty directory) when it does not exist yet. Blocks while a `locked` user holds it.
    pub fn acquire(
        &self,
        key: &str,
        id: &str,
        sharing: Sharing,
        init: &dyn Fn(&Path) -> io::Result<()>,
    ) -> Result<CacheLease, MountError> {
        let base = self.dir.join(key);
        fs::create_dir_all(&base).map_err(io_err(format!("create {}", base.display())))?;
        let meta = base.join("id");
        if !meta.exists() {
            barge_stdx::fs::write_atomic(&meta, id.as_bytes())
                .map_err(io_err(format!("write {}", meta.display())))?;
        }
        for n in 0.. {
            let lock_path = base.join(format!("{n}.lock"));
            let lock = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err(format!("open {}", lock_path.display())))?;
            let got = match sharing {
                Sharing::Shared => flock(&lock, libc::LOCK_SH),
                Sharing::Locked => flock(&lock, libc::LOCK_EX),
                Sharing::Private => flock(&lock, libc::LOCK_EX | libc::LOCK_NB),
            }
            .map_err(io_err(format!("lock {}", lock_path.display())))?;
            if !got {
                continue;
            }
            let path = base.join(n.to_string());
            if !path.is_dir() {
                let tmp = base.join(format!("{n}.tmp-{}-{}", std::process::id(), nonce()));
                fs::create_dir(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
                if let Err(e) = init(&tmp) {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(MountError::Io {
                        what: format!("initialise {id}"),
                        source: e,
                    });
                }
                // Another shared user may have made it meanwhile: keep theirs.
                if fs::rename(&tmp, &path).is_err() {
                    let _ = fs::remove_dir_all(&tmp);
                }
            }
            return Ok(CacheLease { path, _lock: lock });
        }
        unreachable!("instances are unbounded")
    }

    /// Removes every cache directory nobody uses now (and leftovers of interrupted
    /// creations). Returns (directories removed, bytes freed).
    pub fn prune(&self) -> Result<(usize, u64), MountError> {
        let mut removed = 0;
        let mut bytes = 0;
        let Ok(keys) = fs::read_dir(&self.dir) else {
            return Ok((0, 0));
        };
        for k in keys.flatten() {
            let base = k.path();
            let Ok(entries) = fs::read_dir(&base) else {
                continue;
            };
            let mut left = 0;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let p = e.path();
                if name.contains(".tmp-") {
                    let _ = fs::remove_dir_all(&p);
                    continue;
                }
                if name.parse::<u64>().is_err() {
                    continue;
                }
                let lock = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(base.join(format!("{name}.lock")))
                    .map_err(io_err("open lock"))?;
                if flock(&lock, libc::LOCK_EX | libc::LOCK_NB).map_err(io_err("lock"))? {
                    bytes += du(&p);
                    fs::remove_dir_all(&p).map_err(io_err(format!("remove {}", p.display())))?;
                    removed += 1;
                } else {
                    left += 1;
                }
            }
            if left == 0 {
                let _ = fs::remove_dir_all(&base);
            }
        }
        Ok((removed, bytes))
    }
}

fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Bytes used by the files under `p`.
fn du(p: &Path) -> u64 {
    let Ok(md) = fs::symlink_metadata(p) else {
        return 0;
    };
    if md.is_dir() {
        fs::read_dir(p)
            .map(|d| d.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        md.len()
    }
}

/// Sets the owner and mode of a new empty cache directory.
pub fn init_empty(dir: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Copies the tree at `src` into the existing directory `dest`, keeping modes, owners and
/// symlinks (the initial content of a cache mount with `from`).
pub fn copy_tree(src: &Path, dest: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    if !md.is_dir() {
        let name = src.file_name().unwrap_or_default();
        return copy_entry(src, &dest.join(name), &md);
    }
    for e in fs::read_dir(src)? {
        let e = e?;
        let p = e.path();
        let md = fs::symlink_metadata(&p)?;
        copy_entry(&p, &dest.join(e.file_name()), &md)?;
    }
    std::os::unix::fs::lchown(dest, Some(md.uid()), Some(md.gid()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(md.mode() & 0o7777))
}

fn copy_entry(src: &Path, dest: &Path, md: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_char_device() && md.rdev() == 0 {
        return Ok(()); // an overlay whiteout
    }
    if ft.is_dir() {
        fs::create_dir(dest)?;
        copy_tree(src, dest)?;
        return Ok(());
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
    } else if ft.is_file() {
        fs::copy(src, dest)?;
        fs::set_permissions(dest, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    } else {
        return Ok(()); // devices, fifos and sockets are not copied
    }
    std::os::unix::fs::lchown(dest, Some(md.uid()), Some(md.gid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_mount_options() {
        assert_eq!(
            parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1,gid=2").unwrap(),
            RunMount::Cache {
                target: "/root/.cache".into(),
                id: "/root/.cache".into(),
                sharing: Sharing::Locked,
                from: None,
                source: String::new(),
                mode: 0o700,
                uid: 1,
                gid: 2,
                readonly: false,
            }
        );
        assert_eq!(
            parse("target=/src,from=build,source=out,rw").unwrap(),
            RunMount::Bind {
                target: "/src".into(),
                source: "out".into(),
                from: Some("build".into()),
                rw: true,
            }
        );
        assert_eq!(
            parse("type=bind,dst=/x,readonly=false").unwrap(),
            RunMount::Bind {
                target: "/x".into(),
                source: String::new(),
                from: None,
                rw: true,
            }
        );
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap(),
            RunMount::Tmpfs {
                target: "/t".into(),
                size: Some(64 << 20),
            }
        );
        assert_eq!(
            parse("type=cache,id=go,target=/go").unwrap().target(),
            "/go"
        );
        assert!(matches!(
            parse("type=secret,id=x"),
            Err(MountError::Unsupported { .. })
        ));
        for bad in [
            "type=cache",
            "type=cache,target=/x,sharing=maybe",
            "type=cache,target=/x,mode=9z",
            "type=bind,target=/x,id=3",
            "type=tmpfs,target=/x,from=a",
            "type=volume,target=/x",
            "type=bind,target=/x,bogus=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            csv_fields("a=1,\"b=2,3\",c"),
            vec!["a=1".to_string(), "b=2,3".into(), "c".into()]
        );
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("512KiB"), Some(512 << 10));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn cache_instances_persist_and_follow_the_sharing_mode() {
        let d = tempfile::tempdir().unwrap();
        let store = CacheMounts::new(d.path().join("mounts"));
        let key = CacheMounts::key("id", "");
        let init = |p: &Path| fs::write(p.join("seed"), "s");
        let a = store.acquire(&key, "id", Sharing::Shared, &init).unwrap();
        fs::write(a.path.join("made"), "1").unwrap();
        // Shared: the same directory at the same time.
        let b = store.acquire(&key, "id", Sharing::Shared, &init).unwrap();
        assert_eq!(a.path, b.path);
        assert!(b.path.join("made").exists());
        // Private while it is in use: another directory.
        let p = store.acquire(&key, "id", Sharing::Private, &init).unwrap();
        assert_ne!(p.path, a.path);
        assert!(p.path.join("seed").exists() && !p.path.join("made").exists());
        drop((a, b, p));
        // Free again: private gets the first one back, with its content.
        let p = store.acquire(&key, "id", Sharing::Private, &init).unwrap();
        assert!(p.path.join("made").exists());
        // Locked waits for the holder.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let l = store.acquire(&key, "id", Sharing::Locked, &init).unwrap();
                tx.send(l.path.clone()).unwrap();
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(rx.try_recv().is_err(), "locked must wait");
            drop(p);
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        });
        // Prune removes what is not in use.
        let held = store.acquire(&key, "id", Sharing::Shared, &init).unwrap();
        let (n, _) = store.prune().unwrap();
        assert_eq!(n, 1, "the second (private) instance");
        assert!(held.path.exists());
        drop(held);
        let (n, _) = store.prune().unwrap();
        assert_eq!(n, 1);
        assert!(!d.path().join("mounts").join(&key).exists());
    }
}
