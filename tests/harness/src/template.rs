//! One initialised, cleanly shut down PostgreSQL 15 data directory per test
//! process, copied (`cp -a`) into every node.
//!
//! `initdb` plus a start and stop takes a few seconds; copying takes a
//! fraction of one. Because the template was shut down cleanly, a cold copy
//! of it is also a valid base for a standby: every node shares its system
//! identifier and timeline 1.
//!
//! The template lives in `/tmp/rapidpro-ha-tests/template-<pid>/`. A `static`
//! is never dropped, so the directory outlives the process; the next process
//! that builds a template removes those whose process is gone, and with them
//! whatever a killed test process left behind (see `remove_stale_dirs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::{as_user, clean_command, must};
use crate::dir::{append, chown_to, make_dir, write_file};
use crate::proc::{self, Target};
use crate::{
    free_port,
    workload::{WRITER_PASSWORD, WRITER_USER},
    LOOPBACK, PG_BINDIR, PG_USER, REDIS_USER, REPL_PASSWORD, REPL_USER, TEST_ROOT,
};

/// Settings appended to the template's `postgresql.conf`: what streaming
/// replication and `pg_rewind` need (`wal_log_hints`, although data checksums
/// already imply it), plus small and fast settings for tests.
const POSTGRESQL_CONF: &str = "
# rapidpro-ha test harness
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_log_hints = on
fsync = off
shared_buffers = 16MB
max_connections = 30
wal_keep_size = 256MB
hot_standby_feedback = on
logging_collector = off
";

/// The whole `pg_hba.conf`: peer for local sockets, passwords on loopback.
const PG_HBA_CONF: &str = "\
local all all peer
host all all 127.0.0.1/32 scram-sha-256
host replication all 127.0.0.1/32 scram-sha-256
";

/// Run once in the template: the replication role with the grants
/// `pg_rewind` needs as a non-superuser (PostgreSQL docs, pg_rewind, "Notes")
/// and `pg_monitor` (rapidproctl reads `pg_stat_replication` with it),
/// the table the tests write to, and the stand-in app's tables (`app/`):
/// `incoming_sms` and `outbox` (its worker may only mark rows sent).
fn setup_sql() -> String {
    format!(
        "CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{REPL_PASSWORD}';
GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO {REPL_USER};
GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO {REPL_USER};
GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO {REPL_USER};
GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO {REPL_USER};
GRANT pg_monitor TO {REPL_USER};
CREATE TABLE public.sms (id bigserial primary key, body text);
CREATE ROLE {WRITER_USER} LOGIN PASSWORD '{WRITER_PASSWORD}';
GRANT SELECT, INSERT ON public.sms TO {WRITER_USER};
GRANT USAGE ON SEQUENCE public.sms_id_seq TO {WRITER_USER};
CREATE TABLE public.incoming_sms (id text primary key, sender text not null, body text not null,
  received_at timestamptz not null default now(), received_by text);
CREATE TABLE public.outbox (id bigserial primary key, recipient text not null, body text not null,
  queued_at timestamptz not null default now(), sent_at timestamptz, sent_by text);
GRANT SELECT, INSERT ON public.incoming_sms TO {WRITER_USER};
GRANT SELECT, INSERT, UPDATE (sent_at, sent_by) ON public.outbox TO {WRITER_USER};
GRANT USAGE ON SEQUENCE public.outbox_id_seq TO {WRITER_USER};"
    )
}

const TIMEOUT: Duration = Duration::from_secs(120);

static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The template data directory, built on first use. A failure is remembered,
/// so every test reports it at once instead of each retrying `initdb`.
#[track_caller]
pub(crate) fn pgdata() -> &'static Path {
    let built = TEMPLATE.get_or_init(|| {
        std::panic::catch_unwind(build).map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string())
        })
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("cannot build the PostgreSQL template data directory: {e}"),
    }
}

/// Checks what the harness needs, so a missing package is a clear failure.
pub(crate) fn preflight() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the rapidpro-ha tests must run as root (like the agent under Pacemaker)"
    );
    for bin in ["initdb", "pg_ctl", "postgres", "psql", "pg_rewind"] {
        let p = Path::new(PG_BINDIR).join(bin);
        assert!(
            p.exists(),
            "{} is missing: install postgresql-15",
            p.display()
        );
    }
    for p in [crate::REDIS_SERVER, crate::REDIS_CLI] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: install redis-server"
        );
    }
    crate::cmd::lookup_user(PG_USER);
    crate::cmd::lookup_user(REDIS_USER);
}

