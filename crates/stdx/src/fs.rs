//! Durable record writes, shared by every store of the engine (containers, volumes, networks,
//! sandboxes, the build cache; the image store's `refs.json` and
//! snapshots follow the same steps with their own temp directory).
//!
//! [`write_atomic`] replaces a file so that after a crash at any point the path holds either
//! the old or the new content, complete: write a temp file in the same directory, `fsync` it,
//! `rename` it over the path, `fsync` the directory (which makes the rename itself durable;
//! see `rename(2)` and `fsync(2)`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Atomically and durably replaces `path` with `data` (temp file in the same directory,
/// fsync, rename, fsync of the directory). The temp file is removed on failure. Errors carry
/// the path and the step that failed.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_inner(path, data, None, true)
}

/// Atomically, but not durably, replaces `path` with `data` (temp file, rename; no fsync): a
/// reader never sees a partial file and a crash of the writing *process* loses nothing, but a
/// machine crash may. For runtime state under the exec root (a monitor's `exit.json`), which
/// describes processes that do not outlive the machine, so the two fsyncs of [`write_atomic`]
/// (1-3 ms on a journaling file system, on every container exit) buy nothing.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_inner(path, data, None, false)
}

/// [`write_atomic`] with the file's permission bits set to `mode` (e.g. `0o600` for a private
/// key) before any data is written, whatever the umask: the path never holds the content
/// with looser permissions.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_inner(path, data, Some(mode), true)
}

fn write_atomic_inner(
    path: &Path,
    data: &[u8],
    mode: Option<u32>,
    durable: bool,
) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = temp_path(path);
    let step = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", tmp.display()))
    };
    let r = (|| {
        let mut opts = File::options();
        opts.write(true).create_new(true);
        if let Some(m) = mode {
            opts.mode(m & 0o7777);
        }
        let mut f = opts.open(&tmp).map_err(|e| step("create", e))?;
        if let Some(m) = mode {
            // The umask may have cleared bits `mode` asks for.
            f.set_permissions(std::fs::Permissions::from_mode(m & 0o7777))
                .map_err(|e| step("chmod", e))?;
        }
        f.write_all(data).map_err(|e| step("write", e))?;
        if durable {
            f.sync_all().map_err(|e| step("fsync", e))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("rename {} to {}: {e}", tmp.display(), path.display()),
            )
        })
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if !durable {
        return Ok(());
    }
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `fsync` of a directory (makes renames and creations in it durable).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("fsync {}: {e}", dir.display())))
}

/// A unique temp name beside `path`: `.<name>.tmp-<pid>-<n>` (hidden, so directory listings
/// of records skip it; unique within the process by a counter and across processes by the pid,
/// so concurrent writers never share one).
fn temp_path(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rec.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rec.json")]);
    }

    #[test]
    fn write_replace_replaces_the_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        write_replace(&p, b"one").unwrap();
        write_replace(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("exit.json")]);
    }

    #[test]
    fn the_mode_is_set_whatever_it_was_before() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key.pem");
        write_atomic(&p, b"one").unwrap();
        write_atomic_mode(&p, b"secret", 0o600).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        // Bits the usual umask (022) would clear are kept.
        write_atomic_mode(&p, b"shared", 0o666).unwrap();
        assert_eq!(mode(&p), 0o666);
    }

    #[test]
    fn a_failed_write_is_an_error_naming_the_path_and_keeps_the_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rec.json");
        write_atomic(&p, b"old").unwrap();
        // The target is a non-empty directory: rename fails.
        let q = d.path().join("dir");
        std::fs::create_dir(&q).unwrap();
        std::fs::write(q.join("x"), "x").unwrap();
        let e = write_atomic(&q, b"new").unwrap_err();
        assert!(e.to_string().contains("rename"), "{e}");
        assert!(e.to_string().contains(&q.display().to_string()), "{e}");
        // Missing parent directory: create fails, with the temp path in the message.
        let e = write_atomic(&d.path().join("missing/rec.json"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
