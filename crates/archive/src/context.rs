//! Build contexts on the client side: a directory sent as a tar, honouring `.dockerignore`, as
//! docker's client does (`docker build`'s context upload).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::ignore::Ignore;

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
        for e in crate::sorted_entries(&dir)? {
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
    fn tar_honours_dockerignore() {
        let d = std::env::temp_dir().join(format!("barge-archive-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("src/tmp")).unwrap();
        fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(d.join(".dockerignore"), "Dockerfile\n*.log\nsrc/tmp\n").unwrap();
        fs::write(d.join("a.log"), "x").unwrap();
        fs::write(d.join("src/main.c"), "int main;").unwrap();
        fs::write(d.join("src/tmp/junk"), "j").unwrap();
        let ig = ignore_for(&d, None);
        let data = write_tar(&d, &ig, "Dockerfile", Vec::new()).unwrap();
        fs::remove_dir_all(&d).unwrap();
        let names: Vec<String> = tar::Archive::new(&data[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            names.contains(&"Dockerfile".to_string()),
            "the Dockerfile is always sent: {names:?}"
        );
        assert!(names.contains(&"src/main.c".to_string()), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n == "a.log" || n.starts_with("src/tmp")),
            "{names:?}"
        );
    }
}
