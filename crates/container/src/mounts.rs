//! Container mounts: Docker's `-v` bind/volume specs, `HostConfig.Mounts` validation, `--tmpfs`
//! options, the resolved mount points of a container, their ordering in the OCI spec, and
//! Docker's copy-up of image content into a new empty volume.
//!
//! Rules and error texts follow moby's `volume/mounts` Linux parser
//! (<https://github.com/moby/moby/tree/master/volume/mounts>) and the Engine API's `Mount` /
//! `MountPoint` objects
//! (<https://docs.docker.com/reference/api/engine/version/v1.47/#tag/Container/operation/ContainerCreate>).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Kind of a mount (Docker's `Mount.Type`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    /// Docker's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }

    /// Parses Docker's spelling.
    pub fn parse(s: &str) -> Option<MountType> {
        match s {
            "bind" => Some(MountType::Bind),
            "volume" => Some(MountType::Volume),
            "tmpfs" => Some(MountType::Tmpfs),
            _ => None,
        }
    }
}

/// `Mount.BindOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BindOptions {
    /// `private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`; empty = `rprivate`.
    pub propagation: String,
    pub non_recursive: bool,
    /// Create the source directory if it is missing (what `-v` does).
    pub create_mountpoint: bool,
}

/// `Mount.VolumeOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VolumeOptions {
    /// Do not copy the image's content into a new empty volume.
    pub no_copy: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver name; empty = `local`.
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
    /// Mount this relative path of the volume instead of its root (must exist).
    pub subpath: String,
}

/// `Mount.TmpfsOptions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TmpfsOptions {
    /// Bytes; 0 = the kernel's default (half of RAM).
    pub size_bytes: i64,
    /// Permission bits of the tmpfs root; 0 = 1777.
    pub mode: u32,
}

/// A requested mount (Docker's `Mount`, an entry of `HostConfig.Mounts` / `--mount`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountSpec {
    pub kind: MountType,
    /// Host path (bind), volume name (volume; empty = anonymous), empty (tmpfs).
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

/// A resolved mount of a container (Docker's `MountPoint`, plus what start needs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountPoint {
    pub kind: MountType,
    /// Volume name (volumes only).
    pub name: String,
    /// Host path: the bind source, or the volume's mountpoint; empty for tmpfs.
    pub source: PathBuf,
    pub destination: String,
    /// `local` for volumes, empty otherwise.
    pub driver: String,
    /// The mode string the user gave (`ro`, `z`, `rw,rshared`); empty for `--mount`.
    pub mode: String,
    pub rw: bool,
    /// Binds: `rprivate` unless asked otherwise; empty for volumes and tmpfs.
    pub propagation: String,
    /// Volume sub-path mounted instead of the volume's root.
    pub subpath: String,
    /// Copy the image's content at the destination into the volume if it is empty.
    pub copy_data: bool,
    /// Bind with `bind` instead of `rbind`.
    pub non_recursive: bool,
    /// Create a missing bind source (`-v`) instead of failing (`--mount`).
    pub create_source: bool,
    /// tmpfs mount data (`size=65536k,mode=1777`).
    pub tmpfs_data: String,
    /// From `HostConfig.Tmpfs` (`--tmpfs`): in the spec but not in inspect's `Mounts`.
    pub from_tmpfs_flag: bool,
    /// This container created the (anonymous) volume.
    pub anonymous: bool,
    /// How to create the volume if it does not exist (only between resolution and create).
    #[serde(skip)]
    pub(crate) volume_options: Option<VolumeOptions>,
}

/// An invalid mount request; the message is dockerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

fn mount_config_err(kind: MountType, msg: impl std::fmt::Display) -> MountError {
    MountError(format!(
        "invalid mount config for type \"{}\": {msg}",
        kind.as_str()
    ))
}

const PROPAGATION: [&str; 6] = [
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Docker's `ValidMountMode`: comma-separated, at most one of each group (rw/ro, z/Z,
/// propagation, nocopy, consistency).
pub fn valid_mount_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for m in mode.split(',') {
        let group = match m {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            p if PROPAGATION.contains(&p) => 2,
            _ => return false,
        };
        counts[group] += 1;
        if counts[group] > 1 {
            return false;
        }
    }
    true
}

fn mode_has(mode: &str, what: &str) -> bool {
    mode.split(',').any(|m| m == what)
}

fn mode_propagation(mode: &str) -> Option<String> {
    mode.split(',')
        .find(|m| PROPAGATION.contains(m))
        .map(str::to_string)
}

