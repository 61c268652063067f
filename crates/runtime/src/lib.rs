//! barge's embedded OCI runtime: a runc-compatible command line built on youki's
//! [`libcontainer`], run as `barge runtime [global flags] <command> ...`.
//!
//! The per-container monitor runs it exactly as it runs runc:
//!
//! ```text
//! barge runtime --root R [--log F --log-format json] create --bundle B --pid-file P [--console-socket S] ID
//! barge runtime --root R start ID
//! barge runtime --root R exec --process P.json --detach --pid-file F [--tty --console-socket S] ID
//! barge runtime --root R kill [--all] ID [SIGNAL]
//! barge runtime --root R delete [--force] ID
//! barge runtime --root R state ID
//! barge runtime --root R ps [--format json] ID
//! ```
//!
//! **Process model.** libcontainer clones (raw `clone3`) an intermediate process and the
//! container init from the calling process, which is only safe when the caller is
//! single-threaded; this entry point therefore always runs in a fresh process (the monitor
//! spawns it) and never inside the async daemon. The init (and an exec'd process) is created
//! with `CLONE_PARENT` by the intermediate process, so it is a child of this process; when this
//! process exits, it is re-parented to the nearest child subreaper, i.e. the monitor, which
//! reaps it and records its exit status (as with `runc create`/`runc exec --detach`).
//!
//! **Errors** go to stderr and, with `--log`, to the log file in runc's JSON format
//! (`{"level":"error","msg":...,"time":...}`), which the monitor reads. Executable lookup
//! failures use runc's wording (`exec: "foo": executable file not found in $PATH`,
//! `exec: "/etc": permission denied`), which clients map to exit codes 127/126.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};

mod security;

/// Default state directory when `--root` is not given.
pub const DEFAULT_ROOT: &str = "/run/barge-runtime";

/// Global options (runc's).
#[derive(Debug, Default)]
struct Global {
    root: Option<PathBuf>,
    log: Option<PathBuf>,
    log_json: bool,
}

impl Global {
    fn root(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }
}

type Result<T> = std::result::Result<T, String>;

/// Entry point of `barge runtime <args>` (`args` excludes `barge runtime`). Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut g = Global::default();
    let mut i = 0;
    // Global flags come before the command.
    while i < args.len() {
        let (flag, inline) = split_flag(&args[i]);
        match flag {
            "--root" | "--log" | "--log-format" | "--criu" | "--rootless" => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => return usage(&format!("flag needs an argument: {flag}")),
                        }
                    }
                };
                match flag {
                    "--root" => g.root = Some(PathBuf::from(value)),
                    "--log" => g.log = Some(PathBuf::from(value)),
                    "--log-format" => g.log_json = value == "json",
                    _ => {}
                }
            }
            "--systemd-cgroup" | "--debug" => {}
            "-h" | "--help" => {
                println!("usage: barge runtime [--root DIR] [--log FILE] [--log-format text|json] create|start|exec|kill|delete|state|ps ...");
                return 0;
            }
            "-v" | "--version" => {
                println!("barge runtime (youki libcontainer 0.7)\nspec: 1.2.0");
                return 0;
            }
            _ => break,
        }
        i += 1;
    }
    let Some(cmd) = args.get(i) else {
        return usage("missing command");
    };
    let rest = &args[i + 1..];
    let result = match cmd.as_str() {
        "create" => create(&g, rest),
        "start" => start(&g, rest),
        "exec" => exec(&g, rest),
        "kill" => kill(&g, rest),
        "delete" => delete(&g, rest),
        "state" => state(&g, rest),
        "ps" => ps(&g, rest),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            log_error(&g, &msg);
            1
        }
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("barge runtime: {msg}");
    2
}

fn split_flag(arg: &str) -> (&str, Option<&str>) {
    if arg.starts_with("--") {
        if let Some((f, v)) = arg.split_once('=') {
            return (f, Some(v));
        }
    }
    (arg, None)
}

