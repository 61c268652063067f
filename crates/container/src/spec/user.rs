//! The process user: Docker's `--user` resolved against the container's `/etc/passwd` and
//! `/etc/group` (moby/sys/user `GetExecUser`), and `--group-add` on top.
//!
//! **Invariants:** errors are dockerd's messages as plain strings (the caller wraps them);
//! the parsers work on file contents and are unit-tested below.

use super::*;

/// A resolved process user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves Docker's `--user` (`name`, `uid`, `name:group`, `uid:gid`, empty = root) against the
/// container's `/etc/passwd` and `/etc/group` (as moby/sys/user `GetExecUser` does).
pub(crate) fn resolve_user(rootfs: &Path, user: &str) -> Result<ExecUser, String> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    resolve_user_from(&passwd, &group, user)
}

pub(crate) fn resolve_user_from(passwd: &str, group: &str, user: &str) -> Result<ExecUser, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let numeric_uid = user_part.parse::<u32>().ok();
    let found = entries.iter().find(|f| match numeric_uid {
        Some(n) => f[2].parse::<u32>().ok() == Some(n),
        None => f[0] == user_part,
    });
    let mut out = ExecUser {
        home: "/".into(),
        ..Default::default()
    };
    let mut user_name = None;
    match (found, numeric_uid) {
        (Some(f), _) => {
            out.uid = f[2]
                .parse()
                .map_err(|_| format!("invalid uid in passwd entry for {}", f[0]))?;
            out.gid = f[3].parse().unwrap_or(0);
            if let Some(h) = f.get(5) {
                if !h.is_empty() {
                    out.home = h.to_string();
                }
            }
            user_name = Some(f[0].to_string());
        }
        (None, Some(n)) => out.uid = n,
        (None, None) => {
            return Err(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            ))
        }
    }
    let groups: Vec<Vec<&str>> = group
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = group_part {
        if let Ok(n) = g.parse::<u32>() {
            out.gid = n;
        } else {
            let f = groups.iter().find(|f| f[0] == g).ok_or_else(|| {
                format!("unable to find group {g}: no matching entries in group file")
            })?;
            out.gid = f[2].parse().unwrap_or(0);
        }
    } else if let Some(name) = &user_name {
        for f in &groups {
            let members = f.get(3).copied().unwrap_or("");
            if members.split(',').any(|m| m.trim() == name) {
                if let Ok(gid) = f[2].parse::<u32>() {
                    if gid != out.gid && !out.additional_gids.contains(&gid) {
                        out.additional_gids.push(gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `HostConfig.GroupAdd` as group IDs: numbers as they are, names from the container's
/// `/etc/group` (dockerd's `Unable to find group NAME` otherwise), after `user`'s own.
pub(crate) fn add_groups(
    rootfs: &Path,
    user: &mut ExecUser,
    groups: &[String],
) -> Result<(), String> {
    if groups.is_empty() {
        return Ok(());
    }
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    for g in groups {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("Unable to find group {g}"))?,
        };
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_name_and_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let mut u = ExecUser::default();
        add_groups(
            dir.path(),
            &mut u,
            &["staff".into(), "7".into(), "50".into()],
        )
        .unwrap();
        assert_eq!(u.additional_gids, vec![50, 7]);
        assert_eq!(
            add_groups(dir.path(), &mut u, &["nope".into()]).unwrap_err(),
            "Unable to find group nope"
        );
    }

    #[test]
    fn user_resolution() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nwww:x:33:33::/var/www:/bin/sh\n";
        let group = "root:x:0:\nwww-data:x:33:\nstaff:x:50:www,other\naudio:x:29:www\n";
        let u = resolve_user_from(passwd, group, "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        let u = resolve_user_from(passwd, group, "www").unwrap();
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![50, 29]);
        let u = resolve_user_from(passwd, group, "www:staff").unwrap();
        assert_eq!((u.uid, u.gid), (33, 50));
        let u = resolve_user_from(passwd, group, "1234:5678").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        let u = resolve_user_from(passwd, group, "1234").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 0));
        assert!(resolve_user_from(passwd, group, "ghost")
            .unwrap_err()
            .contains("unable to find user ghost"));
        assert!(resolve_user_from(passwd, group, "www:nogroup").is_err());
    }
}
