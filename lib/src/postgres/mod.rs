//! PostgreSQL: observe (role, timeline, LSNs, replication), and act (start as
//! a standby, stop, promote, rewind).
//!
//! Observation goes through tokio-postgres over the unix socket, never
//! through psql, so the monitor spawns nothing. Acting on the server's life
//! (pg_ctl, pg_controldata, pg_rewind) goes through [`crate::cmd`] as
//! `system_user`.

pub mod db;
pub mod hba;
pub mod history;
pub mod lsn;
pub mod pgpass;
pub mod server;
pub mod tls;
pub mod wire;

use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::CommandError;

pub use lsn::{Lsn, Position};

/// Why a PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect {
        /// Where: the socket or host:port.
        target: String,
        /// The client's reason.
        reason: String,
    },
    /// The server refused or failed a query.
    #[error("PostgreSQL at {target}: {what} failed: {reason}")]
    Query {
        /// Where.
        target: String,
        /// Which query, in words.
        what: &'static str,
        /// The server's or client's reason.
        reason: String,
    },
    /// TLS to a server failed (`sslmode`, `sslrootcert`): nothing was
    /// sent to it beyond the SSL request.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A connection or query outlived its timeout.
    #[error("PostgreSQL at {target}: {what} timed out after {:.1} s", after.as_secs_f64())]
    Timeout {
        /// Where.
        target: String,
        /// What was waited for.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The server did not start.
    #[error("PostgreSQL did not start ({detail}): see {}", log.display())]
    StartFailed {
        /// What pg_ctl said.
        detail: String,
        /// The server log.
        log: PathBuf,
    },
    /// A PostgreSQL program failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A file of the data directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A file of the data directory was refused (a link, a FIFO, a hard
    /// link, a stranger's file) or could not be used.
    #[error(transparent)]
    Files(#[from] crate::owned_dir::Error),
    /// Output of a program or a query had an unexpected form.
    #[error("unexpected {what}: {input:?}")]
    Parse {
        /// What was parsed.
        what: &'static str,
        /// The start of the input.
        input: String,
    },
}

impl PgError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PgError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: &'static str, input: &str) -> Self {
        PgError::Parse {
            what,
            input: input.chars().take(120).collect(),
        }
    }
}
