//! `rapidproctl`'s command line, as clap definitions: parsed by the
//! binary (`src/bin/rapidproctl.rs`) and rendered into man pages by
//! [`crate::manpages`], so `--help` and `man rapidproctl` say the same.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use rapidpro_ha::ctl::{health, pgdump, rebuild, switchover};

#[derive(Parser)]
#[command(
    name = "rapidproctl",
    version,
    about = "Status, checks and planned operations of a rapidpro-ha cluster (run as root on a node)"
)]
pub struct Cli {
    /// Print a JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log each command run and other details to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Every node: role, health, VIP, PostgreSQL and Redis replication, app, failures.
    Status,
    /// One node (default: this one), with "transient" when an operation runs there.
    State {
        /// The node.
        node: Option<String>,
    },
    /// This node's PostgreSQL replication: role, timeline, LSNs, WAL senders and receiver.
    Postgres,
    /// Validate the configuration: the stack resource, validate-all here, the alerts and their servers.
    Check,
    /// This node's CPU, memory, load, disks, network and SMS gateway port.
    Health(HealthArgs),
    /// Dump the primary's databases to FILE.
    Pgdump(PgdumpArgs),
    /// Move the Promoted role to NODE (default: the one streaming standby), with safety checks.
    Switchover {
        /// The target node.
        node: Option<String>,
        /// Longest wait for the move and for the cluster to settle, in seconds.
        #[arg(long, default_value_t = switchover::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
        /// Only run the checks.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-clone NODE's standby from the primary (pg_basebackup); run it on NODE itself.
    Rebuild {
        /// The node to rebuild: this one, never the Promoted one.
        node: String,
        /// Delete the old data directory once the new copy streams (default: keep it, renamed
        /// PGDATA.rebuild-TIMESTAMP).
        #[arg(long)]
        discard: bool,
        /// Only check and print the plan: change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Longest wait for the instance to stop, then to stream again, in seconds.
        #[arg(long, default_value_t = rebuild::DEFAULT_TIMEOUT.as_secs())]
        timeout: u64,
        /// Longest time pg_basebackup may take, in seconds.
        #[arg(long, default_value_t = rebuild::DEFAULT_BACKUP_TIMEOUT.as_secs())]
        backup_timeout: u64,
    },
    /// Alerts: send a test email and SMS to every configured recipient.
    Alert {
        /// Send the test messages.
        #[arg(long, required = true)]
        test: bool,
    },
}

#[derive(clap::Args)]
pub struct HealthArgs {
    /// The SMS gateway's HTTP address to check, HOST:PORT (the old gateway used port 90).
    #[arg(long)]
    pub gateway: Option<String>,
    /// TCP connect timeout towards the gateway, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub gateway_timeout: f64,
    /// Publish the results as node health attributes (#health-*) for node-health-strategy.
    #[arg(long)]
    pub publish: bool,
    /// PostgreSQL data directory (default: the stack's pgdata).
    #[arg(long)]
    pub pgdata: Option<PathBuf>,
    /// Redis data directory (default: `dir` of the stack's redis_config).
    #[arg(long)]
    pub redis_dir: Option<PathBuf>,
    /// CPU busy % for yellow.
    #[arg(long, default_value_t = health::Thresholds::default().cpu_yellow)]
    pub cpu_yellow: f64,
    /// CPU busy % for red (default: never red, a 200 ms sample is a moment).
    #[arg(long)]
    pub cpu_red: Option<f64>,
    /// Memory available % below which yellow.
    #[arg(long, default_value_t = health::Thresholds::default().memory_yellow)]
    pub memory_yellow: f64,
    /// Memory available % below which red.
    #[arg(long, default_value_t = health::Thresholds::default().memory_red)]
    pub memory_red: f64,
    /// 5-minute load per core for yellow.
    #[arg(long, default_value_t = health::Thresholds::default().load_yellow)]
    pub load_yellow: f64,
    /// 5-minute load per core for red.
    #[arg(long, default_value_t = health::Thresholds::default().load_red)]
    pub load_red: f64,
    /// Disk free % below which yellow.
    #[arg(long, default_value_t = health::Thresholds::default().disk_yellow)]
    pub disk_yellow: f64,
    /// Disk free % below which red.
    #[arg(long, default_value_t = health::Thresholds::default().disk_red)]
    pub disk_red: f64,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// SQL, for psql.
    Plain,
    /// pg_dump's archive, for pg_restore (needs --database).
    Custom,
}

#[derive(clap::Args)]
pub struct PgdumpArgs {
    /// The output file.
    pub file: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Dump this database only (pg_dump); default: every database (pg_dumpall).
    #[arg(long)]
    pub database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Plain)]
    pub format: Format,
    /// Role for a dump through primary_host (default: the stack's system_user).
    #[arg(long)]
    pub user: Option<String>,
    /// Longest time the dump may take, in seconds.
    #[arg(long, default_value_t = pgdump::DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// Dump this node's own server, even a standby (consistent as of its replay).
    #[arg(long)]
    pub local: bool,
}
