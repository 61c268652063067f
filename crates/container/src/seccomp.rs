//! Docker's default seccomp policy, as an OCI `linux.seccomp` section.
//!
//! The policy mirrors the one Docker/moby ships (`profiles/seccomp/default.json`, Apache-2.0,
//! © Docker, Inc. and the moby authors): default action `ERRNO(EPERM)`, one big allow list,
//! argument-filtered `personality`/`socket`/`clone` rules, and rules that are included or excluded
//! depending on the container's capabilities, the architecture and the kernel version. Like
//! moby's Go code (`profiles/seccomp/seccomp_linux.go`), includes/excludes are resolved when the
//! spec is built, so the runtime only sees plain rules.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

/// The always-allowed syscalls.
const ALLOWED: &str = "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 \
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep \
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 \
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit \
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown \
fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 \
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd \
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer \
getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 \
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid \
getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy \
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter \
io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown \
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 \
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 \
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 \
mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep \
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free \
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 \
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg \
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq \
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait \
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max \
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity \
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop \
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 \
setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 \
setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area \
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 \
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync \
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime \
timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime \
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat \
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev";

/// CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET
const CLONE_NS_MASK: u64 = 2114060288;

/// One conditional rule of the policy.
struct Rule {
    names: &'static str,
    /// `None` = allow; `Some(errno)` = fail with that errno.
    errno: Option<u32>,
    /// (index, value, op)
    args: &'static [(u32, u64, LinuxSeccompOperator)],
    inc_caps: &'static [&'static str],
    inc_arches: &'static [&'static str],
    inc_min_kernel: Option<(u32, u32)>,
    exc_caps: &'static [&'static str],
    exc_arches: &'static [&'static str],
}

