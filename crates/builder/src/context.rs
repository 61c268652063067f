//! Build contexts: unpacking the tar a client sends (`POST /build`), and making one from a
//! directory honouring `.dockerignore` (the CLI side, as docker's client does).

use std::io::{self, Read};
use std::path::Path;

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

pub use barge_archive::context::{ignore_for, write_tar};

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
