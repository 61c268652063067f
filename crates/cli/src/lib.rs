//! barge's command line: every command is a client of the Docker Engine API served by
//! `barge daemon` (or any Docker-compatible daemon).
//!
//! Exit codes follow docker's: 0 on success, 1 for errors reported by the daemon or
//! the client, 125 for usage errors and for `run`/`create` failures before the
//! container starts, 126/127 when the container's command cannot be invoked/found,
//! and otherwise the container's (or exec's) own exit code.

mod build;
mod build_progress;
mod cli;
pub mod client;
mod compose;
mod container;
pub mod format;
mod fsops;
mod image;
mod lifecycle;
mod network;
pub mod opts;
mod registry;
pub mod stream;
mod system;
mod volume;

use std::fmt;
use std::io::{IsTerminal, Write};

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Cmd, ContainerCmd, ImageCmd, SystemCmd};
use client::Client;

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub struct StatusError {
    /// The process exit code.
    pub code: i32,
    /// What to print on stderr (nothing if `None`).
    pub message: Option<String>,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for StatusError {}

/// Shorthand for a [`StatusError`] with a message.
pub(crate) fn status(code: i32, message: impl Into<String>) -> anyhow::Error {
    StatusError {
        code,
        message: Some(message.into()),
    }
    .into()
}

/// The exit code docker uses when starting a container's command fails.
pub fn start_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied")
        || message.contains("not executable")
        || message.contains("is a directory")
    {
        126
    } else {
        125
    }
}

/// Prints `err` like docker does and returns the exit code.
fn report(err: &anyhow::Error) -> i32 {
    if let Some(s) = err.downcast_ref::<StatusError>() {
        if let Some(m) = &s.message {
            eprintln!("{m}");
        }
        return s.code;
    }
    eprintln!("{err:#}");
    1
}

/// Asks a yes/no question on the terminal; `false` when stdin is not a terminal.
pub(crate) fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Commands listed first in `barge --help`, like docker's "Common Commands".
const COMMON: [&str; 12] = [
    "run", "exec", "ps", "build", "pull", "push", "images", "login", "logout", "version", "info",
    "daemon",
];
/// Command groups ("Management Commands").
const MANAGEMENT: [&str; 6] = [
    "builder",
    "container",
    "image",
    "network",
    "system",
    "volume",
];

/// The root command with docker's grouped help layout.
fn command() -> clap::Command {
    let cmd = Cli::command();
    let list = |filter: &dyn Fn(&str) -> bool| -> String {
        let mut out = String::new();
        let mut subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| filter(c.get_name()))
            .collect();
        subs.sort_by_key(|c| {
            let common = COMMON.iter().position(|n| *n == c.get_name());
            (common.unwrap_or(usize::MAX), c.get_name().to_string())
        });
        for sub in subs {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.push_str(&format!("  {:<11} {about}\n", sub.get_name()));
        }
        out
    };
    let common = list(&|n| COMMON.contains(&n));
    let management = list(&|n| MANAGEMENT.contains(&n));
    let others = list(&|n| !COMMON.contains(&n) && !MANAGEMENT.contains(&n));
    let template = format!(
        "Usage:  barge [OPTIONS] COMMAND\n\n{{about}}\n\nCommon Commands:\n{common}\n\
         Management Commands:\n{management}\nCommands:\n{others}\nGlobal Options:\n{{options}}\n\nRun 'barge COMMAND --help' for more information on a command.\n"
    );
    cmd.help_template(template).disable_help_subcommand(true)
}

/// A closed stdout (`barge images -q | head -1`) ends the CLI quietly with 141 (128 +
/// SIGPIPE), as docker's does — Go exits on EPIPE writing to stdout — instead of `print!`'s
/// panic and backtrace. Other panics keep the default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

