//! `slurm-ckpt`: the helper the SPANK plugin runs (supervise, relay, cleanup) and the admin/user CLI
//! (status). Thin: the work is in the library; one module per subcommand under cli/.
mod cli;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "slurm-ckpt",
    version,
    about = "Checkpoint/restart of MPI jobs in per-rank Docker containers under Slurm"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// (plugin, root) Run and supervise one rank's container.
    Supervise(Box<cli::supervise::Args>),
    /// (plugin, job user) Be the Slurm task of one rank: relay output and signals.
    Relay(cli::relay::Args),
    /// (epilog, root) Remove every container and runtime file of a job on this node.
    Cleanup(cli::cleanup::Args),
    /// Show the rank containers of running jobs (run by a user: their own jobs' checkpoint
    /// record, from their index).
    Status(cli::status::Args),
    /// Checkpoint a running container job (and optionally requeue it).
    Checkpoint(cli::checkpoint::Args),
    /// Could a node restore a job's newest checkpoint? (CPU, page size; versions when strict)
    CheckRestore(cli::check_restore::Args),
    /// List checkpoint generations (run by a user: their own jobs' only, from their index in
    /// <ckpt_root>/.users/<user>).
    List(cli::list::ListArgs),
    /// Remove checkpoints of jobs Slurm no longer knows; prune old generations.
    Gc(cli::list::GcArgs),
    /// (supervisor, root) Watch over one checkpoint of a rank: thaw it if the supervisor dies.
    #[command(hide = true)]
    Guard {
        #[command(flatten)]
        args: slurm_ckpt::guard::GuardArgs,
        /// The job's log file.
        #[arg(long)]
        log: Option<std::path::PathBuf>,
    },
    /// (supervisor, root → job user) Resolve paths a job names with the user's own credentials.
    #[command(hide = true)]
    CheckPaths(cli::check_paths::Args),
    /// (supervisor or gc, root → job user) Write or forget entries of the user's own checkpoint
    /// index.
    #[command(hide = true)]
    WriteIndex(cli::write_index::Args),
    /// Check container images against the rank-container requirements.
    #[command(subcommand)]
    Image(cli::image::ImageCmd),
    /// Set up this node for rank containers (daemon.json, remap user, id ranges, CRIU config,
    /// plugstack include), or with --check report what it lacks.
    NodeSetup(cli::node_setup::Args),
    /// Write the manual pages (scripts/package).
    #[command(hide = true)]
    Man(cli::man::Args),
}

fn main() {
    let cli = Cli::parse();
    if matches!(
        cli.cmd,
        Cmd::Status(_) | Cmd::List(_) | Cmd::Gc(_) | Cmd::Man(_)
    ) {
        slurm_ckpt::fdio::quiet_on_closed_stdout();
    }
    let code = match cli.cmd {
        Cmd::Supervise(a) => cli::supervise::main(*a),
        Cmd::Relay(a) => cli::relay::main(a),
        Cmd::Cleanup(a) => cli::cleanup::main(a),
        Cmd::Status(a) => cli::status::main(a),
        Cmd::Checkpoint(a) => cli::checkpoint::main(a),
        Cmd::CheckRestore(a) => cli::check_restore::main(a),
        Cmd::List(a) => cli::list::list(a),
        Cmd::Gc(a) => cli::list::gc(a),
        Cmd::Image(c) => cli::image::main(c),
        Cmd::NodeSetup(a) => cli::node_setup::main(a),
        Cmd::Man(a) => cli::man::main(Cli::command(), a),
        Cmd::CheckPaths(a) => cli::check_paths::main(a),
        Cmd::WriteIndex(a) => cli::write_index::main(a),
        Cmd::Guard { args, log } => cli::guard::main(args, log),
    };
    std::process::exit(code);
}
