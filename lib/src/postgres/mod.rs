//! PostgreSQL: observe (role, timeline, LSNs, replication), and act (start as
//! a standby, stop, promote, rewind).
//!
//! Observation goes through tokio-postgres over the unix socket, never
//! through psql, so the monitor spawns nothing. Acting on the server's life
//! (pg_ctl, pg_controldata, pg_rewind) goes through [`crate::cmd`] as
//! `system_user`.

/// An enum for one of PostgreSQL's fixed texts (a state, a status), with
/// `Unknown` keeping any other text as it came: a newer server may add a
/// state, and it must be shown as it is, never mistaken for a known one.
/// `FromStr` (infallible) and `Display` map each variant to PostgreSQL's
/// exact text; `ALL` lists the known ones, for tests.
macro_rules! pg_text_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// Any other text, kept as PostgreSQL wrote it.
            Unknown(String),
        }

        impl $name {
            /// Every known value, in PostgreSQL's order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// PostgreSQL's text for it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(s) => s,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(match s {
                    $($text => $name::$variant,)+
                    other => $name::Unknown(other.to_string()),
                })
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s.parse() {
                    Ok(v) => v,
                    Err(never) => match never {},
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

pub mod db;
pub mod hba;
pub mod history;
pub mod lsn;
pub mod pgpass;
pub mod queries;
pub mod server;
pub mod sqlstate;
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
    /// A server answered but refused the session (authentication, no
    /// such database, starting up...): its SQLSTATE says which.
    #[error("cannot connect to PostgreSQL at {target}: {error}")]
    Refused {
        /// Where: the socket or host:port.
        target: String,
        /// The server's error.
        error: sqlstate::ServerError,
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
        /// The class of the server's error, when the server sent one.
        kind: Option<sqlstate::ErrorKind>,
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

    /// The class of the server's error (from its SQLSTATE), when the
    /// server refused the session or failed the query.
    pub fn server_error_kind(&self) -> Option<&sqlstate::ErrorKind> {
        match self {
            PgError::Refused { error, .. } => Some(&error.kind),
            PgError::Query { kind, .. } => kind.as_ref(),
            _ => None,
        }
    }

    /// 57P03: the server is starting up, shutting down, recovering, or a
    /// standby without hot standby.
    pub fn is_cannot_connect_now(&self) -> bool {
        self.server_error_kind() == Some(&sqlstate::ErrorKind::CannotConnectNow)
    }

    pub(crate) fn parse(what: &'static str, input: &str) -> Self {
        PgError::Parse {
            what,
            input: input.chars().take(120).collect(),
        }
    }
}
