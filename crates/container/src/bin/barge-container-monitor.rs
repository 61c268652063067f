//! Stand-alone monitor entry (`barge-container-monitor monitor <config.json>`), the same as
//! `barge monitor ...`; used by this crate's integration tests so they do not need the full
//! `barge` binary.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("monitor") => barge_container::monitor::main(&args[2..]),
        _ => {
            eprintln!("usage: barge-container-monitor monitor <config.json>");
            2
        }
    };
    std::process::exit(code);
}