/// Writes an error like runc: to stderr, and to the log file (JSON lines with `--log-format json`).
fn log_error(g: &Global, msg: &str) {
    eprintln!("{msg}");
    let Some(path) = &g.log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let time = rfc3339_now();
    let line = if g.log_json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!(
            "time=\"{time}\" level=error msg={}",
            serde_json::Value::from(msg)
        )
    };
    let _ = writeln!(f, "{line}");
}

fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Parsed command flags: values of flags that take one, presence of boolean flags, positionals.
struct Flags {
    values: HashMap<String, String>,
    bools: Vec<String>,
    positional: Vec<String>,
}

impl Flags {
    /// `with_value` lists flags that take a value (long and short names); anything after the
    /// first positional (or `--`) is positional.
    fn parse(args: &[String], with_value: &[&str]) -> Result<Flags> {
        let mut f = Flags {
            values: HashMap::new(),
            bools: Vec::new(),
            positional: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                f.positional.extend(args[i + 1..].iter().cloned());
                break;
            }
            if !a.starts_with('-') || a == "-" {
                f.positional.extend(args[i..].iter().cloned());
                break;
            }
            let (flag, inline) = split_flag(a);
            if with_value.contains(&flag) {
                let v = match inline {
                    Some(v) => v.to_string(),
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: {flag}"))?
                    }
                };
                f.values.insert(flag.trim_start_matches('-').to_string(), v);
            } else {
                f.bools.push(flag.trim_start_matches('-').to_string());
            }
            i += 1;
        }
        Ok(f)
    }
    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    fn has(&self, names: &[&str]) -> bool {
        self.bools.iter().any(|b| names.contains(&b.as_str()))
    }
    fn id(&self) -> Result<&str> {
        self.positional
            .first()
            .map(String::as_str)
            .ok_or_else(|| "container id cannot be empty".to_string())
    }
}

/// Turns a libcontainer error into runc-like text: the exec lookup message if the container
/// process reported one, otherwise the whole error chain.
fn describe(prefix: &str, err: &dyn std::error::Error) -> String {
    let mut chain = vec![err.to_string()];
    let mut src = err.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !chain.iter().any(|c| c.contains(&t)) {
            chain.push(t);
        }
        src = s.source();
    }
    for c in &chain {
        if let Some(pos) = c.find(EXEC_MARK) {
            return format!("{prefix}: unable to start container process: {}", &c[pos..]);
        }
    }
    format!("{prefix}: {}", chain.join(": "))
}

/// Start of runc's exec lookup errors; also used to find them in libcontainer's error text.
const EXEC_MARK: &str = "exec: \"";

/// The default executor, with runc's executable lookup (and its error wording) as validation.
#[derive(Clone)]
struct RuncExecutor;

impl Executor for RuncExecutor {
    fn exec(&self, spec: &Spec) -> std::result::Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> std::result::Result<(), ExecutorValidationError> {
        // Runs in the container init right after libcontainer's own security steps: apply
        // what `create` took over from it (seccomp program, capabilities); a failure here
        // fails `create` with its message, as libcontainer's would.
        security::apply_pending().map_err(ExecutorValidationError::ArgValidationError)?;
        let process = spec.process().as_ref().ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("spec did not contain process".into())
        })?;
        let args = process.args().as_deref().unwrap_or_default();
        let Some(name) = args.first() else {
            return Err(ExecutorValidationError::ArgValidationError(
                "args must not be empty".into(),
            ));
        };
        let path_var = process
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        look_path(name, path_var)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }

    fn setup_envs(
        &self,
        envs: HashMap<String, String>,
    ) -> std::result::Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