fn build() -> PathBuf {
    preflight();
    let root = Path::new(TEST_ROOT);
    make_dir(root, 0o755);
    remove_stale_dirs(root);

    let dir = root.join(format!("template-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("cannot remove {}: {e}", dir.display()));
    }
    make_dir(&dir, 0o755);
    let pgdata = dir.join("pgdata");
    let sock = dir.join("sock");
    let log = dir.join("postgresql.log");
    for d in [&pgdata, &sock] {
        make_dir(d, 0o700);
        chown_to(d, PG_USER);
    }
    write_file(&log, "", Some(PG_USER), 0o644);

    let mut initdb = pg_command("initdb");
    initdb.arg("-D").arg(&pgdata).args([
        "-U",
        PG_USER,
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--data-checksums",
        // Independent of the developer's locale (the environment is cleared).
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    ]);
    must(initdb, TIMEOUT);
    append(&pgdata.join("postgresql.conf"), POSTGRESQL_CONF);
    write_file(
        &pgdata.join("pg_hba.conf"),
        PG_HBA_CONF,
        Some(PG_USER),
        0o600,
    );

    let port = free_port();
    let mut start = pg_command("pg_ctl");
    start
        .arg("-D")
        .arg(&pgdata)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o"])
        .arg(format!("-p {port} -k {} -h {LOOPBACK}", sock.display()))
        .arg("start");
    let mut running = Running {
        pgdata: pgdata.clone(),
        pid: None,
    };
    if let Err(e) = crate::cmd::run_command(start, TIMEOUT)
        .map_err(|e| e.to_string())
        .and_then(|o| o.into_result())
    {
        running.pid = proc::read_pidfile(&pgdata.join("postmaster.pid"));
        let log = fs::read_to_string(&log).unwrap_or_default();
        panic!("{e}\n--- {}\n{log}", dir.join("postgresql.log").display());
    }
    running.pid = proc::read_pidfile(&pgdata.join("postmaster.pid"));

    let mut psql = pg_command("psql");
    psql.args(["-XAtq", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(&sock)
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(setup_sql());
    must(psql, TIMEOUT);

    let mut stop = pg_command("pg_ctl");
    stop.arg("-D")
        .arg(&pgdata)
        .args(["-m", "fast", "-w", "-t", "60", "stop"]);
    must(stop, TIMEOUT);
    running.finish();
    pgdata
}

/// A command for `PG_BINDIR/<bin>` run as the postgres user.
fn pg_command(bin: &str) -> std::process::Command {
    let mut cmd = clean_command(Path::new(PG_BINDIR).join(bin));
    as_user(&mut cmd, PG_USER);
    cmd
}

/// The template's postmaster, by PID. `finish` (after `pg_ctl stop`) checks
/// that it is gone and reaped; dropping it unfinished (a panic during setup)
/// stops it by PID.
struct Running {
    pgdata: PathBuf,
    pid: Option<i32>,
}

impl Running {
    fn finish(mut self) {
        let left = self.stop();
        if let Some(pid) = self.pid.take() {
            proc::wait_reaped(pid, Duration::from_secs(5));
        }
        assert!(left.is_empty(), "template postmaster: {}", left.join("; "));
    }

    fn stop(&self) -> Vec<String> {
        match self.pid {
            Some(pid) if proc::is_postgres_of(pid, &self.pgdata) => {
                let target = Target {
                    label: "template postmaster".into(),
                    pid,
                    polite: nix::sys::signal::Signal::SIGINT,
                };
                proc::stop_all(&[target], Duration::from_secs(5))
            }
            _ => Vec::new(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for line in self.stop() {
            eprintln!("harness: {line}");
        }
    }
}

/// Cleans up after test processes that died without running their
/// teardown (killed by a signal, SIGPIPE on a closed output, `panic=abort`):
/// for each `template-<pid>` or `<pid>-<n>-<name>` directory whose process no
/// longer runs, stops every process still working inside it (by PID, found
/// through its working directory), then removes the directory, except that
/// test directories are kept when `RAPIDPRO_KEEP_TEST_DIRS` is set.
fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let keep = std::env::var_os(crate::KEEP_DIRS_ENV).is_some();
    let me = std::process::id() as i32;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let (owner, is_template) = match name.strip_prefix("template-") {
            Some(pid) => (pid.parse::<i32>().ok(), true),
            None => (name.split('-').next().and_then(|p| p.parse().ok()), false),
        };
        let Some(pid) = owner else {
            continue;
        };
        if pid == me || proc::alive(pid) {
            continue;
        }
        let dir = entry.path();
        let strays: Vec<Target> = proc::all_stats()
            .into_iter()
            .filter(|s| !s.is_zombie())
            .filter(|s| proc::cwd(s.pid).is_some_and(|c| c.starts_with(&dir)))
            .map(|s| Target {
                label: format!("{} left in {}", s.comm, dir.display()),
                pid: s.pid,
                polite: nix::sys::signal::Signal::SIGTERM,
            })
            .collect();
        for t in &strays {
            eprintln!("harness: stopping {} (pid {})", t.label, t.pid);
        }
        for line in proc::stop_all(&strays, Duration::from_secs(5)) {
            eprintln!("harness: {line}");
        }
        if is_template || !keep {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
