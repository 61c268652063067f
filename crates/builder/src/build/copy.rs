//! `COPY`/`ADD`: sources from the context, a stage or an image (globs), URLs (`ADD`, through
//! the fetcher), local archives extracted (`ADD`), with `--chown`/`--chmod`/`--link`; the
//! files become one layer.
//!
//! **Invariants:** sources never lead outside the build context; owners are resolved through
//! the image's own `/etc/passwd` and `/etc/group`.

use std::fs;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use barge_archive::inroot;
use barge_image::digest::HashingWriter;
use barge_image::HistoryEntry;
use sha2::{Digest, Sha256};

use crate::fetch;
use crate::layer::{self, LayerTar};
use crate::parser::{self, Instruction};

use super::*;

/// Mode, uid and gid of an existing directory.
type DirMeta = (u32, u32, u32);

/// A URL source of `ADD`, once downloaded.
struct Remote {
    url: String,
    file: Option<(tempfile::NamedTempFile, fetch::Fetched)>,
}

impl Builder {
    pub(super) fn copy(
        &self,
        ctx: &mut Ctx,
        sc: &mut StageCtx,
        st: StageState,
        ins: &Instruction,
    ) -> Result<StageState, BuildError> {
        let df = ctx.df;
        let esc = df.escape;
        let e = |m: String| step_err(df, ins, &m);
        let env = st.config.config.env.clone();
        let args = sc.args.clone();
        let lookup = move |n: &str| env_get(&env, n).or_else(|| args.get(n).cloned());
        let is_add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            let ok = match k.as_str() {
                "from" | "chown" | "chmod" | "link" => true,
                "checksum" | "keep-git-dir" => is_add,
                "parents" | "exclude" => {
                    return Err(e(format!(
                        "{} --{k} is not supported by barge's builder yet",
                        ins.keyword
                    )))
                }
                _ => false,
            };
            if !ok {
                return Err(e(format!("unknown flag: --{k}")));
            }
        }
        if ins.flag("keep-git-dir").is_some() {
            return Err(e(
                "ADD --keep-git-dir: ADD of a git repository is not supported by barge's builder"
                    .into(),
            ));
        }
        let link = ins.flag("link").is_some_and(|v| v != "false");
        let mut words = match &ins.json {
            Some(j) => j
                .iter()
                .map(|s| parser::expand(s, esc, &lookup))
                .collect::<Result<Vec<_>, _>>()
                .map_err(e)?,
            None => parser::expand_words(&ins.rest, esc, &lookup).map_err(e)?,
        };
        let heredoc_files: Vec<(String, String)> = ins
            .heredocs
            .iter()
            .map(|h| {
                let content = if h.expand {
                    parser::expand(&h.content, esc, &lookup).unwrap_or_else(|_| h.content.clone())
                } else {
                    h.content.clone()
                };
                (h.name.clone(), content)
            })
            .collect();
        if !heredoc_files.is_empty() {
            words.retain(|w| !w.starts_with("<<"));
        }
        if words.is_empty() || (words.len() < 2 && heredoc_files.is_empty()) {
            return Err(e(format!(
                "{} requires at least two arguments",
                ins.keyword
            )));
        }
        let dest_raw = words.pop().expect("dest");
        let workdir = st
            .config
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let dest_is_dir =
            dest_raw.ends_with('/') || words.len() + heredoc_files.len() > 1 || dest_raw == ".";
        let dest = if dest_raw.starts_with('/') {
            clean_path(&dest_raw)
        } else {
            clean_path(&format!("{workdir}/{dest_raw}"))
        };
        // Source root.
        let (_mount, src_root) = match ins.flag("from") {
            Some(f) => {
                let f = parser::expand(f, esc, &lookup).map_err(e)?;
                let sst = self.source_state(ctx, ins, &f)?;
                let view = self.view(&sst);
                let (m, p) = mount_view(&self.images.root().join("tmp"), &view.layers)?;
                (Some(m), p)
            }
            None => (None, ctx.context.to_path_buf()),
        };
        // Expand globs and check the sources; URLs are downloaded (ADD only).
        let mut sources: Vec<(PathBuf, String)> = Vec::new();
        let mut remotes: Vec<Remote> = Vec::new();
        let checksum = match ins.flag("checksum") {
            Some(c) => Some(
                fetch::Checksum::parse(&parser::expand(c, esc, &lookup).map_err(e)?)
                    .map_err(|x| e(x.to_string()))?,
            ),
            None => None,
        };
        for w in &words {
            if ins.flag("from").is_none() && fetch::is_git(w) {
                return Err(e(format!(
                    "{w}: {} of a git repository is not supported by barge's builder",
                    ins.keyword
                )));
            }
            if ins.flag("from").is_none() && fetch::is_url(w) {
                if !is_add {
                    return Err(e("source can't be a URL for COPY".into()));
                }
                remotes.push(Remote {
                    url: w.clone(),
                    file: None,
                });
                continue;
            }
            let rel = clean_path(w);
            if ins.flag("from").is_none() && escapes(w) {
                return Err(e(format!(
                    "forbidden path outside the build context: {w} ()"
                )));
            }
            let not_found = || {
                e(format!("{} failed: file not found in build context or excluded by .dockerignore: stat {w}: file does not exist", ins.keyword))
            };
            let matches = glob(&src_root, rel.trim_start_matches('/'));
            if matches.is_empty() {
                return Err(not_found());
            }
            for m in matches {
                // Inside the source root only: a link on the way (`link/file`, `link -> /etc`)
                // resolves in it, as dockerd's `FollowSymlinkInScope`; the last component is
                // copied as it is.
                let p = inroot::resolve_path(&src_root, &m, false).map_err(|x| e(x.to_string()))?;
                if fs::symlink_metadata(&p).is_err() {
                    return Err(not_found());
                }
                sources.push((p, m));
            }
        }
        if checksum.is_some() && (remotes.len() != 1 || !sources.is_empty()) {
            return Err(e(
                "--checksum requires exactly one source, an http(s) URL".into()
            ));
        }
        let dest_is_dir = dest_is_dir
            || sources.len() + remotes.len() > 1
            || (is_add
                && ins.flag("from").is_none()
                && sources.iter().any(|(p, _)| is_local_archive(p)));
        // Owner and mode.
        let view = self.view(&st);
        // An existing directory in the image is a directory destination.
        let dest_is_dir = dest_is_dir
            || view
                .lookup(&dest)
                .and_then(|p| fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_dir());
        let owner = match ins.flag("chown") {
            Some(c) => Some(
                resolve_owner(&view, &parser::expand(c, esc, &lookup).map_err(e)?).map_err(e)?,
            ),
            None => None,
        };
        let mode = match ins.flag("chmod") {
            Some(m) => {
                Some(u32::from_str_radix(m, 8).map_err(|_| e(format!("invalid chmod {m}")))?)
            }
            None => None,
        };
        // The directories leading to the destination: (path, existing mode/uid/gid).
        let top = if dest_is_dir {
            dest.clone()
        } else {
            Path::new(&dest)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| "/".into())
        };
        let mut ancestors: Vec<(String, Option<DirMeta>)> = Vec::new();
        let mut link_ok = true;
        let mut acc = String::new();
        for comp in top
            .trim_start_matches('/')
            .split('/')
            .filter(|c| !c.is_empty())
        {
            use std::os::unix::fs::MetadataExt;
            acc = format!("{acc}/{comp}");
            let md = view.lookup(&acc).and_then(|p| fs::symlink_metadata(p).ok());
            if md.as_ref().is_some_and(|m| !m.is_dir()) {
                link_ok = false; // a symlink on the way: the layer depends on it
            }
            ancestors.push((
                acc.clone(),
                md.map(|m| (m.mode() & 0o7777, m.uid(), m.gid())),
            ));
        }
        let link = link && link_ok;
        // Content digest for the cache key.
        let mut h = Sha256::new();
        for (p, rel) in &sources {
            h.update(rel.as_bytes());
            hash_tree(p, &mut h).map_err(io_err(format!("read {}", p.display())))?;
        }
        for (n, c) in &heredoc_files {
            h.update(n.as_bytes());
            h.update(c.as_bytes());
        }
        let tmpdir = self.images.root().join("tmp");
        fs::create_dir_all(&tmpdir).map_err(io_err("create temp dir"))?;
        for r in &mut remotes {
            h.update(r.url.as_bytes());
            match &checksum {
                // The checksum is the key: a cached step downloads nothing.
                Some(c) => h.update(format!("{}:{}", c.algorithm, c.hex).as_bytes()),
                None => {
                    let (mut f, info) = self
                        .download(&r.url, &tmpdir)
                        .map_err(|x| e(x.to_string()))?;
                    let d = fetch::digest_file(f.as_file_mut(), "sha256")
                        .map_err(|x| e(x.to_string()))?;
                    h.update(d.as_bytes());
                    h.update(format!("{:?}", info.last_modified).as_bytes());
                    h.update(
                        fetch::file_name(&r.url, info.content_disposition.as_deref()).as_bytes(),
                    );
                    r.file = Some((f, info));
                }
            }
        }
        let flags: Vec<String> = ins
            .flags
            .iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect();
        let text = format!("{} {} {:?} {}", ins.keyword, flags.join(" "), words, dest);
        let content = barge_image::digest::hex(&h.finalize());
        let epoch = ctx.opts.source_date_epoch;
        let created_by = format!(
            "/bin/sh -c #(nop) {} {} in {dest} ",
            ins.keyword,
            words.join(" ")
        );
        let extract = is_add && ins.flag("from").is_none();
        let link_text = format!("{text} dir={dest_is_dir} owner={owner:?} parents={ancestors:?}");
        // Writes the layer's entries. Without --link only missing parent directories are
        // written; with it every parent is (existing ones with their owner and mode, which are
        // part of the key), so the layer does not depend on what the parent holds.
        let fill = move |link: bool,
                         remotes: &[Remote],
                         t: &mut LayerTar<HashingWriter<BufWriter<fs::File>>>|
              -> std::io::Result<()> {
            let now = epoch.unwrap_or_else(|| chrono::Utc::now().timestamp());
            for (dir, existing) in &ancestors {
                match existing {
                    None => t.add_dir(dir, if *dir == top { owner } else { None }, now)?,
                    Some((m, u, g)) if link => t.add_dir_mode(dir, *m, (*u, *g), now)?,
                    Some(_) => {}
                }
            }
            for (n, content) in &heredoc_files {
                let target = if dest_is_dir {
                    format!("{dest}/{n}")
                } else {
                    dest.clone()
                };
                t.add_bytes(
                    &target,
                    content.as_bytes(),
                    owner,
                    mode.unwrap_or(0o644),
                    now,
                )?;
            }
            for (p, rel) in &sources {
                let md = fs::symlink_metadata(p)?;
                if md.is_dir() {
                    add_tree(t, p, &dest, owner, mode)?;
                } else if extract && is_local_archive(p) {
                    // ADD extracts local tar archives (plain, gzip, zstd) into the destination.
                    extract_into(t, p, &dest)?;
                } else {
                    let base = Path::new(rel)
                        .file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = if dest_is_dir {
                        format!("{dest}/{base}")
                    } else {
                        dest.clone()
                    };
                    t.add_path(p, &target, Some(owner.unwrap_or((0, 0))), mode)?;
                }
            }
            for r in remotes {
                let Some((file, info)) = &r.file else {
                    continue;
                };
                let name = fetch::file_name(&r.url, info.content_disposition.as_deref());
                let target = if dest_is_dir {
                    format!("{dest}/{name}")
                } else {
                    dest.clone()
                };
                let mtime = info
                    .last_modified
                    .as_deref()
                    .and_then(fetch::http_time)
                    .unwrap_or(now);
                file.as_file().set_modified(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64),
                )?;
                t.add_path(
                    file.path(),
                    &target,
                    Some(owner.unwrap_or((0, 0))),
                    Some(mode.unwrap_or(0o600)),
                )?;
            }
            Ok(())
        };
        let download_all = |this: &Builder, remotes: &mut Vec<Remote>| -> Result<(), BuildError> {
            for r in remotes.iter_mut().filter(|r| r.file.is_none()) {
                let (mut f, info) = this
                    .download(&r.url, &tmpdir)
                    .map_err(|x| e(x.to_string()))?;
                if let Some(c) = &checksum {
                    c.verify(f.as_file_mut()).map_err(|x| e(x.to_string()))?;
                }
                r.file = Some((f, info));
            }
            Ok(())
        };
        if link {
            // The key leaves the parent chain out.
            let key = link_key(&link_text, &content);
            return self.cached_link(ctx, &key, st, move |this| {
                let mut remotes = remotes;
                download_all(this, &mut remotes)?;
                let created = now_or(epoch);
                let lf = layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                    fill(true, &remotes, t)
                })
                .map_err(io_err("write layer"))?;
                Ok((
                    lf,
                    HistoryEntry {
                        created: Some(created),
                        created_by: Some(created_by),
                        ..Default::default()
                    },
                ))
            });
        }
        let key = cache_key(&st, &text, &content);
        self.cached(ctx, &key, st, move |this, mut st, _out| {
            let mut remotes = remotes;
            download_all(this, &mut remotes)?;
            let created = now_or(epoch);
            let mut lf = layer::make_layer(&this.images.root().join("tmp"), epoch, |t| {
                fill(false, &remotes, t)
            })
            .map_err(io_err("write layer"))?;
            this.add_layer(&mut st, &mut lf, created_by, created)?;
            Ok(st)
        })
    }

    /// Downloads `url` into a temp file under `tmp` through the configured fetcher.
    fn download(
        &self,
        url: &str,
        tmp: &Path,
    ) -> Result<(tempfile::NamedTempFile, fetch::Fetched), fetch::FetchError> {
        let f = self.fetcher.as_ref().ok_or(fetch::FetchError::NoFetcher)?;
        let mut t = tempfile::NamedTempFile::new_in(tmp)?;
        let info =
            f.fetch(url, t.as_file_mut())
                .map_err(|message| fetch::FetchError::Download {
                    url: url.to_string(),
                    message,
                })?;
        Ok((t, info))
    }
}