/// Parses a `-v`/`HostConfig.Binds` entry (`SRC:DEST[:MODE]`, or `DEST` for an anonymous
/// volume). An absolute `SRC` is a bind mount (its directory created if missing), anything
/// else a volume name. Returns the mount and the mode string as given.
pub fn parse_bind(raw: &str) -> Result<(MountSpec, String), MountError> {
    let invalid = || MountError(format!("invalid volume specification: '{raw}'"));
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => {
            if valid_mount_mode(t) {
                return Err(MountError(format!("invalid mode: {t}")));
            }
            (*s, *t, "")
        }
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid()),
    };
    if !valid_mount_mode(mode) {
        return Err(MountError(format!("invalid mode: {mode}")));
    }
    let kind = if source.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let mut spec = MountSpec {
        kind,
        source: source.to_string(),
        target: target.to_string(),
        read_only: mode_has(mode, "ro"),
        ..Default::default()
    };
    match kind {
        MountType::Bind => {
            if mode_has(mode, "nocopy") {
                return Err(MountError(format!("invalid mode: {mode}")));
            }
            spec.bind_options = Some(BindOptions {
                propagation: mode_propagation(mode).unwrap_or_default(),
                create_mountpoint: true,
                ..Default::default()
            });
        }
        _ => {
            if mode_has(mode, "nocopy") {
                spec.volume_options = Some(VolumeOptions {
                    no_copy: true,
                    ..Default::default()
                });
            }
            if mode_propagation(mode).is_some() {
                return Err(MountError(format!("invalid mode: {mode}")));
            }
        }
    }
    validate_mount(&spec)?;
    Ok((spec, mode.to_string()))
}

pub(crate) fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn validate_target(kind: MountType, target: &str) -> Result<(), MountError> {
    if target.is_empty() {
        return Err(mount_config_err(kind, "field Target must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(mount_config_err(
            kind,
            format!("invalid mount path: '{target}' mount path must be absolute"),
        ));
    }
    if clean_path(target) == "/" {
        return Err(MountError(
            "invalid specification: destination can't be '/'".into(),
        ));
    }
    Ok(())
}

