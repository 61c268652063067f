//! The container init's seccomp filter and capability drop, owned by barge so that the compiled
//! seccomp program is cached across containers.
//!
//! libcontainer compiles the spec's seccomp profile with libseccomp inside every container's
//! init (translating ~300 rules for three architectures and generating the BPF program takes
//! 5-40 ms here, more than the rest of a container start). The same profile always gives the
//! same program, so [`take_over`] (in the creating process, before libcontainer clones) looks
//! the program up in a cache under the runtime root, keyed by the SHA-256 of the profile and the
//! libseccomp version, and compiles it only on a miss. It then hands libcontainer a spec without
//! `linux.seccomp` and `process.capabilities`, and keeps both here; the container init, a clone
//! of this process, applies them in [`apply_pending`], called by the executor's `validate` just
//! after libcontainer's own security steps would have run and before the init reports ready, so
//! a failure still fails `create` with its message. The order is libcontainer's (and runc's):
//! without `noNewPrivileges` the filter is loaded before the capabilities are dropped (loading
//! it needs `CAP_SYS_ADMIN`); with it, after. Profiles this does not cover (notify actions,
//! filter flags, `startContainer` hooks, which run between the two steps) are left to
//! libcontainer unchanged.
//!
//! Cache files are `<root>/.seccomp/<sha256 of the profile>.bpf`: the SHA-256 of the program,
//! then the program (`struct sock_filter` array, host byte order); a file whose checksum does
//! not match is compiled again. Written by rename, never fsynced: it is a cache.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use libcontainer::oci_spec::runtime::{
    LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator,
};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use sha2::{Digest, Sha256};

/// What the init applies itself (see the module docs).
struct Pending {
    program: Vec<libc::sock_filter>,
    caps: Option<LinuxCapabilities>,
    no_new_privileges: bool,
}

/// Set by [`take_over`] in the creating process; its clone (the container init) reads it.
static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

/// Format of the cache key (bump when the compilation below changes).
const CACHE_FORMAT: &str = "barge-seccomp-v1";

/// If the spec's seccomp profile can be applied by barge, compiles (or finds in the cache under
/// `root`) its program, removes `linux.seccomp` and `process.capabilities` from `spec` and keeps
/// them for [`apply_pending`]. Returns whether it did; `Ok(false)` leaves `spec` untouched.
/// Errors are libseccomp's (an invalid profile) and are what `create` fails with.
pub(crate) fn take_over(spec: &mut serde_json::Value, root: &Path) -> Result<bool, String> {
    let hooks = spec
        .pointer("/hooks/startContainer")
        .and_then(|h| h.as_array())
        .is_some_and(|h| !h.is_empty());
    if hooks {
        return Ok(false);
    }
    let Some(profile) = spec
        .pointer("/linux/seccomp")
        .filter(|v| !v.is_null())
        .cloned()
    else {
        return Ok(false);
    };
    let Some(process) = spec.get_mut("process") else {
        return Ok(false);
    };
    if !take_over_process(&profile, process, root)? {
        return Ok(false);
    }
    if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
        linux.remove("seccomp");
    }
    Ok(true)
}

/// The process half of [`take_over`], also used alone for `exec`: libcontainer 0.7's tenant
/// builder rebuilds `linux` without `seccomp`, so an exec'd process would run unfiltered,
/// where runc applies the container's profile to every process it starts in the container.
/// `profile` is the container's `linux.seccomp` (OCI runtime spec, config-linux.md#seccomp);
/// `process` the new process's spec, whose `capabilities` are removed and kept, with its
/// `noNewPrivileges`, for [`apply_pending`]. `Ok(false)` (a profile left to libcontainer, or a
/// second take-over in this process) leaves `process` untouched.
pub(crate) fn take_over_process(
    profile: &serde_json::Value,
    process: &mut serde_json::Value,
    root: &Path,
) -> Result<bool, String> {
    let seccomp: LinuxSeccomp =
        serde_json::from_value(profile.clone()).map_err(|e| format!("seccomp profile: {e}"))?;
    let flags = seccomp.flags().as_ref().is_some_and(|f| !f.is_empty());
    let notify = seccomp.default_action() == LinuxSeccompAction::ScmpActNotify
        || seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify);
    if flags || notify {
        return Ok(false);
    }
    let caps = match process.get("capabilities") {
        Some(v) if !v.is_null() => Some(
            serde_json::from_value::<LinuxCapabilities>(v.clone())
                .map_err(|e| format!("process capabilities: {e}"))?,
        ),
        _ => None,
    };
    let no_new_privileges = process
        .get("noNewPrivileges")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let program = cached_program(profile, &seccomp, &root.join(".seccomp"))?;
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if pending.is_some() {
        // One create or exec per process; a second one keeps libcontainer's own path.
        return Ok(false);
    }
    *pending = Some(Pending {
        program,
        caps,
        no_new_privileges,
    });
    drop(pending);
    if let Some(process) = process.as_object_mut() {
        process.remove("capabilities");
    }
    Ok(true)
}