/// Hashes a file tree's names, modes and contents.
pub(super) fn hash_tree(p: &Path, h: &mut Sha256) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(p)?;
    h.update(md.mode().to_le_bytes());
    if md.is_dir() {
        for e in layer::sorted_entries(p)? {
            h.update(e.file_name().as_encoded_bytes());
            h.update(b"/");
            hash_tree(&e.path(), h)?;
        }
    } else if md.file_type().is_symlink() {
        h.update(fs::read_link(p)?.as_os_str().as_encoded_bytes());
    } else if md.is_file() {
        let mut f = fs::File::open(p)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(())
}

/// Whether `p` itself (not a symlink's target, which may lie outside the context) is a regular
/// file holding a tar archive.
fn is_local_archive(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) && is_archive(p)
}

/// Whether `p` is a (possibly compressed) tar archive: its first header's checksum is valid.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = fs::File::open(p) else {
        return false;
    };
    let Ok((_, mut r)) = barge_image::digest::decompressed(f) else {
        return false;
    };
    let mut buf = [0u8; 512];
    if r.read_exact(&mut buf).is_err() {
        return false;
    }
    let h = tar::Header::from_byte_slice(&buf);
    let Ok(want) = h.cksum() else { return false };
    let sum: u32 = buf
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                *b as u32
            }
        })
        .sum();
    sum == want && buf.iter().any(|b| *b != 0)
}