/// Go's `exec.LookPath` (what runc uses), with runc's messages.
fn look_path(name: &str, path_var: &str) -> std::result::Result<PathBuf, String> {
    let check = |p: &Path| -> std::result::Result<(), std::io::Error> {
        let m = std::fs::metadata(p)?;
        if !m.is_dir() && m.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EACCES))
        }
    };
    if name.contains('/') {
        return match check(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                Err(format!("{EXEC_MARK}{name}\": permission denied"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "{EXEC_MARK}{name}\": stat {name}: no such file or directory"
            )),
            Err(e) => Err(format!("{EXEC_MARK}{name}\": stat {name}: {}", io_text(&e))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if check(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(format!(
        "{EXEC_MARK}{name}\": executable file not found in $PATH"
    ))
}

/// An io::Error's text without Rust's " (os error N)" suffix, as Go prints it.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

fn builder(
    g: &Global,
    id: &str,
    pid_file: Option<&str>,
    console: Option<&str>,
) -> Result<ContainerBuilder> {
    let root = g.root();
    std::fs::create_dir_all(&root).map_err(|e| format!("create root {}: {e}", root.display()))?;
    let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(RuncExecutor)
        .with_root_path(root)
        .map_err(|e| describe("invalid --root", &e))?
        .with_console_socket(console);
    if let Some(p) = pid_file {
        b = b
            .with_pid_file(Some(p))
            .map_err(|e| describe("invalid --pid-file", &e))?;
    }
    Ok(b)
}

/// `create` for a caller that runs libcontainer in its own process (the monitor, which is
/// single-threaded and started fresh): the same as `barge runtime --root ROOT create --bundle
/// BUNDLE --pid-file PID_FILE [--console-socket S] ID`, without exec'ing this binary. The
/// container's stdio are the caller's fds 0-2 (or the console socket's pty). Returns the error
/// text the command would have logged.
pub fn create_in_process(
    root: &Path,
    id: &str,
    bundle: &Path,
    pid_file: &Path,
    console_socket: Option<&Path>,
) -> Result<()> {
    let g = Global {
        root: Some(root.to_path_buf()),
        ..Global::default()
    };
    let pid_file = pid_file.to_string_lossy();
    let console = console_socket.map(|c| c.to_string_lossy().into_owned());
    create_container(
        &g,
        id,
        bundle,
        Some(&pid_file),
        console.as_deref(),
        None,
        false,
    )
}

/// `barge runtime --root ROOT start ID`, in the calling process (no fork).
pub fn start_in_process(root: &Path, id: &str) -> Result<()> {
    let g = Global {
        root: Some(root.to_path_buf()),
        ..Global::default()
    };
    start_container(&g, id)
}

/// `barge runtime --root ROOT delete --force ID`, in the calling process (no fork).
pub fn delete_in_process(root: &Path, id: &str) -> Result<()> {
    let g = Global {
        root: Some(root.to_path_buf()),
        ..Global::default()
    };
    delete_container(&g, id, true)
}

fn create(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(
        args,
        &[
            "--bundle",
            "-b",
            "--pid-file",
            "--console-socket",
            "--preserve-fds",
        ],
    )?;
    let id = f.id()?;
    let bundle = f.value("bundle").or(f.value("b")).unwrap_or(".");
    let preserve = match f.value("preserve-fds") {
        Some(n) => Some(
            n.parse()
                .map_err(|_| format!("invalid --preserve-fds {n:?}"))?,
        ),
        None => None,
    };
    create_container(
        g,
        id,
        Path::new(bundle),
        f.value("pid-file"),
        f.value("console-socket"),
        preserve,
        f.has(&["no-pivot"]),
    )
}

fn create_container(
    g: &Global,
    id: &str,
    bundle: &Path,
    pid_file: Option<&str>,
    console: Option<&str>,
    preserve_fds: Option<i32>,
    no_pivot: bool,
) -> Result<()> {
    let bundle =
        std::fs::canonicalize(bundle).map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
    let prepared = prepare_bundle(g, id, &bundle)?;
    let mut b = builder(g, id, pid_file, console)?;
    if let Some(n) = preserve_fds {
        b = b.with_preserved_fds(n);
    }
    b.as_init(&prepared.dir)
        .with_systemd(false)
        .with_detach(true)
        .with_no_pivot(no_pivot)
        .build()
        .map(|_| ())
        .map_err(|e| {
            reap_children();
            describe("barge runtime create failed", &e)
        })?;
    // The init has its spec (and, taken over, its seccomp program and capabilities) in memory
    // now; later loads of the bundle (exec, which applies the container's seccomp profile and
    // capabilities to the new process) must see the whole spec again.
    if let Some(full) = prepared.restore {
        let path = prepared.dir.join("config.json");
        std::fs::write(&path, full).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The bundle handed to libcontainer's create.
struct PreparedBundle {
    /// The caller's bundle, or a private copy of its config.json (with an absolute rootfs).
    dir: PathBuf,
    /// The private copy's config.json to write back once the container is created (the
    /// spec without barge's runtime-only edits), when the copy differs from it.
    restore: Option<Vec<u8>>,
}

/// Reads the bundle's config.json once and applies barge's edits for libcontainer: the
/// process's cwd is created in the rootfs (as runc does), an explicit `"noNewPrivileges": false`
/// is dropped (libcontainer misreads it), and the seccomp profile and capabilities are taken
/// over by [`security`] (cached seccomp program). Any edit means a private copy of config.json.
fn prepare_bundle(g: &Global, id: &str, bundle: &Path) -> Result<PreparedBundle> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))?;
    ensure_cwd(bundle, &spec);
    let nnp_edit = spec.get_mut("process").is_some_and(without_false_nnp);
    let full = nnp_edit.then(|| spec.clone());
    let taken = security::take_over(&mut spec, &g.root())?;
    if !nnp_edit && !taken {
        return Ok(PreparedBundle {
            dir: bundle.to_path_buf(),
            restore: None,
        });
    }
    let absolute_root = |spec: &mut serde_json::Value| {
        if let Some(root) = spec.get_mut("root").and_then(|r| r.get_mut("path")) {
            if let Some(p) = root.as_str().filter(|p| !p.starts_with('/')) {
                *root = serde_json::Value::from(bundle.join(p).to_string_lossy().into_owned());
            }
        }
    };
    absolute_root(&mut spec);
    let restore = taken.then(|| {
        let mut full = match full {
            Some(f) => f,
            None => serde_json::from_slice(&data).unwrap_or_default(),
        };
        absolute_root(&mut full);
        full.to_string().into_bytes()
    });
    let dir = private_dir(g, id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    std::fs::write(dir.join("config.json"), spec.to_string())
        .map_err(|e| format!("write {}: {e}", dir.display()))?;
    Ok(PreparedBundle { dir, restore })
}

/// runc creates the process's cwd in the rootfs when it is missing (images often lack
/// `/tmp` etc.); libcontainer fails its chdir instead. Create it here, component by component,
/// never following a symlink (a symlinked or odd path is left for the runtime to refuse).
fn ensure_cwd(bundle: &Path, spec: &serde_json::Value) {
    let (Some(root), Some(cwd)) = (
        spec["root"]["path"].as_str(),
        spec["process"]["cwd"].as_str(),
    ) else {
        return;
    };
    let mut dir = bundle.join(root);
    for part in Path::new(cwd).components() {
        match part {
            std::path::Component::Normal(p) => dir.push(p),
            std::path::Component::RootDir | std::path::Component::CurDir => continue,
            _ => return,
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return,
            Err(_) => {
                if std::fs::create_dir(&dir).is_err() {
                    return;
                }
            }
        }
    }
}

/// libcontainer 0.7 treats `"noNewPrivileges": false` like `true` (it tests `is_some()`):
/// it then loads the seccomp filter after dropping CAP_SYS_ADMIN and without no_new_privs,
/// which the kernel refuses ("failed to load seccomp context"). runc treats false as absent.
/// Removes an explicit `false` from a process's JSON; returns whether there was one.
fn without_false_nnp(process: &mut serde_json::Value) -> bool {
    if process.get("noNewPrivileges") == Some(&serde_json::Value::Bool(false)) {
        process.as_object_mut().map(|o| o.remove("noNewPrivileges"));
        true
    } else {
        false
    }
}

/// Private copies of bundles/process files rewritten by the workaround above.
fn private_dir(g: &Global, id: &str) -> PathBuf {
    g.root().join(".barge").join(id)
}

/// After a failed create/exec, libcontainer has not waited for its intermediate and init
/// processes (both our children). Reap them here: left as zombies they would be re-parented
/// to the monitor, and a zombie inside the container's pid namespace keeps its PID 1 from
/// finishing its exit (`zap_pid_ns_processes`) until someone reaps it.
fn reap_children() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out pointer; we only reap our own children.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        if r < 0 || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn load(g: &Global, id: &str) -> Result<Container> {
    let dir = g.root().join(id);
    if !dir.exists() {
        return Err(format!("container does not exist: {id}"));
    }
    Container::load(dir).map_err(|e| describe(&format!("load container {id}"), &e))
}

fn start(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(args, &[])?;
    start_container(g, f.id()?)
}

fn start_container(g: &Global, id: &str) -> Result<()> {
    let mut c = load(g, id)?;
    c.start()
        .map_err(|e| describe("barge runtime start failed", &e))
}

fn exec(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(
        args,
        &[
            "--process",
            "-p",
            "--pid-file",
            "--console-socket",
            "--cwd",
            "--env",
            "-e",
            "--user",
            "-u",
            "--preserve-fds",
        ],
    )?;
    let id = f.id()?;
    if !f.has(&["detach", "d"]) {
        return Err("barge runtime exec: only --detach is supported".into());
    }
    let mut process = f.value("process").or(f.value("p")).map(PathBuf::from);
    let mut process_spec = match &process {
        Some(p) => {
            let data = std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?;
            Some(
                serde_json::from_slice::<serde_json::Value>(&data)
                    .map_err(|e| format!("parse {}: {e}", p.display()))?,
            )
        }
        None => None,
    };
    // The container's seccomp profile applies to exec'd processes too (runc's behaviour), but
    // libcontainer's tenant builder drops it: barge loads it itself (security.rs).
    let container_spec = container_spec(g, id)?;
    let profile = container_spec
        .pointer("/linux/seccomp")
        .filter(|v| !v.is_null())
        .cloned();
    let mut edited = false;
    if process_spec.is_none() && profile.is_some() {
        // `exec ID ARGS…`: the process libcontainer would build (the container's process with
        // these args and cwd), written out so that its capabilities can be taken over.
        let argv: Vec<String> = f.positional[1..].to_vec();
        if argv.is_empty() {
            return Err("exec: args must not be empty".into());
        }
        let mut p = container_spec
            .get("process")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        p["args"] = serde_json::json!(argv);
        p["terminal"] = serde_json::json!(f.value("console-socket").is_some());
        if let Some(cwd) = f.value("cwd") {
            p["cwd"] = serde_json::json!(cwd);
        }
        process_spec = Some(p);
        edited = true;
    }
    let mut tmp_process = None;
    if let Some(v) = &mut process_spec {
        edited |= without_false_nnp(v);
        if let Some(profile) = &profile {
            edited |= security::take_over_process(profile, v, &g.root())?;
        }
        if edited {
            let dir = private_dir(g, id);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let t = dir.join(format!("process-{}.json", std::process::id()));
            std::fs::write(&t, v.to_string()).map_err(|e| format!("write {}: {e}", t.display()))?;
            tmp_process = Some(t.clone());
            process = Some(t);
        }
    }
    let mut b = builder(g, id, f.value("pid-file"), f.value("console-socket"))?;
    if let Some(n) = f.value("preserve-fds") {
        b = b.with_preserved_fds(
            n.parse()
                .map_err(|_| format!("invalid --preserve-fds {n:?}"))?,
        );
    }
    let mut t = b.as_tenant().with_detach(true);
    match process {
        Some(p) => t = t.with_process(Some(p)),
        None => {
            let argv: Vec<String> = f.positional[1..].to_vec();
            if argv.is_empty() {
                return Err("exec: args must not be empty".into());
            }
            t = t.with_container_args(argv).with_cwd(f.value("cwd"));
        }
    }
    let result = t.build().map(|_| ()).map_err(|e| {
        reap_children();
        describe("barge runtime exec failed", &e)
    });
    if let Some(t) = tmp_process {
        let _ = std::fs::remove_file(t);
    }
    result
}

/// The container's spec as its bundle holds it (for `create`s whose seccomp profile barge took
/// over, the private copy restored to the whole spec once the init had it).
fn container_spec(g: &Global, id: &str) -> Result<serde_json::Value> {
    let c = load(g, id)?;
    let path = c.bundle().join("config.json");
    let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("parse {}: {e}", path.display()))
}

fn kill(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(args, &[])?;
    let mut c = load(g, f.id()?)?;
    let sig = f.positional.get(1).map(String::as_str).unwrap_or("SIGTERM");
    let signal = Signal::try_from(sig).map_err(|e| e.to_string())?;
    c.kill(signal, f.has(&["all", "a"]))
        .map_err(|e| describe("barge runtime kill failed", &e))
}

fn delete(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(args, &[])?;
    delete_container(g, f.id()?, f.has(&["force", "f"]))
}

fn delete_container(g: &Global, id: &str, force: bool) -> Result<()> {
    let dir = g.root().join(id);
    if !dir.exists() {
        let _ = std::fs::remove_dir_all(private_dir(g, id));
        return if force {
            Ok(())
        } else {
            Err(format!("container does not exist: {id}"))
        };
    }
    let mut c = load(g, id)?;
    c.delete(force)
        .map_err(|e| describe("barge runtime delete failed", &e))?;
    let _ = std::fs::remove_dir_all(private_dir(g, id));
    Ok(())
}

fn state(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(args, &[])?;
    let mut c = load(g, f.id()?)?;
    c.refresh_status()
        .map_err(|e| describe("refresh status", &e))?;
    let text = serde_json::to_string_pretty(&c.state).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// `ps`: the host pids of the processes in the container's pid namespace (runc lists its cgroup).
fn ps(g: &Global, args: &[String]) -> Result<()> {
    let f = Flags::parse(args, &["--format", "-f"])?;
    let mut c = load(g, f.id()?)?;
    c.refresh_status()
        .map_err(|e| describe("refresh status", &e))?;
    let mut pids = Vec::new();
    if let Some(init) = c.pid() {
        let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok();
        if let (Some(ns), Ok(dir)) = (ns, std::fs::read_dir("/proc")) {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
                {
                    pids.push(pid);
                }
            }
        }
    }
    pids.sort_unstable();
    if f.value("format").or(f.value("f")) == Some("json") {
        println!("{}", serde_json::to_string(&pids).unwrap_or_default());
    } else {
        for p in pids {
            println!("{p}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_messages() {
        assert_eq!(
            look_path("nope-xyz", "/usr/bin:/bin").unwrap_err(),
            r#"exec: "nope-xyz": executable file not found in $PATH"#
        );
        assert_eq!(
            look_path("/etc", "").unwrap_err(),
            r#"exec: "/etc": permission denied"#
        );
        assert_eq!(
            look_path("/nope", "").unwrap_err(),
            r#"exec: "/nope": stat /nope: no such file or directory"#
        );
        assert!(look_path("sh", "/usr/bin:/bin").is_ok());
    }

    #[test]
    fn flags() {
        let a: Vec<String> = ["--bundle", "/b", "--pid-file=/p", "--detach", "id", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = Flags::parse(&a, &["--bundle", "--pid-file"]).unwrap();
        assert_eq!(f.value("bundle"), Some("/b"));
        assert_eq!(f.value("pid-file"), Some("/p"));
        assert!(f.has(&["detach"]));
        assert_eq!(f.positional, vec!["id", "x"]);
    }

    #[test]
    fn time_format() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.starts_with("20"));
    }
}
