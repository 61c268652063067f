//! Integration (root): `overlay::mount` stacks more layers than one page of `lowerdir=` holds,
//! under paths longer than an `fsconfig` string parameter, with the top layer winning and
//! writes going to the upper directory.

use std::path::{Path, PathBuf};

use barge_image::overlay::{mount, Overlay, OverlayError, MAX_LAYERS};

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn layers(base: &Path, n: usize) -> Vec<PathBuf> {
    // Top first, as `lowerdir` lists them: layer i writes /l<i> and /stack = i.
    let mut v = Vec::new();
    for i in (0..n).rev() {
        let d = base.join(format!("layer-{i:03}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("l{i}")), i.to_string()).unwrap();
        std::fs::write(d.join("stack"), i.to_string()).unwrap();
        v.push(d);
    }
    v
}

#[test]
fn many_layers_under_long_paths() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A short base and a very long one (> 255 bytes: layers passed as fds).
    for base in [
        tmp.path().join("short"),
        tmp.path().join("x".repeat(200)).join("y".repeat(100)),
    ] {
        let lowers = layers(&base, 130);
        let joined: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
        assert!(joined > 4096 || base.ends_with("short"));
        let (upper, work, target) = (base.join("upper"), base.join("work"), base.join("mnt"));
        for d in [&upper, &work, &target] {
            std::fs::create_dir_all(d).unwrap();
        }
        let ov = Overlay {
            lowers: &lowers,
            upper: Some((&upper, &work)),
            flags: &[],
        };
        mount(&target, &ov).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
        let _u = Unmount(target.clone());
        assert_eq!(
            std::fs::read_to_string(target.join("stack")).unwrap(),
            "129"
        );
        assert_eq!(std::fs::read_to_string(target.join("l0")).unwrap(), "0");
        std::fs::write(target.join("new"), "w").unwrap();
        assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "w");
        // Read-only without an upper.
        let ro = base.join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        let ov = Overlay {
            lowers: &lowers,
            upper: None,
            flags: &[],
        };
        mount(&ro, &ov).unwrap();
        let _r = Unmount(ro.clone());
        assert!(std::fs::write(ro.join("x"), "x").is_err());
        assert_eq!(std::fs::read_to_string(ro.join("l77")).unwrap(), "77");
    }
}

#[test]
fn errors_say_what_failed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let missing = vec![tmp.path().join("nope")];
    let e = mount(
        &target,
        &Overlay {
            lowers: &missing,
            upper: None,
            flags: &[],
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let too_many = vec![tmp.path().to_path_buf(); MAX_LAYERS + 1];
    let e = mount(
        &target,
        &Overlay {
            lowers: &too_many,
            upper: None,
            flags: &[],
        },
    )
    .unwrap_err();
    assert!(matches!(e, OverlayError::TooManyLayers { .. }), "{e}");
}
