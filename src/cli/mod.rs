//! The `herald` command line: `serve`, `check`, `explain` and `deliveries`.

mod check;
mod deliveries;
mod explain;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a configuration that does not load, or for a usage error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status for a payload that would be rejected, or an operation that failed.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Notification gateway: webhooks in, e-mail, SMS and webhooks out"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: receive webhooks and deliver the messages they produce.
    Serve(crate::server::ServeArgs),
    /// Load and check the whole configuration, print every error, and exit non-zero on any.
    Check(ConfigArgs),
    /// Show what herald would do with a payload: schema result, rules, rendered messages.
    /// Nothing is sent or stored.
    Explain(explain::ExplainArgs),
    /// Inspect and manage deliveries in the outbox: list, show, retry, cancel.
    Deliveries(deliveries::DeliveriesArgs),
}

/// Where the configuration lives.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Folder holding rules.yaml, templates/ and schemas/.
    #[arg(long, env = "HERALD_CONFIG_DIR", default_value = ".")]
    pub config_dir: PathBuf,
    /// Folder for the outbox database and the file outbox; relative file-channel folders
    /// resolve against it.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => crate::server::run(args),
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Deliveries(args) => deliveries::run(&args),
    }
}
