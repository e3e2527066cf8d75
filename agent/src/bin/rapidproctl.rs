//! `rapidproctl`, the operator's tool: run as root on a cluster node.
//!
//! Only the command line lives here; every command is a function of
//! `rapidpro_ha::ctl`, which also documents the JSON fields and exit codes
//! (0 fine, 1 error, 2 usage, 3 "no": refused, failed check, red health).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rapidpro_ha::ctl::{self, health, pgdump, switchover};
use rapidpro_ha::deadline::Deadline;

#[derive(Parser)]
#[command(
    name = "rapidproctl",
    version,
    about = "Status, checks and planned operations of a rapidpro-ha cluster (run as root on a node)"
)]
struct Cli {
    /// Print a JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log each command run and other details to stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Alerts: send a test email and SMS to every configured recipient.
    Alert {
        /// Send the test messages.
        #[arg(long, required = true)]
        test: bool,
    },
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The SMS gateway's HTTP address to check, HOST:PORT (the old gateway used port 90).
    #[arg(long)]
    gateway: Option<String>,
    /// TCP connect timeout towards the gateway, in seconds.
    #[arg(long, default_value_t = 2.0)]
    gateway_timeout: f64,
    /// Publish the results as node health attributes (#health-*) for node-health-strategy.
    #[arg(long)]
    publish: bool,
    /// PostgreSQL data directory (default: the stack's pgdata).
    #[arg(long)]
    pgdata: Option<PathBuf>,
    /// Redis data directory (default: `dir` of the stack's redis_config).
    #[arg(long)]
    redis_dir: Option<PathBuf>,
    /// CPU busy % for yellow.
    #[arg(long, default_value_t = health::Thresholds::default().cpu_yellow)]
    cpu_yellow: f64,
    /// CPU busy % for red (default: never red, a 200 ms sample is a moment).
    #[arg(long)]
    cpu_red: Option<f64>,
    /// Memory available % below which yellow.
    #[arg(long, default_value_t = health::Thresholds::default().memory_yellow)]
    memory_yellow: f64,
    /// Memory available % below which red.
    #[arg(long, default_value_t = health::Thresholds::default().memory_red)]
    memory_red: f64,
    /// 5-minute load per core for yellow.
    #[arg(long, default_value_t = health::Thresholds::default().load_yellow)]
    load_yellow: f64,
    /// 5-minute load per core for red.
    #[arg(long, default_value_t = health::Thresholds::default().load_red)]
    load_red: f64,
    /// Disk free % below which yellow.
    #[arg(long, default_value_t = health::Thresholds::default().disk_yellow)]
    disk_yellow: f64,
    /// Disk free % below which red.
    #[arg(long, default_value_t = health::Thresholds::default().disk_red)]
    disk_red: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// SQL, for psql.
    Plain,
    /// pg_dump's archive, for pg_restore (needs --database).
    Custom,
}

#[derive(clap::Args)]
struct PgdumpArgs {
    /// The output file.
    file: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Dump this database only (pg_dump); default: every database (pg_dumpall).
    #[arg(long)]
    database: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Plain)]
    format: Format,
    /// Role for a dump through primary_host (default: the stack's system_user).
    #[arg(long)]
    user: Option<String>,
    /// Longest time the dump may take, in seconds.
    #[arg(long, default_value_t = pgdump::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Dump this node's own server, even a standby (consistent as of its replay).
    #[arg(long)]
    local: bool,
}

fn main() {
    let cli = Cli::parse();
    ctl::init_logging(cli.verbose);
    let deadline = Deadline::after(ctl::DEFAULT_DEADLINE);
    let result = match cli.command {
        Command::Status => ctl::status::status(&deadline),
        Command::State { node } => ctl::status::state(node.as_deref(), &deadline),
        Command::Postgres => ctl::postgres::postgres(&deadline),
        Command::Check => ctl::check::run(&deadline),
        Command::Health(a) => health::health(
            &health::Options {
                thresholds: health::Thresholds {
                    cpu_yellow: a.cpu_yellow,
                    cpu_red: a.cpu_red,
                    memory_yellow: a.memory_yellow,
                    memory_red: a.memory_red,
                    load_yellow: a.load_yellow,
                    load_red: a.load_red,
                    disk_yellow: a.disk_yellow,
                    disk_red: a.disk_red,
                },
                gateway: a.gateway,
                gateway_timeout: Duration::from_secs_f64(a.gateway_timeout.max(0.001)),
                pgdata: a.pgdata,
                redis_dir: a.redis_dir,
                publish: a.publish,
                ..health::Options::default()
            },
            &deadline,
        ),
        Command::Pgdump(a) => pgdump::pgdump(&pgdump::Options {
            file: a.file,
            force: a.force,
            database: a.database,
            format: match a.format {
                Format::Plain => pgdump::Format::Plain,
                Format::Custom => pgdump::Format::Custom,
            },
            user: a.user,
            timeout: Duration::from_secs(a.timeout),
            local: a.local,
        }),
        Command::Switchover {
            node,
            timeout,
            dry_run,
        } => switchover::switchover(node.as_deref(), Duration::from_secs(timeout), dry_run),
        Command::Alert { test: _ } => ctl::alerts::test(&deadline),
    };
    std::process::exit(ctl::print(&result, cli.json));
}
