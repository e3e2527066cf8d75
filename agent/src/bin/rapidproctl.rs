//! `rapidproctl`, the operator's tool: run as root on a cluster node.
//!
//! Only the command line lives here; every command is a function of
//! `rapidpro_ha::ctl`, which also documents the JSON fields and exit codes
//! (0 fine, 1 error, 2 usage, 3 "no": refused, failed check, red health).

#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Parser;
use rapidpro_ha::cluster::{Cluster, CIB_FILE_ENV};
use rapidpro_ha::ctl::{self, health, pgdump, rebuild, switchover};
use rapidpro_ha::deadline::Deadline;
use rapidpro_tools::cli::{Cli, Command, Format};

fn main() {
    let cli = Cli::parse();
    ctl::init_logging(cli.verbose);
    let deadline = Deadline::after(ctl::DEFAULT_DEADLINE);
    // The one place rapidproctl reads `CIB_file`: with it, the commands that
    // read the CIB read that file, as Pacemaker's own tools do.
    let cluster = Cluster::from_cib_env(std::env::var_os(CIB_FILE_ENV).as_deref());
    let cluster = &cluster;
    let result = match cli.command {
        Command::Status => ctl::status::status(cluster, &deadline),
        Command::State { node } => ctl::status::state(cluster, node.as_deref(), &deadline),
        Command::Postgres => ctl::postgres::postgres(cluster, &deadline),
        Command::Check => ctl::check::run(cluster, &deadline),
        Command::Health(a) => health::health(
            cluster,
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
        Command::Pgdump(a) => pgdump::pgdump(
            cluster,
            &pgdump::Options {
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
            },
        ),
        Command::Switchover {
            node,
            timeout,
            dry_run,
        } => switchover::switchover(
            cluster,
            node.as_deref(),
            Duration::from_secs(timeout),
            dry_run,
        ),
        Command::Rebuild {
            node,
            discard,
            dry_run,
            timeout,
            backup_timeout,
        } => rebuild::rebuild(
            cluster,
            &node,
            &rebuild::Options {
                discard,
                dry_run,
                timeout: Duration::from_secs(timeout),
                backup_timeout: Duration::from_secs(backup_timeout),
            },
        ),
        Command::Alert { test: _ } => ctl::alerts::test(cluster, &deadline),
    };
    std::process::exit(ctl::print(&result, cli.json));
}
