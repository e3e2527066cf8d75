//! `rapidproctl`: the operator's tool, run as root on a cluster node.
//!
//! It answers the questions of the old recovery manual (who is primary,
//! where is the virtual IP, is replication flowing, take a dump, move the
//! primary) from what Pacemaker, PostgreSQL and Redis say, never from a
//! state file of its own. Each command is a function here returning an
//! [`Outcome`]: a JSON document with stable field names (`--json`), the same
//! facts as text for people, and a verdict. The binary
//! (`agent/src/bin/rapidproctl.rs`) only parses the command line, prints,
//! and maps the result to an exit code with [`exit_code`]:
//!
//! | exit | meaning |
//! |---|---|
//! | 0 | done; everything checked is fine |
//! | 1 | an error: a tool or server could not be asked, a wait timed out |
//! | 2 | a usage error (from the command-line parser) |
//! | 3 | the answer is "no": switchover or rebuild refused, a check failed, a health check red |
//!
//! Like the agent, every external program runs through [`crate::cmd`] with
//! a timeout, and every connection has a connect and a query timeout: a
//! node that is powered off shows as down within seconds, never as a hang.

pub mod alerts;
pub mod check;
pub mod cib;
pub mod corosync;
pub mod health;
pub mod pgdump;
pub mod postgres;
pub mod preflight;
pub mod probe;
pub mod qdevice;
pub mod rebuild;
pub mod status;
pub mod switchover;
mod table;

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::ClusterError;
use crate::cmd::CommandError;
use crate::config::ConfigError;
use crate::postgres::PgError;
use crate::redis::RedisError;

/// Exit code: done, all fine.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error prevented the answer.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the command line was wrong (what clap uses).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the answer is "no" (refused, failed check, red health).
pub const EXIT_NOT_OK: i32 = 3;

/// How long a whole read-only command may take by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// TCP connection timeout towards a node's PostgreSQL or Redis.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Query timeout towards a node's PostgreSQL or Redis.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a command could not give its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Pacemaker tool failed or no cluster answered.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Another program failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// PostgreSQL could not be asked.
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// Redis could not be asked.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The stack resource's parameters are wrong.
    #[error("stack resource: {0}")]
    Config(#[from] ConfigError),
    /// The CIB has no `ocf:rapidpro:stack` resource, or not the expected shape.
    #[error("CIB: {0}")]
    Cib(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The request itself cannot be carried out (an unknown node, an
    /// existing file without `--force`).
    #[error("{0}")]
    Usage(String),
    /// A wait ran out.
    #[error("{0}")]
    Timeout(String),
    /// A program failed; the message names it, its status and its stderr.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The operations Pacemaker has in flight: its pending actions, and clone
/// instances in a transitional role that no pending action names. A
/// switchover or a rebuild waits for them to end before deciding.
pub(crate) fn in_flight(st: &crate::cluster::ClusterStatus) -> Vec<String> {
    let mut out: Vec<String> = st
        .pending
        .iter()
        .map(|p| format!("{} {} on {}", p.resource, p.task, p.node))
        .collect();
    for c in &st.clones {
        for i in c.instances.iter().filter(|i| i.role.is_pending()) {
            let listed = st
                .pending
                .iter()
                .any(|p| p.resource == i.id && Some(&p.node) == i.node());
            if !listed {
                let on = i
                    .node()
                    .map(crate::cluster::NodeName::to_string)
                    .unwrap_or_default();
                out.push(format!("{} {} on {on}", i.id, i.role));
            }
        }
    }
    out
}

/// Whether the answer is good; decides between exit codes 0 and 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done, fine.
    Ok,
    /// The answer is "no" (refused, failed, red).
    NotOk,
}

/// What a command produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The document printed with `--json`.
    pub json: serde_json::Value,
    /// The text printed otherwise (ends with a newline).
    pub text: String,
    /// Good or not.
    pub verdict: Verdict,
}

impl Outcome {
    /// A good outcome.
    pub fn ok(json: serde_json::Value, text: String) -> Self {
        Outcome {
            json,
            text,
            verdict: Verdict::Ok,
        }
    }

    /// A good or bad outcome.
    pub fn with(json: serde_json::Value, text: String, good: bool) -> Self {
        Outcome {
            json,
            text,
            verdict: if good { Verdict::Ok } else { Verdict::NotOk },
        }
    }
}

/// The exit code for a command's result: one `match`, as the style asks.
pub fn exit_code(r: &Result<Outcome, Error>) -> i32 {
    match r {
        Ok(Outcome {
            verdict: Verdict::Ok,
            ..
        }) => EXIT_OK,
        Ok(Outcome {
            verdict: Verdict::NotOk,
            ..
        }) => EXIT_NOT_OK,
        Err(_) => EXIT_ERROR,
    }
}

/// Prints a result the way the binary does: JSON or text on stdout, an
/// error on stderr (and, with `--json`, as `{"error": ...}` on stdout too,
/// so a script always gets a document). Returns the exit code.
pub fn print(r: &Result<Outcome, Error>, json: bool) -> i32 {
    match r {
        Ok(o) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&o.json).unwrap_or_else(|_| "null".into())
            );
        }
        Ok(o) => print!("{}", o.text),
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("rapidproctl: {e}");
        }
    }
    exit_code(r)
}

/// Sends `log` records to stderr as `rapidproctl: warning: ...`: the
/// library's warnings (an unreadable `corosync.conf`, a CIB that could not
/// be read) reach the operator without a syslog.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            eprintln!("rapidproctl: {level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Logs warnings (or, `verbose`, everything down to debug, which includes
/// each command run) to stderr.
pub fn init_logging(verbose: bool) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        });
    }
}

/// Bytes in a unit people read (`0 B`, `12.0 KiB`, `3.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_tell_error_from_a_no() {
        let ok = Ok(Outcome::ok(serde_json::json!({}), String::new()));
        let no = Ok(Outcome::with(serde_json::json!({}), String::new(), false));
        let err: Result<Outcome, Error> = Err(Error::Usage("x".into()));
        assert_eq!(exit_code(&ok), EXIT_OK);
        assert_eq!(exit_code(&no), EXIT_NOT_OK);
        assert_eq!(exit_code(&err), EXIT_ERROR);
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(16 * 1024 * 1024), "16.0 MiB");
    }
}