/// In the container init: loads the seccomp program and drops the capabilities kept by
/// [`take_over`], in libcontainer's order. A no-op when nothing was taken over.
pub(crate) fn apply_pending() -> Result<(), String> {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(p) = pending else {
        return Ok(());
    };
    if p.no_new_privileges {
        drop_caps(p.caps.as_ref())?;
        load_program(&p.program)
    } else {
        load_program(&p.program)?;
        drop_caps(p.caps.as_ref())
    }
}

fn drop_caps(caps: Option<&LinuxCapabilities>) -> Result<(), String> {
    let Some(caps) = caps else { return Ok(()) };
    let syscall = libcontainer::syscall::syscall::SyscallType::Linux.create_syscall();
    libcontainer::capabilities::drop_privileges(caps, syscall.as_ref())
        .map_err(|e| format!("failed to drop capabilities: {e}"))
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, prog)`: what libseccomp's `seccomp_load` does for a
/// filter without attributes.
fn load_program(program: &[libc::sock_filter]) -> Result<(), String> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| "seccomp program too long".to_string())?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(format!(
            "failed to load seccomp filter: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The program for `profile`, from the cache in `dir` or compiled (and then cached).
fn cached_program(
    profile: &serde_json::Value,
    seccomp: &LinuxSeccomp,
    dir: &Path,
) -> Result<Vec<libc::sock_filter>, String> {
    let v = libseccomp::ScmpVersion::current().map_err(|e| format!("libseccomp version: {e}"))?;
    let mut h = Sha256::new();
    h.update(CACHE_FORMAT);
    h.update(format!("{}.{}.{}\0", v.major, v.minor, v.micro));
    // serde_json's map is ordered by key, so the same profile always gives the same text.
    h.update(profile.to_string());
    let key = hex(&h.finalize());
    let path = dir.join(format!("{key}.bpf"));
    if let Some(p) = std::fs::read(&path).ok().and_then(|b| from_cache(&b)) {
        return Ok(p);
    }
    let bytes = compile(seccomp, dir, &key)?;
    let program =
        parse(&bytes).ok_or_else(|| "libseccomp exported a truncated program".to_string())?;
    let mut file = Vec::with_capacity(32 + bytes.len());
    file.extend_from_slice(&Sha256::digest(&bytes));
    file.extend_from_slice(&bytes);
    // A failed cache write only costs the next container a compilation.
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    if std::fs::write(&tmp, &file).is_ok() && std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(program)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A cache file's program, if its checksum matches.
fn from_cache(file: &[u8]) -> Option<Vec<libc::sock_filter>> {
    let (sum, bytes) = file.split_at_checked(32)?;
    (Sha256::digest(bytes).as_slice() == sum)
        .then(|| parse(bytes))
        .flatten()
}

/// `struct sock_filter` array (8 bytes each, host byte order) from bytes.
fn parse(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > usize::from(u16::MAX)
    {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            u16::try_from(errno)
                .map_err(|_| format!("seccomp trace value {errno} out of range"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
    })
}

fn op(o: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

/// A libseccomp error as `seccomp: <step>: <error>`.
fn err(what: &'static str) -> impl Fn(libseccomp::error::SeccompError) -> String {
    move |e| format!("seccomp: {what}: {e}")
}

/// Builds the libseccomp filter exactly as libcontainer 0.7's `initialize_seccomp` does (same
/// rules, same skips) and exports its program. `dir` is made if missing; the export goes
/// through a temporary file in it.
fn compile(s: &LinuxSeccomp, dir: &Path, key: &str) -> Result<Vec<u8>, String> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err("new filter"))?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).map_err(|e| e.to_string())?;
        let a = name
            .as_str()
            .and_then(|n| ScmpArch::from_str(n).ok())
            .ok_or_else(|| format!("seccomp: unknown architecture {name}"))?;
        ctx.add_arch(a).map_err(err("add architecture"))?;
    }
    ctx.set_ctl_nnp(false).map_err(err("SCMP_FLTATR_CTL_NNP"))?;
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        for name in rule.names() {
            // A name the kernel/libseccomp does not know is skipped, as libcontainer does.
            let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            match rule.args() {
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                op(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    let dup = args.iter().any(|a| !seen.insert(a.index()));
                    if dup {
                        for c in &cmps {
                            ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                                .map_err(err("add rule"))?;
                        }
                    } else {
                        ctx.add_rule_conditional(act, sc, &cmps)
                            .map_err(err("add rule"))?;
                    }
                }
                None => {
                    ctx.add_rule(act, sc).map_err(err("add rule"))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{key}.{}.export", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| format!("create {}: {e}", tmp.display()))?;
    let _ = std::fs::remove_file(&tmp);
    ctx.export_bpf(&f).map_err(err("export"))?;
    f.flush().map_err(|e| e.to_string())?;
    f.rewind().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> serde_json::Value {
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })
    }

    #[test]
    fn compiled_once_then_read_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let p = profile();
        let s: LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
        let first = cached_program(&p, &s, dir.path()).unwrap();
        assert!(first.len() > 10);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(files.len(), 1, "one cache file, no temporaries");
        let path = files[0].path();
        // The cached copy is what is used next: corrupt the program and it is compiled again.
        let cached = std::fs::read(&path).unwrap();
        assert_eq!(from_cache(&cached).unwrap().len(), first.len());
        let mut bad = cached.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(from_cache(&bad).is_none());
        let again = cached_program(&p, &s, dir.path()).unwrap();
        assert_eq!(again.len(), first.len());
        assert_eq!(std::fs::read(&path).unwrap(), cached, "rewritten");
        // A different profile is a different program.
        let mut p2 = p.clone();
        p2["defaultErrnoRet"] = serde_json::json!(38);
        let s2: LinuxSeccomp = serde_json::from_value(p2.clone()).unwrap();
        cached_program(&p2, &s2, dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn take_over_strips_and_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = serde_json::json!({
            "process": {"args": ["true"], "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
            "linux": {"seccomp": profile()}
        });
        // Not applied in this (test) process: only checked that it is kept and stripped.
        assert!(take_over(&mut spec, dir.path()).unwrap());
        assert!(spec.pointer("/linux/seccomp").is_none());
        assert!(spec.pointer("/process/capabilities").is_none());
        let p = PENDING.lock().unwrap().take().unwrap();
        assert!(!p.no_new_privileges);
        assert!(p.caps.is_some());

        // Notify actions stay with libcontainer.
        let mut n = profile();
        n["syscalls"][0]["action"] = serde_json::json!("SCMP_ACT_NOTIFY");
        n["syscalls"][0]["names"] = serde_json::json!(["mkdir"]);
        let mut spec = serde_json::json!({"process": {}, "linux": {"seccomp": n}});
        assert!(!take_over(&mut spec, dir.path()).unwrap());
        assert!(spec.pointer("/linux/seccomp").is_some());
        // No profile: nothing to do.
        let mut spec = serde_json::json!({"process": {}, "linux": {}});
        assert!(!take_over(&mut spec, dir.path()).unwrap());
    }

    /// The program really filters: loaded in a forked child, a denied syscall fails with the
    /// profile's errno and an allowed one works.
    #[test]
    fn program_filters_in_a_child() {
        let dir = tempfile::tempdir().unwrap();
        let p = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
        let s: LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
        let prog = cached_program(&p, &s, dir.path()).unwrap();
        // SAFETY: the child only makes raw syscalls (prctl, seccomp, getppid, _exit) and
        // touches memory allocated before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = match load_program(&prog) {
                    Err(_) => 10,
                    Ok(()) => {
                        let r = libc::syscall(libc::SYS_getppid);
                        let e = *libc::__errno_location();
                        let pid = libc::syscall(libc::SYS_getpid);
                        if r == -1 && e == 38 && pid > 0 {
                            0
                        } else {
                            11
                        }
                    }
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
