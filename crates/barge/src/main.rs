//! The `barge` binary: dispatches to the daemon, the per-container monitor, the embedded OCI
//! runtime (`barge runtime`, runc-compatible), or the CLI.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("daemon") => barge_daemon::main(&args[2..]),
        Some("monitor") => barge_container::monitor::main(&args[2..]),
        // The embedded OCI runtime, run by the (single-threaded) monitor like runc.
        Some("runtime") => barge_runtime::main(&args[2..]),
        _ => barge_cli::main(&args),
    };
    std::process::exit(code);
}