/// Entry point: `args` is the full argv (`args[0]` = "barge"). Returns the exit code.
/// Invoked as `docker-compose`, barge is `barge compose`.
pub fn main(args: &[String]) -> i32 {
    quiet_on_closed_stdout();
    let hyphenated = args.first().is_some_and(|a| {
        std::path::Path::new(a).file_name() == Some(std::ffi::OsStr::new("docker-compose"))
    });
    let rewritten: Vec<String>;
    let args = if hyphenated {
        rewritten = ["barge", "compose"]
            .into_iter()
            .map(str::to_string)
            .chain(args[1..].iter().cloned())
            .collect();
        &rewritten[..]
    } else {
        args
    };
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            return code;
        }
    };
    if cli.version {
        println!("barge version {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let Some(cmd) = cli.cmd else {
        let _ = command().print_help();
        return 0;
    };
    if let Cmd::Compose(args) = cmd {
        return match compose::run(args, &cli.host) {
            Ok(code) => code,
            Err(e) => report(&e),
        };
    }
    if let Cmd::Daemon { .. } = cmd {
        eprintln!("barge daemon is handled by the barge binary; run `barge daemon --help`");
        return 125;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = runtime.block_on(dispatch(&cli.host, cmd));
    // Stdin reader threads may still be blocked in read(2): don't wait for them.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

async fn connect(host: &str) -> anyhow::Result<Client> {
    let mut client = Client::new(host)?;
    client.negotiate().await?;
    Ok(client)
}

async fn dispatch(host: &str, cmd: Cmd) -> anyhow::Result<i32> {
    if let Cmd::Version(args) = &cmd {
        return system::version(host, args).await;
    }
    let client = connect(host).await?;
    let c = &client;
    match cmd {
        Cmd::Run(a) => container::run(c, a).await,
        Cmd::Create(a) => container::create(c, a).await,
        Cmd::Start(a) => container::start(c, a).await,
        Cmd::Stop(a) => container::stop(c, a).await,
        Cmd::Kill(a) => container::kill(c, a).await,
        Cmd::Restart(a) => container::restart(c, a).await,
        Cmd::Rm(a) => container::rm(c, a).await,
        Cmd::Ps(a) => container::ps(c, a).await,
        Cmd::Logs(a) => container::logs(c, a).await,
        Cmd::Exec(a) => container::exec(c, a).await,
        Cmd::Inspect(a) => system::inspect(c, a).await,
        Cmd::Wait(a) => container::wait(c, a).await,
        Cmd::Top(a) => container::top(c, a).await,
        Cmd::Pause(a) => lifecycle::pause(c, a).await,
        Cmd::Unpause(a) => lifecycle::unpause(c, a).await,
        Cmd::Rename(a) => lifecycle::rename(c, a).await,
        Cmd::Update(a) => lifecycle::update(c, a).await,
        Cmd::Stats(a) => lifecycle::stats(c, a).await,
        Cmd::Images(a) => image::images(c, a).await,
        Cmd::History(a) => image::history(c, a).await,
        Cmd::Tag(a) => image::tag(c, a).await,
        Cmd::Rmi(a) => image::rmi(c, a).await,
        Cmd::Load(a) => image::load(c, a).await,
        Cmd::Build(a) => build::build(c, a).await,
        Cmd::Builder(sub) => build::builder(c, sub).await,
        Cmd::Network(sub) => network::network(c, sub).await,
        Cmd::Port(a) => network::port(c, a).await,
        Cmd::Save(a) => image::save(c, a).await,
        Cmd::Import(a) => image::import(c, a).await,
        Cmd::Events(a) => system::events(c, a).await,
        Cmd::Pull(a) => registry::pull(c, a).await,
        Cmd::Push(a) => registry::push(c, a).await,
        Cmd::Login(a) => registry::login(c, a).await,
        Cmd::Logout(a) => registry::logout(c, a).await,
        Cmd::Info(a) => system::info(c, a).await,
        Cmd::Cp(a) => fsops::cp(c, a).await,
        Cmd::Diff(a) => fsops::diff(c, a).await,
        Cmd::Export(a) => fsops::export(c, a).await,
        Cmd::Commit(a) => fsops::commit(c, a).await,
        Cmd::Attach(a) => fsops::attach(c, a).await,
        Cmd::System(sub) => match sub {
            SystemCmd::Df(a) => fsops::df(c, a).await,
            SystemCmd::Prune(a) => fsops::system_prune(c, a).await,
            SystemCmd::Info(a) => system::info(c, a).await,
            SystemCmd::Events(a) => system::events(c, a).await,
        },
        Cmd::Image(sub) => match sub {
            ImageCmd::Ls(a) => image::images(c, a).await,
            ImageCmd::Inspect(a) => image::inspect(c, a).await,
            ImageCmd::History(a) => image::history(c, a).await,
            ImageCmd::Tag(a) => image::tag(c, a).await,
            ImageCmd::Rm(a) => image::rmi(c, a).await,
            ImageCmd::Prune(a) => image::prune(c, a).await,
            ImageCmd::Load(a) => image::load(c, a).await,
            ImageCmd::Save(a) => image::save(c, a).await,
            ImageCmd::Import(a) => image::import(c, a).await,
            ImageCmd::Pull(a) => registry::pull(c, a).await,
            ImageCmd::Push(a) => registry::push(c, a).await,
        },
        Cmd::Volume(sub) => volume::run(c, sub).await,
        Cmd::Container(sub) => match sub {
            ContainerCmd::Ls(a) => container::ps(c, a).await,
            ContainerCmd::Create(a) => container::create(c, a).await,
            ContainerCmd::Run(a) => container::run(c, a).await,
            ContainerCmd::Start(a) => container::start(c, a).await,
            ContainerCmd::Stop(a) => container::stop(c, a).await,
            ContainerCmd::Kill(a) => container::kill(c, a).await,
            ContainerCmd::Restart(a) => container::restart(c, a).await,
            ContainerCmd::Rm(a) => container::rm(c, a).await,
            ContainerCmd::Inspect(a) => container::inspect(c, a).await,
            ContainerCmd::Logs(a) => container::logs(c, a).await,
            ContainerCmd::Exec(a) => container::exec(c, a).await,
            ContainerCmd::Wait(a) => container::wait(c, a).await,
            ContainerCmd::Top(a) => container::top(c, a).await,
            ContainerCmd::Pause(a) => lifecycle::pause(c, a).await,
            ContainerCmd::Unpause(a) => lifecycle::unpause(c, a).await,
            ContainerCmd::Rename(a) => lifecycle::rename(c, a).await,
            ContainerCmd::Update(a) => lifecycle::update(c, a).await,
            ContainerCmd::Stats(a) => lifecycle::stats(c, a).await,
            ContainerCmd::Prune(a) => container::prune(c, a).await,
            ContainerCmd::Cp(a) => fsops::cp(c, a).await,
            ContainerCmd::Diff(a) => fsops::diff(c, a).await,
            ContainerCmd::Export(a) => fsops::export(c, a).await,
            ContainerCmd::Commit(a) => fsops::commit(c, a).await,
            ContainerCmd::Attach(a) => fsops::attach(c, a).await,
        },
        Cmd::Version(_) | Cmd::Daemon { .. } | Cmd::Compose(_) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::PsArgs;
    use clap::Parser;

    #[test]
    fn start_error_codes() {
        assert_eq!(
            start_error_code(r#"exec: "nope": executable file not found in $PATH"#),
            127
        );
        assert_eq!(start_error_code("open /x: no such file or directory"), 127);
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("something else broke"), 125);
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn usage_errors_exit_125_and_help_0() {
        assert_eq!(main(&argv("barge run --bogus img")), 125);
        assert_eq!(main(&argv("barge ps --nope")), 125);
        assert_eq!(main(&argv("barge --help")), 0);
        assert_eq!(main(&argv("barge run --help")), 0);
        assert_eq!(main(&argv("barge -v")), 0);
        // the hyphenated name is `barge compose`
        assert_eq!(main(&argv("/usr/bin/docker-compose version --short")), 0);
        assert_eq!(main(&argv("docker-compose nope")), 125);
    }

    #[test]
    fn exec_flags_stop_at_the_container() {
        let cli = Cli::try_parse_from(argv("barge exec -i -u 1000 web env -u X sh")).unwrap();
        let Some(Cmd::Exec(e)) = cli.cmd else {
            panic!("not exec")
        };
        assert!(e.interactive);
        assert_eq!(e.user.as_deref(), Some("1000"));
        assert_eq!(e.args, argv("web env -u X sh"));
        assert!(Cli::try_parse_from(argv("barge exec web")).is_err());
    }

    #[test]
    fn host_flag_and_subcommand_short_flags_coexist() {
        let cli = Cli::try_parse_from(argv("barge -H unix:///x.sock ps -l")).unwrap();
        assert_eq!(cli.host, "unix:///x.sock");
        assert!(matches!(
            cli.cmd,
            Some(Cmd::Ps(PsArgs { latest: true, .. }))
        ));
    }

    #[test]
    fn unreachable_daemon_exits_1() {
        let code = main(&argv("barge -H unix:///nonexistent/barge.sock ps"));
        assert_eq!(code, 1);
    }

    #[test]
    fn cli_definition_is_consistent() {
        command().debug_assert();
        let help = command().render_help().to_string();
        assert!(help.contains("Common Commands:\n  run "), "{help}");
        assert!(help.contains("Management Commands:\n  builder"), "{help}");
        assert!(help.contains("  container   Manage containers"), "{help}");
        assert!(
            help.contains("daemon      Start the barge daemon (see barge daemon --help)"),
            "{help}"
        );
        assert!(help.contains("-H, --host"), "{help}");
    }
}
