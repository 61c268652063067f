//! Build contexts: unpacking the tar a client sends (`POST /build`), and making one from a
//! directory honouring `.dockerignore` (the CLI side, as docker's client does).

use std::io::{self, Read};
use std::path::Path;

use barge_archive::inroot::{clean_entry_name, InRoot, UnpackOptions, Unpacker};

/// Unpacks a (possibly gzip/zstd-compressed) context tar into `dir`, modes and mtimes kept,
/// owners not. Every write goes through [`InRoot`] on `dir` (symlinks followed only inside
/// it); entries whose name or hard link target leaves `dir` are skipped, as the tar crate did.
pub fn extract(r: impl Read, dir: &Path) -> io::Result<()> {
    let (_, r) = barge_image::digest::decompressed(r)?;
    let root = InRoot::open(dir).map_err(io::Error::other)?;
    let mut u = Unpacker::new(&root, UnpackOptions::default());
    let mut a = tar::Archive::new(r);
    for e in a.entries()? {
        let mut e = e?;
        let Some(rel) = clean_entry_name(&e.path_bytes()) else {
            continue;
        };
        let link = match e.header().entry_type() {
            tar::EntryType::Link => match e.link_name_bytes().and_then(|l| clean_entry_name(&l)) {
                Some(l) => Some(l),
                None => continue,
            },
            _ => None,
        };
        u.unpack_entry(&mut e, &rel, link.as_deref())
            .map_err(io::Error::other)?;
    }
    u.finish().map_err(io::Error::other)
}

/// dockerd's `removeDockerfile` (classic builder): when the unpacked context has a
/// `.dockerignore`, the `.dockerignore` itself and the Dockerfile (`dockerfile`, relative to
/// the context) are removed from it if its patterns exclude them, so `COPY . /dst` does not
/// copy them. (docker-py sends a Dockerfile from outside the context as `.dockerfile.<hex>`
/// with a `.dockerignore` naming it.) Only the context's own files are removed: a path under
/// a symlinked directory is left alone.
pub fn remove_ignored_control_files(dir: &Path, dockerfile: &str) -> io::Result<()> {
    let text = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let ignore = barge_archive::ignore::Ignore::parse(&text);
    for rel in [".dockerignore", dockerfile] {
        if !ignore.excluded(rel) {
            continue;
        }
        let mut path = dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut inside = true;
        for (i, c) in parts.iter().enumerate() {
            path.push(c);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if !last && !m.is_dir() => inside = false,
                Ok(_) => {}
                Err(_) => inside = false,
            }
            if !inside {
                break;
            }
        }
        if inside && !parts.is_empty() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

pub use barge_archive::context::{ignore_for, write_tar};

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn ignored_dockerfile_and_dockerignore_leave_the_context() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join(".dockerignore"),
            ".dockerignore\n.dockerfile.ab\n",
        )
        .unwrap();
        fs::write(d.path().join(".dockerfile.ab"), "FROM x\n").unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM y\n").unwrap();
        remove_ignored_control_files(d.path(), ".dockerfile.ab").unwrap();
        assert!(!d.path().join(".dockerignore").exists());
        assert!(!d.path().join(".dockerfile.ab").exists());
        assert!(d.path().join("Dockerfile").exists());
        // Not excluded: both stay.
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(".dockerignore"), "*.log\n").unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM y\n").unwrap();
        remove_ignored_control_files(d.path(), "Dockerfile").unwrap();
        assert!(d.path().join(".dockerignore").exists());
        assert!(d.path().join("Dockerfile").exists());
    }

    #[test]
    fn tar_honours_dockerignore_and_roundtrips() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/tmp")).unwrap();
        fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(
            d.path().join(".dockerignore"),
            "Dockerfile\n*.log\nsrc/tmp\n",
        )
        .unwrap();
        fs::write(d.path().join("a.log"), "x").unwrap();
        fs::write(d.path().join("src/main.c"), "int main;").unwrap();
        fs::write(d.path().join("src/tmp/junk"), "j").unwrap();
        let ig = ignore_for(d.path(), None);
        let data = write_tar(d.path(), &ig, "Dockerfile", Vec::new()).unwrap();
        let out = tempfile::tempdir().unwrap();
        extract(&data[..], out.path()).unwrap();
        assert!(
            out.path().join("Dockerfile").is_file(),
            "the Dockerfile is always sent"
        );
        assert!(out.path().join("src/main.c").is_file());
        assert!(!out.path().join("a.log").exists());
        assert!(!out.path().join("src/tmp").exists());
    }

    #[test]
    fn hostile_context_stays_in_its_directory() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        let outside = d.path().join("outside");
        fs::create_dir_all(&ctx).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let out = outside.display().to_string();
        let data = barge_archive::raw_tar(&[
            ("up", tar::EntryType::Symlink, "..", 0o777),
            ("up/pwned", tar::EntryType::Regular, "x", 0o644),
            ("abs", tar::EntryType::Symlink, &out, 0o777),
            ("abs/pwned", tar::EntryType::Regular, "x", 0o644),
            ("../escape", tar::EntryType::Regular, "x", 0o644),
            ("h", tar::EntryType::Link, "../outside/f", 0o644),
            (
                "Dockerfile",
                tar::EntryType::Regular,
                "FROM scratch\n",
                0o644,
            ),
        ]);
        // Writes through `up` (which stays at the context's top) land in the context; `abs`
        // points at a directory the context lacks, so that entry fails and nothing is written.
        let r = extract(&data[..], &ctx);
        assert!(r.is_err(), "{r:?}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!d.path().join("escape").exists());
        assert!(ctx.join("pwned").is_file());
    }
}
