//! What a server's error means, from its SQLSTATE, never from its message.
//!
//! PostgreSQL's messages change between versions and are translated by
//! `lc_messages`; the SQLSTATE does not. A server still starting up says
//! "the database system is starting up", one still recovering "is not yet
//! accepting connections", one with `hot_standby=off` "is not accepting
//! connections": all are 57P03, and matching the texts had missed the last.
//! The message is kept only to be shown.

use tokio_postgres::error::SqlState;

/// The classes of server errors the agent and `rapidproctl` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// 57P03 `cannot_connect_now`: starting up, shutting down, in crash
    /// recovery, not yet consistent, or a standby with `hot_standby=off`.
    /// A server that will be (or was) there, but is no writable primary now.
    CannotConnectNow,
    /// 57P01 `admin_shutdown`: the session was ended by a shutdown.
    AdminShutdown,
    /// 53300 `too_many_connections`.
    TooManyConnections,
    /// 28P01 `invalid_password`: wrong password, or none accepted.
    InvalidPassword,
    /// 28000 `invalid_authorization_specification`: no `pg_hba.conf` line
    /// admits the client, or a `reject` line, or peer authentication failed.
    InvalidAuthorization,
    /// 3D000 `invalid_catalog_name`: the database does not exist.
    InvalidCatalogName,
    /// Any other SQLSTATE, as the server sent it.
    Other(String),
}

impl ErrorKind {
    /// The class of a five-character SQLSTATE.
    pub fn of_code(code: &str) -> ErrorKind {
        match code {
            c if c == SqlState::CANNOT_CONNECT_NOW.code() => ErrorKind::CannotConnectNow,
            c if c == SqlState::ADMIN_SHUTDOWN.code() => ErrorKind::AdminShutdown,
            c if c == SqlState::TOO_MANY_CONNECTIONS.code() => ErrorKind::TooManyConnections,
            c if c == SqlState::INVALID_PASSWORD.code() => ErrorKind::InvalidPassword,
            c if c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code() => {
                ErrorKind::InvalidAuthorization
            }
            c if c == SqlState::INVALID_CATALOG_NAME.code() => ErrorKind::InvalidCatalogName,
            other => ErrorKind::Other(other.to_string()),
        }
    }

    /// The SQLSTATE.
    pub fn code(&self) -> &str {
        match self {
            ErrorKind::CannotConnectNow => SqlState::CANNOT_CONNECT_NOW.code(),
            ErrorKind::AdminShutdown => SqlState::ADMIN_SHUTDOWN.code(),
            ErrorKind::TooManyConnections => SqlState::TOO_MANY_CONNECTIONS.code(),
            ErrorKind::InvalidPassword => SqlState::INVALID_PASSWORD.code(),
            ErrorKind::InvalidAuthorization => SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code(),
            ErrorKind::InvalidCatalogName => SqlState::INVALID_CATALOG_NAME.code(),
            ErrorKind::Other(c) => c,
        }
    }
}

/// An error the server sent (an ErrorResponse): its class, for code, and
/// its message, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The class, from the SQLSTATE.
    pub kind: ErrorKind,
    /// Severity and message ("FATAL: the database system is starting up"),
    /// only ever shown.
    pub message: String,
}

impl ServerError {
    /// The server's error inside `e`, if the server sent one (`None` for a
    /// client-side failure: no answer, I/O, a timeout).
    pub fn of(e: &tokio_postgres::Error) -> Option<ServerError> {
        let db = e.as_db_error()?;
        Some(ServerError {
            kind: ErrorKind::of_code(db.code().code()),
            message: format!("{}: {}", db.severity(), db.message()),
        })
    }

    /// 57P03: the server is starting up, shutting down, recovering, or a
    /// standby without hot standby.
    pub fn is_cannot_connect_now(&self) -> bool {
        self.kind == ErrorKind::CannotConnectNow
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sqlstate_the_agent_acts_on_has_its_class_and_round_trips() {
        for (code, kind) in [
            ("57P03", ErrorKind::CannotConnectNow),
            ("57P01", ErrorKind::AdminShutdown),
            ("53300", ErrorKind::TooManyConnections),
            ("28P01", ErrorKind::InvalidPassword),
            ("28000", ErrorKind::InvalidAuthorization),
            ("3D000", ErrorKind::InvalidCatalogName),
        ] {
            assert_eq!(ErrorKind::of_code(code), kind, "{code}");
            assert_eq!(kind.code(), code);
        }
    }

    #[test]
    fn any_other_sqlstate_is_kept_as_sent() {
        let k = ErrorKind::of_code("25006");
        assert_eq!(k, ErrorKind::Other("25006".into()));
        assert_eq!(k.code(), "25006");
    }

    /// The class decides, the text never does: a translated message, or
    /// one whose words merely look like another class's, changes nothing.
    #[test]
    fn the_class_comes_from_the_code_not_the_message() {
        let starting = ServerError {
            kind: ErrorKind::of_code("57P03"),
            message: "FATAL: das Datenbanksystem startet".into(),
        };
        assert!(starting.is_cannot_connect_now());
        let lookalike = ServerError {
            kind: ErrorKind::of_code("28000"),
            message: "FATAL: no pg_hba.conf entry for \"starting up\"".into(),
        };
        assert!(!lookalike.is_cannot_connect_now());
        assert_eq!(lookalike.to_string(), lookalike.message);
    }
}