/// Copies the entries of archive `p` into the layer under `dest`.
fn extract_into<W: std::io::Write>(
    t: &mut LayerTar<W>,
    p: &Path,
    dest: &str,
) -> std::io::Result<()> {
    let (_, r) = barge_image::digest::decompressed(fs::File::open(p)?)?;
    let mut a = tar::Archive::new(r);
    // An entry's name under `dest`; `None` for one leaving the archive (skipped).
    let under = |n: &Path| -> Option<String> {
        let rel = barge_archive::inroot::clean_entry_name(n.as_os_str().as_encoded_bytes())?;
        let c = clean_path(&format!("{dest}/{}", rel.display()));
        Some(c.trim_start_matches('/').to_string())
    };
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let Some(name) = under(&path) else { continue };
        if name.is_empty() {
            continue;
        }
        let mut h = e.header().clone();
        if h.uid().is_err() {
            h.set_uid(0);
        }
        if h.gid().is_err() {
            h.set_gid(0);
        }
        if h.mtime().is_err() {
            h.set_mtime(0);
        }
        if let Some(ep) = t.epoch {
            if h.mtime().map(|m| m as i64 > ep).unwrap_or(false) {
                h.set_mtime(ep.max(0) as u64);
            }
        }
        match h.entry_type() {
            tar::EntryType::Link => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let Some(target) = under(&target) else {
                    continue;
                };
                t.tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                t.tar.append_link(&mut h, &name, target)?;
            }
            tar::EntryType::Directory => {
                t.tar
                    .append_data(&mut h, format!("{name}/"), std::io::empty())?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => {
                t.tar.append_data(&mut h, &name, &mut e)?;
            }
        }
    }
    Ok(())
}

