//! Integration (root): mount points with spaces and backslashes are found in mountinfo, where
//! the kernel writes them as `\040` and `\134`.

use std::path::Path;

use barge_container::mountinfo::{is_mounted, mount_points};

#[test]
fn mount_points_with_spaces_and_backslashes_are_decoded() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["with space", "back\\slash", "tab\there"] {
        let p = dir.path().join(name);
        std::fs::create_dir(&p).unwrap();
        assert!(!is_mounted(&p));
        nix::mount::mount(
            Some("tmpfs"),
            &p,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        let found = is_mounted(&p);
        let listed = mount_points().unwrap().iter().any(|m| m == &p);
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(found && listed, "{} not found in mountinfo", p.display());
        assert!(!is_mounted(&p));
    }
    assert!(is_mounted(Path::new("/")));
}
