//! The command-line grammar (docker's commands and flags).

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::client::DEFAULT_HOST;
use crate::opts::ContainerOpts;

#[derive(Debug, Parser)]
#[command(
    name = "barge",
    about = "A self-sufficient runtime for containers",
    override_usage = "barge [OPTIONS] COMMAND",
    disable_version_flag = true,
    subcommand_help_heading = "Commands",
    subcommand_value_name = "COMMAND"
)]
pub struct Cli {
    /// Daemon socket to connect to
    #[arg(
        short = 'H',
        long,
        env = "BARGE_HOST",
        hide_env_values = true,
        default_value = DEFAULT_HOST,
        value_name = "string"
    )]
    pub host: String,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(
        short = 'l',
        long = "log-level",
        default_value = "info",
        value_name = "string",
        value_parser = ["debug", "info", "warn", "error", "fatal"]
    )]
    pub log_level: String,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// List containers
    #[command(alias = "list")]
    Ps(PsArgs),
    /// List images
    Images(ImagesArgs),
    /// Show the barge version information
    Version(VersionArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Return low-level information on barge objects
    Inspect(InspectArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Pause all processes within one or more containers
    Pause(crate::lifecycle::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(crate::lifecycle::PauseArgs),
    /// Rename a container
    Rename(crate::lifecycle::RenameArgs),
    /// Update configuration of one or more containers
    Update(crate::lifecycle::UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::lifecycle::StatsArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Load an image from a tar archive, an OCI layout directory or STDIN
    Load(LoadArgs),
    /// Build an image from a Dockerfile
    Build(crate::build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(crate::build::BuilderCmd),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Download an image from a registry
    Pull(crate::registry::PullArgs),
    /// Upload an image to a registry
    Push(crate::registry::PushArgs),
    /// Log in to a registry
    Login(crate::registry::LoginArgs),
    /// Log out from a registry
    Logout(crate::registry::LogoutArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage barge
    #[command(subcommand)]
    System(SystemCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(crate::network::NetworkCmd),
    /// List port mappings or a specific mapping for the container
    Port(crate::network::PortArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(ContainerArg),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(crate::volume::VolumeCmd),
    /// Define and run multi-container applications (compose files)
    Compose(crate::compose::ComposeArgs),
    /// Start the barge daemon (see barge daemon --help)
    Daemon {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list", alias = "ps")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(FormatNamesArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove", alias = "rmi")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Load an image from a tar archive, an OCI layout directory or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Download an image from a registry
    Pull(crate::registry::PullArgs),
    /// Upload an image to a registry
    Push(crate::registry::PushArgs),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more containers
    Inspect(FormatNamesArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Pause all processes within one or more containers
    Pause(crate::lifecycle::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(crate::lifecycle::PauseArgs),
    /// Rename a container
    Rename(crate::lifecycle::RenameArgs),
    /// Update configuration of one or more containers
    Update(crate::lifecycle::UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(crate::lifecycle::StatsArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(ContainerArg),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
}

#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Show barge disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Debug, Args)]
#[command(
    override_usage = "barge cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-
        barge cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
    after_help = "Use '-' as the source to read a tar archive from stdin\nand extract it to a directory destination in a container.\nUse '-' as the destination to stream a tar archive of a\ncontainer source to stdout."
)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    pub src: String,
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    pub dst: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge diff CONTAINER")]
pub struct ContainerArg {
    pub container: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge export [OPTIONS] CONTAINER")]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long, value_name = "string")]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long, value_name = "string")]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub pause: bool,
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge attach [OPTIONS] CONTAINER")]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "bool")]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge system df [OPTIONS]")]
pub struct DfArgs {
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge system prune [OPTIONS]")]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "barge run [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    override_usage = "barge create [OPTIONS] IMAGE [COMMAND] [ARG...]"
)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge start [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge stop [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "int")]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long, value_name = "string")]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge kill [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, value_name = "string")]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge rm [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge ps [OPTIONS]")]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", value_name = "int")]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge logs [OPTIONS] CONTAINER")]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all", value_name = "string")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. "42m")
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long, value_name = "string")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// The container, then the command and its arguments (flags end at the container)
    #[arg(
        required = true,
        value_name = "CONTAINER COMMAND [ARG...]",
        num_args = 2..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge inspect [OPTIONS] NAME|ID [NAME|ID...]")]
pub struct InspectArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Return JSON for specified type
    #[arg(long = "type", value_name = "string", value_parser = ["container", "image", "volume"])]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct FormatNamesArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge top CONTAINER [ps OPTIONS]")]
pub struct TopArgs {
    pub container: String,
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge images [OPTIONS] [REPOSITORY[:TAG]]")]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge history [OPTIONS] IMAGE")]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, value_name = "bool")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    pub image: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge rmi [OPTIONS] IMAGE [IMAGE...]")]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones (images only)
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge load [OPTIONS]")]
pub struct LoadArgs {
    /// Read from tar archive file (or OCI image layout directory), instead of STDIN
    #[arg(short, long, value_name = "string")]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
    /// Load only the given platform variant (e.g. "linux/amd64"); "all" keeps image indexes
    /// with every platform (barge extension; `push` then pushes the index)
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge save [OPTIONS] IMAGE [IMAGE...]")]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    pub output: Option<String>,
    /// Archive format ("docker" or "oci"; barge extension)
    #[arg(long, value_name = "string", value_parser = ["docker", "oci"])]
    pub format: Option<String>,
    /// Save only the given platform variant (e.g. "linux/amd64")
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, value_name = "string")]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long, value_name = "string")]
    pub platform: Option<String>,
    #[arg(value_name = "file|URL|-")]
    pub source: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "barge events [OPTIONS]")]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long, value_name = "string")]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long, value_name = "string")]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
}