/// Adds the contents of directory `dir` under `dest`.
fn add_tree<W: std::io::Write>(
    t: &mut LayerTar<W>,
    dir: &Path,
    dest: &str,
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
) -> std::io::Result<()> {
    for e in layer::sorted_entries(dir)? {
        let name = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            e.file_name().to_string_lossy()
        );
        let p = e.path();
        t.add_path(&p, &name, Some(owner.unwrap_or((0, 0))), mode)?;
        if fs::symlink_metadata(&p)?.is_dir() {
            add_tree(t, &p, &name, owner, mode)?;
        }
    }
    Ok(())
}

/// Matches a glob pattern (relative, `/`-separated) against `root`; returns relative paths.
fn glob(root: &Path, pat: &str) -> Vec<String> {
    let comps: Vec<&str> = pat.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = vec![String::new()];
    for c in comps {
        let mut next = Vec::new();
        let wild = c.contains(['*', '?', '[']);
        for base in &cur {
            let dir = if base.is_empty() {
                root.to_path_buf()
            } else {
                root.join(base)
            };
            if wild {
                if let Ok(entries) = layer::sorted_entries(&dir) {
                    for e in entries {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if crate::ignore::match_component(c, &n) {
                            next.push(if base.is_empty() {
                                n
                            } else {
                                format!("{base}/{n}")
                            });
                        }
                    }
                }
            } else {
                let rel = if base.is_empty() {
                    c.to_string()
                } else {
                    format!("{base}/{c}")
                };
                if fs::symlink_metadata(root.join(&rel)).is_ok() {
                    next.push(rel);
                }
            }
        }
        cur = next;
    }
    if cur.len() == 1 && cur[0].is_empty() && !root.exists() {
        return Vec::new();
    }
    cur
}