const fn allow(names: &'static str) -> Rule {
    Rule {
        names,
        errno: None,
        args: &[],
        inc_caps: &[],
        inc_arches: &[],
        inc_min_kernel: None,
        exc_caps: &[],
        exc_arches: &[],
    }
}
const fn cap(names: &'static str, caps: &'static [&'static str]) -> Rule {
    Rule {
        inc_caps: caps,
        ..allow(names)
    }
}
const fn arch(names: &'static str, arches: &'static [&'static str]) -> Rule {
    Rule {
        inc_arches: arches,
        ..allow(names)
    }
}

use LinuxSeccompOperator::{ScmpCmpEq as EQ, ScmpCmpMaskedEq as MASKED_EQ, ScmpCmpNe as NE};

const RULES: &[Rule] = &[
    Rule { inc_min_kernel: Some((4, 8)), ..allow("process_vm_readv process_vm_writev ptrace") },
    Rule { args: &[(0, 40, NE)], ..allow("socket") },
    Rule { args: &[(0, 0, EQ)], ..allow("personality") },
    Rule { args: &[(0, 8, EQ)], ..allow("personality") },
    Rule { args: &[(0, 131072, EQ)], ..allow("personality") },
    Rule { args: &[(0, 131080, EQ)], ..allow("personality") },
    Rule { args: &[(0, 4294967295, EQ)], ..allow("personality") },
    arch("sync_file_range2 swapcontext", &["ppc64le"]),
    arch("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls", &["arm", "arm64"]),
    arch("arch_prctl", &["amd64", "x32"]),
    arch("modify_ldt", &["amd64", "x32", "x86"]),
    arch("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", &["s390", "s390x"]),
    arch("riscv_flush_icache", &["riscv64"]),
    cap("open_by_handle_at", &["CAP_DAC_READ_SEARCH"]),
    cap(
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr move_mount \
         open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
        &["CAP_SYS_ADMIN"],
    ),
    Rule { args: &[(0, CLONE_NS_MASK, MASKED_EQ)], exc_caps: &["CAP_SYS_ADMIN"], exc_arches: &["s390", "s390x"], ..allow("clone") },
    Rule { args: &[(1, CLONE_NS_MASK, MASKED_EQ)], inc_arches: &["s390", "s390x"], exc_caps: &["CAP_SYS_ADMIN"], ..allow("clone") },
    Rule { errno: Some(38), exc_caps: &["CAP_SYS_ADMIN"], ..allow("clone3") },
    cap("reboot", &["CAP_SYS_BOOT"]),
    cap("chroot", &["CAP_SYS_CHROOT"]),
    cap("delete_module init_module finit_module", &["CAP_SYS_MODULE"]),
    cap("acct", &["CAP_SYS_PACCT"]),
    cap("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace", &["CAP_SYS_PTRACE"]),
    cap("iopl ioperm", &["CAP_SYS_RAWIO"]),
    cap("settimeofday stime clock_settime clock_settime64", &["CAP_SYS_TIME"]),
    cap("vhangup", &["CAP_SYS_TTY_CONFIG"]),
    cap("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", &["CAP_SYS_NICE"]),
    cap("syslog", &["CAP_SYSLOG"]),
    cap("bpf", &["CAP_BPF"]),
    cap("perf_event_open", &["CAP_PERFMON"]),
];

/// Go's GOARCH name of the host (what the profile's `arches` lists use).
pub(crate) fn host_goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn seccomp_arches(goarch: &str) -> Vec<Arch> {
    match goarch {
        "amd64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "arm64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "ppc64le" => vec![Arch::ScmpArchPpc64le],
        "386" => vec![Arch::ScmpArchX86],
        _ => vec![],
    }
}

/// Host kernel (major, minor) from `uname`.
pub(crate) fn kernel_version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Docker's default profile for a container with capabilities `caps` (`CAP_*` names).
pub(crate) fn default_profile(caps: &[String], goarch: &str, kernel: (u32, u32)) -> LinuxSeccomp {
    let has_cap = |c: &str| caps.iter().any(|x| x == c);
    let mut syscalls = vec![make_syscall(ALLOWED, None, &[])];
    for rule in RULES {
        if !rule.inc_caps.is_empty() && !rule.inc_caps.iter().all(|c| has_cap(c)) {
            continue;
        }
        if !rule.inc_arches.is_empty() && !rule.inc_arches.contains(&goarch) {
            continue;
        }
        if let Some(min) = rule.inc_min_kernel {
            if kernel < min {
                continue;
            }
        }
        if !rule.exc_caps.is_empty() && rule.exc_caps.iter().any(|c| has_cap(c)) {
            continue;
        }
        if rule.exc_arches.contains(&goarch) {
            continue;
        }
        syscalls.push(make_syscall(rule.names, rule.errno, rule.args));
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(libc::EPERM as u32))
        .set_architectures(Some(seccomp_arches(goarch)))
        .set_flags(None)
        .set_listener_path(None)
        .set_syscalls(Some(syscalls));
    seccomp
}

fn make_syscall(
    names: &str,
    errno: Option<u32>,
    args: &[(u32, u64, LinuxSeccompOperator)],
) -> LinuxSyscall {
    let mut sc = LinuxSyscall::default();
    sc.set_names(names.split_whitespace().map(str::to_string).collect());
    match errno {
        None => {
            sc.set_action(LinuxSeccompAction::ScmpActAllow);
        }
        Some(e) => {
            sc.set_action(LinuxSeccompAction::ScmpActErrno)
                .set_errno_ret(Some(e));
        }
    }
    if !args.is_empty() {
        let args = args
            .iter()
            .map(|&(index, value, op)| {
                LinuxSeccompArgBuilder::default()
                    .index(index as usize)
                    .value(value)
                    .op(op)
                    .build()
                    .expect("all fields set")
            })
            .collect();
        sc.set_args(Some(args));
    }
    sc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn default_caps_exclude_admin_rules() {
        let p = default_profile(&["CAP_CHOWN".into()], "amd64", (6, 1));
        let n = names(&p);
        assert!(n.contains(&"read".to_string()));
        assert!(n.contains(&"arch_prctl".to_string()));
        assert!(!n.contains(&"mount".to_string()));
        assert!(!n.contains(&"reboot".to_string()));
        // clone with the namespace mask and clone3 → ENOSYS are present.
        let sc = p.syscalls().as_ref().unwrap();
        assert!(sc
            .iter()
            .any(|s| s.names() == &vec!["clone3".to_string()] && s.errno_ret() == Some(38)));
        assert!(sc
            .iter()
            .any(|s| s.names() == &vec!["clone".to_string()] && s.args().is_some()));
    }

    #[test]
    fn sys_admin_includes_mount() {
        let p = default_profile(&["CAP_SYS_ADMIN".into()], "amd64", (6, 1));
        let n = names(&p);
        assert!(n.contains(&"mount".to_string()));
        let sc = p.syscalls().as_ref().unwrap();
        assert!(!sc.iter().any(|s| s.errno_ret() == Some(38)));
    }
}