/// Docker's `validateMountConfig` (without the host checks done at create).
pub fn validate_mount(m: &MountSpec) -> Result<(), MountError> {
    let k = m.kind;
    validate_target(k, &m.target)?;
    match k {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(mount_config_err(k, "field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(mount_config_err(
                    k,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        m.source
                    ),
                ));
            }
            if m.volume_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field VolumeOptions must not be specified",
                ));
            }
            if m.tmpfs_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field TmpfsOptions must not be specified",
                ));
            }
            if let Some(b) = &m.bind_options {
                if !b.propagation.is_empty() && !PROPAGATION.contains(&b.propagation.as_str()) {
                    return Err(mount_config_err(
                        k,
                        format!("invalid propagation mode: {}", b.propagation),
                    ));
                }
            }
        }
        MountType::Volume => {
            if m.bind_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field BindOptions must not be specified",
                ));
            }
            if m.tmpfs_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field TmpfsOptions must not be specified",
                ));
            }
            if !m.source.is_empty() {
                crate::volumes::validate_name(&m.source)
                    .map_err(|e| mount_config_err(k, e.to_string()))?;
            }
            if let Some(v) = &m.volume_options {
                if !v.subpath.is_empty() {
                    if m.source.is_empty() {
                        return Err(mount_config_err(
                            k,
                            "field VolumeOptions.Subpath must not be specified for anonymous volumes",
                        ));
                    }
                    let sp = Path::new(&v.subpath);
                    if sp.is_absolute()
                        || sp.components().any(|c| matches!(c, Component::ParentDir))
                    {
                        return Err(mount_config_err(
                            k,
                            "subpath must be a relative path within the volume",
                        ));
                    }
                }
                if !v.driver.is_empty() && v.driver != "local" {
                    return Err(mount_config_err(
                        k,
                        format!("volume driver \"{}\" not found", v.driver),
                    ));
                }
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(mount_config_err(k, "field Source must not be specified"));
            }
            if m.bind_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field BindOptions must not be specified",
                ));
            }
            if m.volume_options.is_some() {
                return Err(mount_config_err(
                    k,
                    "field VolumeOptions must not be specified",
                ));
            }
            if let Some(t) = &m.tmpfs_options {
                if t.size_bytes < 0 {
                    return Err(mount_config_err(
                        k,
                        format!("invalid tmpfs size: {}", t.size_bytes),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Tmpfs mount data from `TmpfsOptions` (Docker's `ConvertTmpfsOptions`: sizes in the largest
/// whole unit, mode in octal).
pub fn tmpfs_data(opts: Option<&TmpfsOptions>) -> String {
    let mut out = Vec::new();
    if let Some(o) = opts {
        if o.size_bytes > 0 {
            let s = o.size_bytes;
            let (n, suffix) = if s % (1 << 30) == 0 {
                (s >> 30, "g")
            } else if s % (1 << 20) == 0 {
                (s >> 20, "m")
            } else if s % (1 << 10) == 0 {
                (s >> 10, "k")
            } else {
                (s, "")
            };
            out.push(format!("size={n}{suffix}"));
        }
        if o.mode != 0 {
            out.push(format!("mode={:o}", o.mode));
        }
    }
    out.join(",")
}

/// Validates one `HostConfig.Tmpfs` entry (`--tmpfs DEST[:OPTS]`); returns the mount data
/// without flags such as `ro`/`noexec` (they stay in the options list of the spec).
pub fn validate_tmpfs(dest: &str, opts: &str) -> Result<(), MountError> {
    validate_target(MountType::Tmpfs, dest)?;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let (k, v) = o.split_once('=').unwrap_or((o, ""));
        let ok = match k {
            "size" => {
                let digits = v.trim_end_matches(['k', 'm', 'g', 'K', 'M', 'G', '%']);
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
            }
            "mode" => !v.is_empty() && u32::from_str_radix(v, 8).is_ok(),
            "nr_inodes" | "nr_blocks" | "uid" | "gid" => {
                !v.is_empty() && v.trim_end_matches(['k', 'm', 'g']).parse::<u64>().is_ok()
            }
            "ro" | "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev" | "atime"
            | "noatime" | "diratime" | "nodiratime" | "relatime" | "norelatime" | "strictatime"
            | "nostrictatime" | "sync" | "async" | "dirsync" | "tmpcopyup" => v.is_empty(),
            p if PROPAGATION.contains(&p) => v.is_empty(),
            _ => false,
        };
        if !ok {
            return Err(MountError(format!(
                "invalid tmpfs option [\"{o}\"] for {dest}"
            )));
        }
    }
    Ok(())
}

/// One mount as it goes into the OCI spec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpecMount {
    pub destination: String,
    /// `bind` or `tmpfs`.
    pub kind: &'static str,
    pub source: PathBuf,
    pub options: Vec<String>,
}

/// The OCI mount of a resolved mount point whose host source is `source`.
pub(crate) fn spec_mount(m: &MountPoint, source: &Path) -> SpecMount {
    match m.kind {
        MountType::Tmpfs => {
            // Docker: noexec,nosuid,nodev + the default propagation, then the user's options
            // (later ones win, e.g. `exec`).
            let mut opts: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            for o in m.tmpfs_data.split(',').filter(|o| !o.is_empty()) {
                let neg = |a: &str, b: &str, opts: &mut Vec<String>| {
                    if o == a {
                        opts.retain(|x| x != b);
                    }
                };
                neg("exec", "noexec", &mut opts);
                neg("suid", "nosuid", &mut opts);
                neg("dev", "nodev", &mut opts);
                if PROPAGATION.contains(&o) {
                    opts.retain(|x| !PROPAGATION.contains(&x.as_str()));
                }
                if !["exec", "suid", "dev"].contains(&o) {
                    opts.retain(|x| x != o);
                    opts.push(o.to_string());
                }
            }
            if !m.rw && !opts.iter().any(|o| o == "ro") {
                opts.push("ro".into());
            }
            SpecMount {
                destination: m.destination.clone(),
                kind: "tmpfs",
                source: PathBuf::from("tmpfs"),
                options: opts,
            }
        }
        _ => {
            let mut opts = vec![if m.non_recursive { "bind" } else { "rbind" }.to_string()];
            if !m.rw {
                opts.push("ro".into());
            }
            if !m.propagation.is_empty() {
                opts.push(m.propagation.clone());
            }
            SpecMount {
                destination: m.destination.clone(),
                kind: "bind",
                source: source.to_path_buf(),
                options: opts,
            }
        }
    }
}

/// Number of path components: Docker mounts parents before children by this count.
fn depth(dest: &str) -> usize {
    clean_path(dest).matches('/').count()
}

/// Sorts mounts parent-before-child (Docker's `sortMounts`, by path depth; stable).
pub(crate) fn sort_mounts(mounts: &mut [SpecMount]) {
    mounts.sort_by_key(|m| depth(&m.destination));
}

/// Resolves `path` (absolute, in the container) inside `root`, following symlinks as the
/// container would see them, never leaving `root` ([`barge_archive::inroot::resolve_path`]).
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    barge_archive::inroot::resolve_path(root, path, true).map_err(|e| e.to_string())
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

/// Docker's copy-up: if `volume` is empty and `image_dir` is a non-empty directory, copies its
/// content (modes, ownership, symlinks, hard links, special files, times) into `volume` and
/// gives `volume` the directory's owner and mode. Returns whether anything was copied.
pub(crate) fn copy_up(image_dir: &Path, volume: &Path) -> std::io::Result<bool> {
    let Ok(meta) = std::fs::metadata(image_dir) else {
        return Ok(false);
    };
    if !meta.is_dir() || !dir_is_empty(volume) {
        return Ok(false);
    }
    let mut links = HashMap::new();
    copy_tree(image_dir, volume, &mut links)?;
    std::os::unix::fs::chown(volume, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(
        volume,
        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
    )?;
    Ok(true)
}

fn copy_times(src: &std::fs::Metadata, dst: &Path) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let at = TimeSpec::new(src.atime(), src.atime_nsec());
    let mt = TimeSpec::new(src.mtime(), src.mtime_nsec());
    let _ = utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    );
}

fn copy_tree(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = from.symlink_metadata()?;
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to, links)?;
            std::os::unix::fs::chown(&to, Some(meta.uid()), Some(meta.gid()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
            copy_times(&meta, &to);
            continue;
        }
        if meta.nlink() > 1 && !ft.is_symlink() {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                std::fs::hard_link(first, &to)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            copy_times(&meta, &to);
            continue;
        }
        if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // FIFOs, sockets and device nodes.
            let kind = nix::sys::stat::SFlag::from_bits_truncate(meta.mode() & libc::S_IFMT);
            nix::sys::stat::mknod(
                &to,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(mode),
                meta.rdev(),
            )
            .map_err(std::io::Error::from)?;
        }
        std::os::unix::fs::chown(&to, Some(meta.uid()), Some(meta.gid()))?;
        // After chown, which clears setuid/setgid bits.
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
        copy_times(&meta, &to);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let (m, mode) = parse_bind("/host/dir:/ctr:ro,rshared").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("/host/dir", "/ctr")
        );
        assert!(m.read_only);
        assert_eq!(mode, "ro,rshared");
        let b = m.bind_options.unwrap();
        assert_eq!(b.propagation, "rshared");
        assert!(b.create_mountpoint);

        let (m, mode) = parse_bind("data:/var/lib/data").unwrap();
        assert_eq!(m.kind, MountType::Volume);
        assert_eq!(m.source, "data");
        assert!(!m.read_only);
        assert_eq!(mode, "");
        let (m, _) = parse_bind("data:/d:nocopy").unwrap();
        assert!(m.volume_options.unwrap().no_copy);

        let (m, _) = parse_bind("/just/a/path").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountType::Volume, ""));
        let (m, _) = parse_bind("/h:/c:Z").unwrap();
        assert!(!m.read_only);

        let err = |s: &str| parse_bind(s).unwrap_err().0;
        assert_eq!(err("/foo:rw"), "invalid mode: rw");
        assert_eq!(err("/a:/b:xx"), "invalid mode: xx");
        assert_eq!(err("/a:/b:ro,rw"), "invalid mode: ro,rw");
        assert_eq!(err("/a::/b"), "invalid volume specification: '/a::/b'");
        assert_eq!(err("a:b:c:d"), "invalid volume specification: 'a:b:c:d'");
        assert_eq!(
            err("data:rel"),
            "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err("/h:/"),
            "invalid specification: destination can't be '/'"
        );
        assert!(err("bad/name:/x").contains("includes invalid characters"));
        assert_eq!(err("vol:/x:rshared"), "invalid mode: rshared");
    }

    #[test]
    fn mount_specs_validate_like_docker() {
        let base = |kind| MountSpec {
            kind,
            target: "/t".into(),
            ..Default::default()
        };
        let mut m = base(MountType::Bind);
        assert_eq!(
            validate_mount(&m).unwrap_err().0,
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        m.source = "/src".into();
        assert!(validate_mount(&m).is_ok());
        m.volume_options = Some(VolumeOptions::default());
        assert!(validate_mount(&m)
            .unwrap_err()
            .0
            .contains("field VolumeOptions must not be specified"));
        let mut t = base(MountType::Tmpfs);
        t.source = "x".into();
        assert!(validate_mount(&t)
            .unwrap_err()
            .0
            .contains("field Source must not be specified"));
        let mut v = base(MountType::Volume);
        v.volume_options = Some(VolumeOptions {
            subpath: "../x".into(),
            ..Default::default()
        });
        v.source = "vol".into();
        assert!(validate_mount(&v).is_err());
        v.volume_options.as_mut().unwrap().subpath = "sub/dir".into();
        assert!(validate_mount(&v).is_ok());
        v.source.clear();
        assert!(validate_mount(&v).is_err());
    }

    #[test]
    fn tmpfs_options() {
        assert!(validate_tmpfs("/run", "size=64m,mode=1777").is_ok());
        assert!(validate_tmpfs("/run", "").is_ok());
        assert!(validate_tmpfs("/run", "exec,ro").is_ok());
        assert!(validate_tmpfs("run", "").is_err());
        assert_eq!(
            validate_tmpfs("/run", "size=lots").unwrap_err().0,
            "invalid tmpfs option [\"size=lots\"] for /run"
        );
        assert!(validate_tmpfs("/run", "mode=999").is_err());
        assert_eq!(
            tmpfs_data(Some(&TmpfsOptions {
                size_bytes: 64 << 20,
                mode: 0o1770
            })),
            "size=64m,mode=1770"
        );
        assert_eq!(
            tmpfs_data(Some(&TmpfsOptions {
                size_bytes: 1000,
                mode: 0
            })),
            "size=1000"
        );
        let m = MountPoint {
            kind: MountType::Tmpfs,
            destination: "/x".into(),
            rw: true,
            tmpfs_data: "size=1m,exec".into(),
            ..Default::default()
        };
        let s = spec_mount(&m, Path::new(""));
        assert_eq!(s.options, vec!["nosuid", "nodev", "rprivate", "size=1m"]);
    }

    #[test]
    fn spec_mounts_sort_parent_first() {
        let mk = |d: &str| SpecMount {
            destination: d.into(),
            kind: "bind",
            source: "/s".into(),
            options: vec![],
        };
        let mut v = vec![
            mk("/a/b/c"),
            mk("/etc/hosts"),
            mk("/a"),
            mk("/z/"),
            mk("/a/b"),
        ];
        sort_mounts(&mut v);
        let d: Vec<&str> = v.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(d, vec!["/a", "/z/", "/etc/hosts", "/a/b", "/a/b/c"]);
        let b = spec_mount(
            &MountPoint {
                kind: MountType::Bind,
                destination: "/c".into(),
                rw: false,
                propagation: "rprivate".into(),
                ..Default::default()
            },
            Path::new("/h"),
        );
        assert_eq!(b.options, vec!["rbind", "ro", "rprivate"]);
    }

    #[test]
    fn resolves_symlinks_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", r.join("real/up")).unwrap();
        assert_eq!(resolve_in_root(r, "/abs/dir").unwrap(), r.join("real/dir"));
        assert_eq!(resolve_in_root(r, "/real/up/real").unwrap(), r.join("real"));
        assert_eq!(resolve_in_root(r, "/../../etc").unwrap(), r.join("etc"));
    }

    #[test]
    fn copy_up_copies_once_into_empty_volumes() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        let vol = t.path().join("vol");
        std::fs::create_dir_all(img.join("sub")).unwrap();
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(img.join("sub/f"), "data").unwrap();
        std::fs::hard_link(img.join("sub/f"), img.join("hl")).unwrap();
        std::os::unix::fs::symlink("sub/f", img.join("link")).unwrap();
        std::fs::set_permissions(img.join("sub/f"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(copy_up(&img, &vol).unwrap());
        assert_eq!(std::fs::read_to_string(vol.join("link")).unwrap(), "data");
        let m = std::fs::metadata(vol.join("sub/f")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640);
        assert_eq!(m.nlink(), 2);
        assert_eq!(std::fs::metadata(&vol).unwrap().mode() & 0o777, 0o750);
        // Not empty any more: a second copy is a no-op.
        std::fs::write(img.join("new"), "x").unwrap();
        assert!(!copy_up(&img, &vol).unwrap());
        assert!(!vol.join("new").exists());
        assert!(!copy_up(&t.path().join("missing"), &vol).unwrap());
    }
}