/// Resolves `user[:group]` (names through the image's /etc/passwd and /etc/group).
fn resolve_owner(view: &RootView, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = view.read(file)?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                Some((
                    f[2].parse().ok()?,
                    f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                ))
            } else {
                None
            }
        })
    };
    let (uid, pgid) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let (uid, gid) = lookup("/etc/passwd", u).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            (uid, Some(gid))
        }
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                lookup("/etc/group", g)
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
                    .0
            }
        },
        None => pgid.unwrap_or(uid),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("src/sub")).unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        fs::write(d.path().join("b.txt"), "b").unwrap();
        fs::write(d.path().join("src/sub/c.rs"), "c").unwrap();
        assert_eq!(glob(d.path(), "*.txt"), ["a.txt", "b.txt"]);
        assert_eq!(glob(d.path(), "src/*/c.rs"), ["src/sub/c.rs"]);
        assert_eq!(glob(d.path(), "missing"), Vec::<String>::new());
        assert_eq!(glob(d.path(), ""), [""]);
    }

    #[test]
    fn owners() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1234:1235::/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let v = RootView {
            layers: vec![d.path().to_path_buf()],
        };
        assert_eq!(resolve_owner(&v, "1:2"), Ok((1, 2)));
        assert_eq!(resolve_owner(&v, "7"), Ok((7, 7)));
        assert_eq!(resolve_owner(&v, "app"), Ok((1234, 1235)));
        assert_eq!(resolve_owner(&v, "app:staff"), Ok((1234, 50)));
        assert!(resolve_owner(&v, "nobody").is_err());
    }
}
