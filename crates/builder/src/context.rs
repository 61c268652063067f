//! Build contexts: unpacking the tar a client sends (`POST /build`), and making one from a
//! directory honouring `.dockerignore` (the CLI side, as docker's client does).

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::ignore::Ignore;

/// Unpacks a (possibly gzip/zstd-compressed) context tar into `dir`. Entries that would escape
/// `dir` are rejected by the tar crate's `unpack`.
pub fn extract(r: impl Read, dir: &Path) -> io::Result<()> {
    let (_, r) = barge_image::digest::decompressed(r)?;
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(true);
    a.unpack(dir)
}

/// Reads `<context>/.dockerignore` (or `<dockerfile>.dockerignore` next to the Dockerfile).
pub fn ignore_for(context: &Path, dockerfile: Option<&Path>) -> Ignore {
    if let Some(df) = dockerfile {
        let mut p = df.as_os_str().to_owned();
        p.push(".dockerignore");
        if let Ok(t) = fs::read_to_string(&p) {
            return Ignore::parse(&t);
        }
    }
    Ignore::parse(&fs::read_to_string(context.join(".dockerignore")).unwrap_or_default())
}

/// Writes `context` as a tar to `w`, leaving out what `ignore` excludes (the Dockerfile and
/// `.dockerignore` are always sent, as docker does). `dockerfile_rel` is the Dockerfile's path
/// relative to the context.
pub fn write_tar<W: Write>(
    context: &Path,
    ignore: &Ignore,
    dockerfile_rel: &str,
    w: W,
) -> io::Result<W> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    fn walk<W: Write>(
        b: &mut tar::Builder<W>,
        root: &Path,
        rel: &str,
        ignore: &Ignore,
        keep: &[&str],
    ) -> io::Result<()> {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        for e in crate::layer::sorted_entries(&dir)? {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = fs::symlink_metadata(e.path())?;
            let excluded = ignore.excluded(&r) && !keep.contains(&r.as_str());
            if !excluded {
                b.append_path_with_name(e.path(), &r)?;
            }
            if md.is_dir() && (!excluded || ignore.may_reinclude_below(&r)) {
                walk(b, root, &r, ignore, keep)?;
            }
        }
        Ok(())
    }
    walk(
        &mut b,
        context,
        "",
        ignore,
        &[dockerfile_rel.trim_start_matches("./"), ".dockerignore"],
    )?;
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
