//! The `barge` binary: dispatches to the daemon, the cluster server (`barge server`), a
//! joining node (`barge agent`), the
//! per-container monitor, the embedded OCI runtime (`barge runtime`, runc-compatible), or the
//! CLI.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("daemon") => barge_daemon::main(&args[2..]),
        // The cluster server (Kubernetes API) and, unless --disable-agent, the engine.
        Some("server") => barge_server::main(&args[2..]),
        // A node joining a server's cluster: its engine, node agent and Ingress proxy.
        Some("agent") => barge_server::agent::main(&args[2..]),
        // The monitor runs the embedded runtime's create/start/delete in-process.
        Some("monitor") => barge_container::monitor::main_with(
            &args[2..],
            Some(barge_container::monitor::EmbeddedRuntime {
                create: barge_runtime::create_in_process,
                start: barge_runtime::start_in_process,
                delete: barge_runtime::delete_in_process,
            }),
        ),
        // The embedded OCI runtime, run by the (single-threaded) monitor like runc.
        Some("runtime") => barge_runtime::main(&args[2..]),
        _ => barge_cli::main(&args),
    };
    std::process::exit(code);
}
