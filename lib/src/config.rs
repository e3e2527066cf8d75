//! The agent's parameters: one table, used for meta-data, defaults and
//! validation, so a name can never be spelt two ways.
//!
//! Validation is in two parts, because Pacemaker treats the exit codes
//! differently: [`Config::from_env`] checks the form of every value, which is
//! the same on every node (`OCF_ERR_CONFIGURED`, 6: the resource is stopped
//! everywhere); [`Config::check_host`] checks this host (binaries, users,
//! directories: 5, 2 or 4, after which only this node is banned).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};

use crate::ocf::env::OcfEnv;
use crate::ocf::OcfRc;
use crate::postgres::tls::{PgTls, SslMode};

/// What kind of value a parameter takes, for meta-data and validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Free text.
    String,
    /// A whole number.
    Integer,
    /// true/false.
    Boolean,
}

/// One parameter of the agent.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Name, as in `OCF_RESKEY_<name>`.
    pub name: &'static str,
    /// Value type.
    pub kind: ParamType,
    /// Default value shown in meta-data; `None` when required or derived.
    pub default: Option<&'static str>,
    /// Whether the parameter must be given.
    pub required: bool,
    /// A secret: hidden by pcs/crmsh (`private="1"`).
    pub private: bool,
    /// One line.
    pub shortdesc: &'static str,
    /// What it is for, its form, and what happens with it.
    pub longdesc: &'static str,
}

/// Parameter names, each a single constant.
pub mod names {
    #![allow(missing_docs)]
    pub const PGDATA: &str = "pgdata";
    pub const DATADIR: &str = "datadir";
    pub const BINDIR: &str = "bindir";
    pub const PGPORT: &str = "pgport";
    pub const PGHOST: &str = "pghost";
    pub const SYSTEM_USER: &str = "system_user";
    pub const PG_LOGFILE: &str = "pg_logfile";
    pub const PRIMARY_HOST: &str = "primary_host";
    pub const PRIMARY_PORT: &str = "primary_port";
    pub const REPL_USER: &str = "repl_user";
    pub const REPL_PASSWORD: &str = "repl_password";
    pub const SSLMODE: &str = "sslmode";
    pub const SSLROOTCERT: &str = "sslrootcert";
    pub const MAXLAG: &str = "maxlag";
    pub const SYNC_REPLICATION: &str = "sync_replication";
    pub const REWIND: &str = "rewind";
    pub const REDIS_SERVER: &str = "redis_server";
    pub const REDIS_CONFIG: &str = "redis_config";
    pub const REDIS_PORT: &str = "redis_port";
    pub const REDIS_PRIMARY_PORT: &str = "redis_primary_port";
    pub const REDIS_SOCKET: &str = "redis_socket";
    pub const REDIS_PASSWORD: &str = "redis_password";
    pub const REDIS_USER: &str = "redis_user";
    pub const REDIS_TLS: &str = "redis_tls";
    pub const REDIS_TLS_CERT: &str = "redis_tls_cert";
    pub const REDIS_TLS_KEY: &str = "redis_tls_key";
    pub const REDIS_TLS_CA: &str = "redis_tls_ca";
    pub const STATE_DIR: &str = "state_dir";
    pub const CONNECT_TIMEOUT: &str = "connect_timeout";
    pub const QUERY_TIMEOUT: &str = "query_timeout";
}

use names::*;

/// Every parameter, in the order meta-data lists them.
pub const PARAMETERS: &[ParamSpec] = &[
    ParamSpec {
        name: PGDATA,
        kind: ParamType::String,
        default: Some("/var/lib/postgresql/15/main"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL data directory",
        longdesc: "Absolute path of the PostgreSQL data directory (PGDATA): where postmaster.pid, \
                   standby.signal and postgresql.auto.conf live. It must belong to system_user with mode 0700 or 0750.",
    },
    ParamSpec {
        name: DATADIR,
        kind: ParamType::String,
        default: Some("/etc/postgresql/15/main"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL configuration directory",
        longdesc: "Directory holding postgresql.conf when the configuration lives apart from the data, \
                   as on Debian (/etc/postgresql/15/main, whose postgresql.conf sets data_directory). \
                   When unset: pgdata if it holds postgresql.conf, otherwise this default. \
                   pg_ctl is run with -D datadir.",
    },
    ParamSpec {
        name: BINDIR,
        kind: ParamType::String,
        default: Some("/usr/lib/postgresql/15/bin"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL binaries directory",
        longdesc: "Directory holding pg_ctl, pg_controldata and pg_rewind.",
    },
    ParamSpec {
        name: PGPORT,
        kind: ParamType::Integer,
        default: Some("5432"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL port",
        longdesc: "Port of the local PostgreSQL (1 to 65535). It must match the port setting of postgresql.conf; \
                   the agent connects through the unix socket in pghost with this port number.",
    },
    ParamSpec {
        name: PGHOST,
        kind: ParamType::String,
        default: Some("/var/run/postgresql"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL unix socket directory",
        longdesc: "Absolute path of the directory of the local PostgreSQL unix socket (unix_socket_directories). \
                   The agent connects there as system_user with peer authentication, without running psql.",
    },
    ParamSpec {
        name: SYSTEM_USER,
        kind: ParamType::String,
        default: Some("postgres"),
        required: false,
        private: false,
        shortdesc: "System user running PostgreSQL",
        longdesc: "The system user that owns pgdata and runs PostgreSQL, pg_ctl and pg_rewind; also the database \
                   role of the agent's local connection (peer authentication on the unix socket).",
    },
    ParamSpec {
        name: PG_LOGFILE,
        kind: ParamType::String,
        default: Some("/var/log/postgresql/postgresql-15-main.log"),
        required: false,
        private: false,
        shortdesc: "PostgreSQL server log file",
        longdesc: "Absolute path of the file pg_ctl sends the server's output to (pg_ctl -l). \
                   Its directory must be writable by system_user.",
    },
    ParamSpec {
        name: PRIMARY_HOST,
        kind: ParamType::String,
        default: None,
        required: true,
        private: false,
        shortdesc: "Address of the primary (normally the virtual IP)",
        longdesc: "Host name or IP address that standbys stream from and Redis replicas follow: normally the \
                   virtual IP colocated with the Promoted role. Before promoting, the agent checks that no \
                   writable PostgreSQL answers there, so two primaries never exist.",
    },
    ParamSpec {
        name: PRIMARY_PORT,
        kind: ParamType::Integer,
        default: None,
        required: false,
        private: false,
        shortdesc: "PostgreSQL port at primary_host",
        longdesc: "Port of PostgreSQL at primary_host (1 to 65535). Defaults to pgport.",
    },
    ParamSpec {
        name: REPL_USER,
        kind: ParamType::String,
        default: Some("replicator"),
        required: false,
        private: false,
        shortdesc: "Replication role",
        longdesc: "Database role with the REPLICATION attribute that standbys connect as (primary_conninfo). \
                   The agent also uses it to ask primary_host whether it is writable, so pg_hba.conf must \
                   allow it to connect to the postgres database. With rewind=true it also needs EXECUTE on \
                   pg_ls_dir, pg_stat_file and pg_read_binary_file, as pg_rewind requires; with \
                   rewind=false an old primary's history is checked over a replication connection \
                   (TIMELINE_HISTORY), which needs no grant beyond REPLICATION.",
    },
    ParamSpec {
        name: REPL_PASSWORD,
        kind: ParamType::String,
        default: None,
        required: false,
        private: true,
        shortdesc: "Password of the replication role",
        longdesc: "Password of repl_user. Written into primary_conninfo (postgresql.auto.conf, readable only by \
                   system_user) and passed to pg_rewind through its environment, never on a command line. \
                   Leave it unset to rely on the .pgpass file in system_user's home directory (mode 0600, \
                   owned by system_user; a link is not followed), which the agent's own connections to \
                   primary_host read too.",
    },
    ParamSpec {
        name: SSLMODE,
        kind: ParamType::String,
        default: Some("prefer"),
        required: false,
        private: false,
        shortdesc: "TLS of the connections to PostgreSQL at primary_host",
        longdesc: "libpq's sslmode for every TCP connection to PostgreSQL: the agent's and rapidproctl's \
                   own (rustls) and, written into primary_conninfo and the conninfo of pg_rewind and \
                   pg_basebackup, libpq's. disable: no TLS. prefer (the default, as libpq's, so Debian's \
                   snakeoil certificate keeps working): TLS when the server offers it, any certificate \
                   accepted, plain text only when the server has ssl=off. require: TLS, any certificate \
                   (with sslrootcert set it verifies the chain, as verify-ca, as libpq does). verify-ca: \
                   the certificate must be signed by the CA in sslrootcert. verify-full: verify-ca, and \
                   primary_host must be a DNS or IP subject alternative name of the certificate. Only \
                   verify-full protects the replication password: standbys and the agent connect to \
                   primary_host, the virtual IP, which may have no owner (during a failover) and can then \
                   be taken by any host of the network; under verify-* a server that fails verification \
                   is refused before any password is sent. The unix-socket connections never use TLS.",
    },
    ParamSpec {
        name: SSLROOTCERT,
        kind: ParamType::String,
        default: None,
        required: false,
        private: false,
        shortdesc: "CA certificate file for sslmode verify-ca and verify-full",
        longdesc: "Absolute path of a PEM file holding the CA certificate(s) that signed the PostgreSQL \
                   servers' certificates. Required with sslmode=verify-ca or verify-full; with \
                   sslmode=require it makes the chain checked (verify-ca), as libpq does; unused with \
                   prefer. Written into primary_conninfo, so system_user must be able to read it (the WAL \
                   receiver, pg_rewind and pg_basebackup read it as system_user).",
    },
    ParamSpec {
        name: MAXLAG,
        kind: ParamType::Integer,
        default: Some("16777216"),
        required: false,
        private: false,
        shortdesc: "Largest lag of a promotable standby, in bytes",
        longdesc: "A standby whose replayed position is more than this many bytes of WAL behind the primary \
                   gets a negative promotion score and is not promoted (0 disables the limit). A standby \
                   that is not streaming is never promotable while a primary runs.",
    },
    ParamSpec {
        name: SYNC_REPLICATION,
        kind: ParamType::String,
        default: Some("on"),
        required: false,
        private: false,
        shortdesc: "Synchronous replication: off, on or strict",
        longdesc: "off: asynchronous replication. on: commits wait for a standby while at least one is \
                   streaming, and stop waiting as soon as none is left (the primary's monitor switches \
                   synchronous_standby_names), so writes go on when the last standby is lost. strict: a \
                   commit is never acknowledged before a standby has it; writes block while no standby \
                   streams (the promoted monitor then reports degraded).",
    },
    ParamSpec {
        name: REWIND,
        kind: ParamType::Boolean,
        default: Some("false"),
        required: false,
        private: false,
        shortdesc: "Rewind a diverged old primary with pg_rewind",
        longdesc: "When an old primary's timeline has diverged from the current primary's, start runs pg_rewind \
                   and then follows the primary. When false, start fails with an exit reason asking for a \
                   rebuild (rapidproctl rebuild), and the data is left untouched. pg_rewind needs wal_log_hints=on or \
                   data checksums.",
    },
    ParamSpec {
        name: REDIS_SERVER,
        kind: ParamType::String,
        default: Some("/usr/bin/redis-server"),
        required: false,
        private: false,
        shortdesc: "redis-server binary",
        longdesc: "Absolute path of the redis-server binary.",
    },
    ParamSpec {
        name: REDIS_CONFIG,
        kind: ParamType::String,
        default: Some("/etc/redis/redis.conf"),
        required: false,
        private: false,
        shortdesc: "Redis configuration file",
        longdesc: "The administrator's redis.conf. The agent includes it first in a configuration it generates \
                   under state_dir, which then sets port, unixsocket, pidfile, daemonize, masterauth and \
                   replicaof, so Redis always starts as a replica.",
    },
    ParamSpec {
        name: REDIS_PORT,
        kind: ParamType::Integer,
        default: Some("6379"),
        required: false,
        private: false,
        shortdesc: "Redis TCP port",
        longdesc: "TCP port of the local Redis (1 to 65535).",
    },
    ParamSpec {
        name: REDIS_PRIMARY_PORT,
        kind: ParamType::Integer,
        default: None,
        required: false,
        private: false,
        shortdesc: "Redis port at primary_host",
        longdesc: "TCP port replicas follow at primary_host (1 to 65535). Defaults to redis_port.",
    },
    ParamSpec {
        name: REDIS_SOCKET,
        kind: ParamType::String,
        default: Some("/run/redis/rapidpro-ha.sock"),
        required: false,
        private: false,
        shortdesc: "Redis unix socket for the agent",
        longdesc: "Absolute path (under 100 bytes) of the unix socket the agent's Redis connection uses.",
    },
    ParamSpec {
        name: REDIS_PASSWORD,
        kind: ParamType::String,
        default: None,
        required: false,
        private: true,
        shortdesc: "Redis password",
        longdesc: "Password of Redis (requirepass of redis_config), used by the agent's connection and as \
                   masterauth by replicas. Written only into the generated configuration (mode 0600).",
    },
    ParamSpec {
        name: REDIS_USER,
        kind: ParamType::String,
        default: Some("redis"),
        required: false,
        private: false,
        shortdesc: "System user running Redis",
        longdesc: "The system user redis-server runs as.",
    },
    ParamSpec {
        name: REDIS_TLS,
        kind: ParamType::Boolean,
        default: Some("false"),
        required: false,
        private: false,
        shortdesc: "Redis over TLS only",
        longdesc: "When true, redis_port is a TLS port and no plain TCP port is open (port 0, tls-port);                    replicas follow their master over TLS (tls-replication yes), and the agent and                    rapidproctl connect over TLS, checking the server's certificate against redis_tls_ca                    and the host they connect to (primary_host), before sending the password. The unix                    socket stays plain (local only). Each node presents redis_tls_cert as its client                    certificate too, so Redis' default tls-auth-clients yes (mutual TLS) works; set                    tls-auth-clients optional or no in redis_config if the application connects without                    a client certificate. Every node must have the same setting, and the application                    must connect with TLS. Requires redis_tls_cert, redis_tls_key and redis_tls_ca.",
    },
    ParamSpec {
        name: REDIS_TLS_CERT,
        kind: ParamType::String,
        default: None,
        required: false,
        private: false,
        shortdesc: "This node's Redis TLS certificate (PEM)",
        longdesc: "Absolute path of this node's certificate, PEM (tls-cert-file, also presented as the                    client certificate of replication and of the agent). Its subject alternative names must                    hold primary_host (the virtual IP) and the node's own address. Readable by redis_user.",
    },
    ParamSpec {
        name: REDIS_TLS_KEY,
        kind: ParamType::String,
        default: None,
        required: false,
        private: false,
        shortdesc: "This node's Redis TLS private key (PEM)",
        longdesc: "Absolute path of the private key of redis_tls_cert, PEM (tls-key-file). Readable by                    redis_user; keep it unreadable by others (mode 0600 or 0640).",
    },
    ParamSpec {
        name: REDIS_TLS_CA,
        kind: ParamType::String,
        default: None,
        required: false,
        private: false,
        shortdesc: "CA of the nodes' Redis TLS certificates (PEM)",
        longdesc: "Absolute path of the CA certificate(s), PEM, that signed every node's redis_tls_cert                    (tls-ca-cert-file). The agent and the replicas trust only this CA, not the system store.                    Readable by redis_user.",
    },
    ParamSpec {
        name: STATE_DIR,
        kind: ParamType::String,
        default: Some("/run/rapidpro-ha"),
        required: false,
        private: false,
        shortdesc: "Directory of the agent's runtime state",
        longdesc: "Absolute path of a directory for the agent's small state file (last promotion scores set, \
                   known nodes) and the generated Redis configuration and pidfile. Keep it on a tmpfs such as \
                   /run: its content is valid only until reboot.",
    },
    ParamSpec {
        name: CONNECT_TIMEOUT,
        kind: ParamType::Integer,
        default: Some("1"),
        required: false,
        private: false,
        shortdesc: "TCP connection timeout, in seconds",
        longdesc: "Longest wait for a TCP connection to primary_host (1 to 3600 \
                   seconds; a unit suffix s or ms is accepted). A primary that is up accepts a connection in \
                   milliseconds; when nothing holds primary_host (the virtual IP is down during a failover) \
                   this is how long start and monitor wait before concluding that no primary answers. \
                   Promote, which a failover waits for, sends three connection attempts within 0.2 s \
                   (or within connect_timeout, when that is shorter) instead, and within 0.05 s when \
                   Pacemaker's own lists for the promote show every promoted instance demoted or \
                   stopped in that transition: on the nodes' own network a live host's kernel answers \
                   in well under a millisecond, whatever its PostgreSQL is doing. \
                   Something that accepts the connection but does not complete the PostgreSQL handshake \
                   within query_timeout is treated as a possible primary. Always also bounded by the \
                   operation's timeout.",
    },
    ParamSpec {
        name: QUERY_TIMEOUT,
        kind: ParamType::Integer,
        default: Some("10"),
        required: false,
        private: false,
        shortdesc: "Query timeout, in seconds",
        longdesc: "Longest wait for one query or Redis command, and for the handshake with the local \
                   servers over their unix sockets (1 to 3600 seconds; a unit suffix s or ms is \
                   accepted). Always also bounded by the operation's timeout.",
    },
];

/// The spec of a parameter by name.
pub fn spec(name: &str) -> Option<&'static ParamSpec> {
    PARAMETERS.iter().find(|p| p.name == name)
}

/// How synchronous the replication is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Asynchronous.
    Off,
    /// Synchronous while a standby streams.
    On,
    /// Always synchronous; writes wait while no standby streams.
    Strict,
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncMode::Off => "off",
            SyncMode::On => "on",
            SyncMode::Strict => "strict",
        })
    }
}

/// A parameter that is wrong, and how wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {param}={value:?}: {problem}")]
pub struct ConfigError {
    /// The parameter's name.
    pub param: &'static str,
    /// The value given (empty for a secret or a missing value).
    pub value: String,
    /// What is wrong and the expected form.
    pub problem: String,
    /// Which kind of wrong, which decides the exit code ([`Problem::rc`]).
    pub kind: Problem,
}

/// The kinds of wrong parameter, as Pacemaker must tell them apart: a value
/// wrong everywhere stops the resource cluster-wide, a host problem only
/// bans the resource from this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The value itself is malformed, missing or inconsistent with another
    /// parameter: wrong on every node.
    Invalid,
    /// A program or file the parameter names is not on this host.
    NotInstalled,
    /// What the parameter names exists here but is not what it must be: no
    /// such user, a data directory that is not one.
    WrongOnThisHost,
    /// What the parameter names has the wrong owner or permissions.
    Permissions,
}

impl Problem {
    /// The OCF exit code of each kind: the one place it is chosen.
    pub fn rc(self) -> OcfRc {
        match self {
            Problem::Invalid => OcfRc::ErrConfigured,
            Problem::NotInstalled => OcfRc::ErrInstalled,
            Problem::WrongOnThisHost => OcfRc::ErrArgs,
            Problem::Permissions => OcfRc::ErrPerm,
        }
    }
}

impl ConfigError {
    /// The exit code this error deserves ([`Problem::rc`] of its kind).
    pub fn rc(&self) -> OcfRc {
        self.kind.rc()
    }

    fn configured(param: &'static str, value: &str, problem: impl Into<String>) -> Self {
        ConfigError {
            param,
            value: value.to_string(),
            problem: problem.into(),
            kind: Problem::Invalid,
        }
    }

    fn host(param: &'static str, value: &Path, problem: impl Into<String>, kind: Problem) -> Self {
        ConfigError {
            param,
            value: value.display().to_string(),
            problem: problem.into(),
            kind,
        }
    }
}

/// The agent's validated parameters. Its `Debug` shows `<redacted>` for the
/// passwords.
#[derive(Clone)]
pub struct Config {
    /// PGDATA.
    pub pgdata: PathBuf,
    /// Directory of postgresql.conf, given to pg_ctl -D.
    pub datadir: PathBuf,
    /// PostgreSQL binaries.
    pub bindir: PathBuf,
    /// Local PostgreSQL port.
    pub pgport: u16,
    /// Local socket directory.
    pub pghost: PathBuf,
    /// System user of PostgreSQL.
    pub system_user: String,
    /// pg_ctl -l target.
    pub pg_logfile: PathBuf,
    /// Address of the primary.
    pub primary_host: String,
    /// PostgreSQL port at primary_host.
    pub primary_port: u16,
    /// Replication role.
    pub repl_user: String,
    /// Its password.
    pub repl_password: Option<String>,
    /// TLS of the TCP connections to PostgreSQL (`sslmode`, `sslrootcert`).
    pub pg_tls: PgTls,
    /// Largest lag of a promotable standby, bytes; 0 = no limit.
    pub maxlag: u64,
    /// Synchronous replication mode.
    pub sync_replication: SyncMode,
    /// Whether to pg_rewind a diverged old primary.
    pub rewind: bool,
    /// redis-server binary.
    pub redis_server: PathBuf,
    /// The admin's redis.conf.
    pub redis_config: PathBuf,
    /// Local Redis port.
    pub redis_port: u16,
    /// Redis port at primary_host.
    pub redis_primary_port: u16,
    /// The agent's Redis socket.
    pub redis_socket: PathBuf,
    /// Redis password.
    pub redis_password: Option<String>,
    /// System user of Redis.
    pub redis_user: String,
    /// Redis over TLS (`redis_tls`): the node's CA, certificate and key;
    /// `None` for plain TCP.
    pub redis_tls: Option<crate::redis::TlsFiles>,
    /// Runtime state directory.
    pub state_dir: PathBuf,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Query timeout.
    pub query_timeout: Duration,
}

/// Shown instead of a secret's value.
pub const REDACTED: &str = "<redacted>";

/// Whether the parameter `name` holds a secret whose value no `Debug`
/// output, log line or message may show: the parameters the table marks
/// private, and, for a parameter unknown here (a typo, a newer CIB), any
/// name that says password, secret or token.
pub fn is_secret_param(name: &str) -> bool {
    if spec(name).is_some_and(|p| p.private) {
        return true;
    }
    let n = name.to_ascii_lowercase();
    ["pass", "pasw", "pwd", "secret", "token", "auth"]
        .iter()
        .any(|w| n.contains(w))
}

/// `params` as a `Debug` may show them: every secret value (see
/// [`is_secret_param`]) replaced by [`REDACTED`]. For the types that carry
/// a resource's whole parameter set (the OCF environment, the CIB's view).
pub fn shown_params(
    params: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<&str, &str> {
    params
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret_param(k) {
                REDACTED
            } else {
                v.as_str()
            };
            (k.as_str(), shown)
        })
        .collect()
}

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured without `..`: a field added to Config does not
        // compile until it is shown here (or redacted) on purpose.
        let Config {
            pgdata,
            datadir,
            bindir,
            pgport,
            pghost,
            system_user,
            pg_logfile,
            primary_host,
            primary_port,
            repl_user,
            repl_password,
            maxlag,
            sync_replication,
            rewind,
            redis_server,
            redis_config,
            redis_port,
            redis_primary_port,
            redis_socket,
            redis_password,
            redis_user,
            state_dir,
            connect_timeout,
            query_timeout,
            pg_tls,
            redis_tls,
        } = self;
        f.debug_struct("Config")
            .field("pgdata", pgdata)
            .field("datadir", datadir)
            .field("bindir", bindir)
            .field("pgport", pgport)
            .field("pghost", pghost)
            .field("system_user", system_user)
            .field("pg_logfile", pg_logfile)
            .field("primary_host", primary_host)
            .field("primary_port", primary_port)
            .field("repl_user", repl_user)
            .field("repl_password", &redacted(repl_password))
            .field("maxlag", maxlag)
            .field("sync_replication", sync_replication)
            .field("rewind", rewind)
            .field("redis_server", redis_server)
            .field("redis_config", redis_config)
            .field("redis_port", redis_port)
            .field("redis_primary_port", redis_primary_port)
            .field("redis_socket", redis_socket)
            .field("redis_password", &redacted(redis_password))
            .field("redis_user", redis_user)
            .field("state_dir", state_dir)
            .field("connect_timeout", connect_timeout)
            .field("query_timeout", query_timeout)
            .field("pg_tls", pg_tls)
            .field("redis_tls", redis_tls)
            .finish()
    }
}

fn value<'a>(env: &'a OcfEnv, name: &'static str) -> Option<&'a str> {
    env.param(name)
        .or_else(|| spec(name).and_then(|s| s.default))
}

/// The form every path parameter must have, as error messages state it.
const PATH_FORM: &str = "expected an absolute path made only of letters, digits and / . _ - + @ \
     (no space, quote, backslash or shell character), such as /var/lib/postgresql/15/main";

/// Whether `v` is an absolute path of the safe character set.
///
/// Paths reach command lines that a shell parses (pg_ctl runs the server
/// through `/bin/sh -c` with `-D` and `-l` in double quotes, where `"`, `$`,
/// `` ` `` and `\` keep their meaning), configuration files (redis.conf,
/// `postgresql.auto.conf`) and conninfo strings, each with its own quoting.
/// Rather than trust each quoting, a path may only hold characters that
/// mean nothing to any of them.
pub fn is_safe_path(v: &str) -> bool {
    v.starts_with('/')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | '@'))
}

fn path(env: &OcfEnv, name: &'static str) -> Result<PathBuf, ConfigError> {
    let v = value(env, name).unwrap_or_default();
    if !is_safe_path(v) {
        return Err(ConfigError::configured(name, v, PATH_FORM));
    }
    Ok(PathBuf::from(v))
}

fn port(env: &OcfEnv, name: &'static str, default: Option<u16>) -> Result<u16, ConfigError> {
    let Some(v) = env
        .param(name)
        .or_else(|| spec(name).and_then(|s| s.default))
    else {
        return default.ok_or_else(|| ConfigError::configured(name, "", "a port is required"));
    };
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError::configured(
            name,
            v,
            "expected a TCP port number from 1 to 65535",
        )),
    }
}

fn boolean(env: &OcfEnv, name: &'static str) -> Result<bool, ConfigError> {
    let v = value(env, name).unwrap_or("false");
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError::configured(
            name,
            v,
            "expected a boolean: true or false",
        )),
    }
}

/// Parses a duration: whole seconds, or a number with an `s` or `ms` suffix.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, scale_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else {
        (v, 1000)
    };
    let n: u64 = num.trim().parse().ok()?;
    let d = Duration::from_millis(n.checked_mul(scale_ms)?);
    (d >= Duration::from_millis(1) && d <= Duration::from_secs(3600)).then_some(d)
}

fn duration(env: &OcfEnv, name: &'static str) -> Result<Duration, ConfigError> {
    let v = value(env, name).unwrap_or_default();
    parse_duration(v).ok_or_else(|| {
        ConfigError::configured(
            name,
            v,
            "expected a duration from 1 ms to 3600 s: whole seconds, or a number with s or ms, such as 5 or 500ms",
        )
    })
}

/// A name that goes into a conninfo string or a config file unquoted.
fn word(env: &OcfEnv, name: &'static str, what: &str) -> Result<String, ConfigError> {
    let v = value(env, name).unwrap_or_default();
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(ConfigError::configured(name, v, what.to_string()))
    }
}

fn secret(env: &OcfEnv, name: &'static str) -> Result<Option<String>, ConfigError> {
    match env.param(name) {
        None => Ok(None),
        Some(v) if v.chars().any(|c| c.is_control()) => Err(ConfigError::configured(
            name,
            "",
            "expected a password without control characters or new lines",
        )),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// `sslmode` and `sslrootcert`, with libpq's rule: verify-ca and
/// verify-full need a root certificate.
fn pg_tls(env: &OcfEnv) -> Result<PgTls, ConfigError> {
    let mode_v = value(env, SSLMODE).unwrap_or("prefer");
    let mode = SslMode::parse(mode_v.trim()).ok_or_else(|| {
        ConfigError::configured(
            SSLMODE,
            mode_v,
            "expected disable, prefer, require, verify-ca or verify-full",
        )
    })?;
    let rootcert = match env.param(SSLROOTCERT) {
        Some(v) if !v.is_empty() => Some(path(env, SSLROOTCERT)?),
        _ => None,
    };
    if mode.verifies() && rootcert.is_none() {
        return Err(ConfigError::configured(
            SSLMODE,
            mode_v,
            format!(
                "sslmode={mode} verifies the server certificate and needs sslrootcert: set \
                 sslrootcert to the absolute path of the CA certificate file (PEM) that signed \
                 the PostgreSQL servers' certificates"
            ),
        ));
    }
    Ok(PgTls { mode, rootcert })
}

impl Config {
    /// Reads and checks the form of every parameter. Errors are
    /// `OCF_ERR_CONFIGURED`: the same parameters are wrong on every node.
    pub fn from_env(env: &OcfEnv) -> Result<Config, ConfigError> {
        for (name, _) in env.params() {
            // Pacemaker passes crm_feature_set to every agent.
            if spec(name).is_none() && name != "crm_feature_set" {
                log::warn!("ignoring unknown parameter {name}");
            }
        }
        if let Some(p) = env.not_utf8_params().find_map(spec) {
            let shown = if p.private {
                ""
            } else {
                env.param(p.name).unwrap_or_default()
            };
            return Err(ConfigError::configured(
                p.name,
                shown,
                "expected UTF-8 text: the value has bytes that are not valid UTF-8",
            ));
        }
        if env.param(PRIMARY_HOST).is_none() {
            return Err(ConfigError::configured(
                PRIMARY_HOST,
                "",
                "required: the address standbys follow, normally the virtual IP",
            ));
        }
        let pgport = port(env, PGPORT, None)?;
        let redis_port = port(env, REDIS_PORT, None)?;
        let maxlag_v = value(env, MAXLAG).unwrap_or("0");
        let maxlag = maxlag_v.trim().parse::<u64>().map_err(|_| {
            ConfigError::configured(
                MAXLAG,
                maxlag_v,
                "expected a whole number of bytes, 0 or more",
            )
        })?;
        let sync_v = value(env, SYNC_REPLICATION).unwrap_or("on");
        let sync_replication = match sync_v.trim() {
            "off" => SyncMode::Off,
            "on" => SyncMode::On,
            "strict" => SyncMode::Strict,
            _ => {
                return Err(ConfigError::configured(
                    SYNC_REPLICATION,
                    sync_v,
                    "expected off, on or strict",
                ))
            }
        };
        let redis_socket = path(env, REDIS_SOCKET)?;
        // sun_path holds 108 bytes including the terminating NUL.
        if redis_socket.as_os_str().len() > 100 {
            return Err(ConfigError::configured(
                REDIS_SOCKET,
                &redis_socket.display().to_string(),
                "expected a path of at most 100 bytes (unix socket limit)",
            ));
        }
        let redis_tls = if boolean(env, REDIS_TLS)? {
            let file = |name| {
                if env.param(name).is_none() {
                    return Err(ConfigError::configured(
                        name,
                        "",
                        "required when redis_tls=true: expected the absolute path of a PEM file",
                    ));
                }
                path(env, name)
            };
            Some(crate::redis::TlsFiles {
                cert: file(REDIS_TLS_CERT)?,
                key: file(REDIS_TLS_KEY)?,
                ca: file(REDIS_TLS_CA)?,
            })
        } else {
            // Given but unused: still a path, so that a typo is found now
            // rather than when redis_tls is turned on.
            for name in [REDIS_TLS_CERT, REDIS_TLS_KEY, REDIS_TLS_CA] {
                if env.param(name).is_some() {
                    path(env, name)?;
                    log::warn!("{name} is set but redis_tls is false: Redis runs without TLS");
                }
            }
            None
        };
        let cfg = Config {
            pgdata: path(env, PGDATA)?,
            datadir: match env.param(DATADIR) {
                Some(_) => path(env, DATADIR)?,
                // Unset: postgresql.conf inside pgdata when it is there,
                // otherwise Debian's /etc/postgresql/15/main.
                None => {
                    let pgdata = path(env, PGDATA)?;
                    if pgdata.join("postgresql.conf").exists() {
                        pgdata
                    } else {
                        path(env, DATADIR)?
                    }
                }
            },
            bindir: path(env, BINDIR)?,
            pgport,
            pghost: path(env, PGHOST)?,
            system_user: word(env, SYSTEM_USER, "expected a system user name")?,
            pg_logfile: path(env, PG_LOGFILE)?,
            primary_host: word(
                env,
                PRIMARY_HOST,
                "expected a host name or IP address (letters, digits, '.', '-', ':')",
            )?,
            primary_port: port(env, PRIMARY_PORT, Some(pgport))?,
            repl_user: word(
                env,
                REPL_USER,
                "expected a role name (letters, digits, '_', '-', '.')",
            )?,
            repl_password: secret(env, REPL_PASSWORD)?,
            pg_tls: pg_tls(env)?,
            maxlag,
            sync_replication,
            rewind: boolean(env, REWIND)?,
            redis_server: path(env, REDIS_SERVER)?,
            redis_config: path(env, REDIS_CONFIG)?,
            redis_port,
            redis_primary_port: port(env, REDIS_PRIMARY_PORT, Some(redis_port))?,
            redis_socket,
            redis_password: secret(env, REDIS_PASSWORD)?,
            redis_user: word(env, REDIS_USER, "expected a system user name")?,
            redis_tls,
            state_dir: path(env, STATE_DIR)?,
            connect_timeout: duration(env, CONNECT_TIMEOUT)?,
            query_timeout: duration(env, QUERY_TIMEOUT)?,
        };
        Ok(cfg)
    }

    /// The programs the agent runs, with the parameter naming each.
    pub fn binaries(&self) -> Vec<(&'static str, PathBuf)> {
        let mut v: Vec<(&'static str, PathBuf)> = ["pg_ctl", "pg_controldata", "postgres"]
            .iter()
            .map(|b| (BINDIR, self.bindir.join(b)))
            .collect();
        if self.rewind {
            v.push((BINDIR, self.bindir.join("pg_rewind")));
        }
        v.push((REDIS_SERVER, self.redis_server.clone()));
        v
    }

    /// Checks this host: binaries (5), users (2), data directory and its
    /// ownership and permissions (2, 4), configuration files (5).
    pub fn check_host(&self) -> Result<(), ConfigError> {
        for (param, bin) in self.binaries() {
            if !is_executable(&bin) {
                return Err(ConfigError::host(
                    param,
                    &bin,
                    "program missing or not executable",
                    Problem::NotInstalled,
                ));
            }
        }
        let pg_user = self.system_user()?;
        self.redis_user()?;
        let md = std::fs::metadata(&self.pgdata).map_err(|e| {
            ConfigError::host(
                PGDATA,
                &self.pgdata,
                format!("cannot use the data directory: {e}"),
                Problem::WrongOnThisHost,
            )
        })?;
        if !md.is_dir() {
            return Err(ConfigError::host(
                PGDATA,
                &self.pgdata,
                "not a directory",
                Problem::WrongOnThisHost,
            ));
        }
        if !self.pgdata.join("PG_VERSION").is_file() {
            return Err(ConfigError::host(
                PGDATA,
                &self.pgdata,
                "not a PostgreSQL data directory (no PG_VERSION)",
                Problem::WrongOnThisHost,
            ));
        }
        if md.uid() != pg_user.0.as_raw() {
            return Err(ConfigError::host(
                PGDATA,
                &self.pgdata,
                format!(
                    "owned by uid {}, expected {} ({})",
                    md.uid(),
                    self.system_user,
                    pg_user.0
                ),
                Problem::Permissions,
            ));
        }
        let mode = md.mode() & 0o777;
        if mode != 0o700 && mode != 0o750 {
            return Err(ConfigError::host(
                PGDATA,
                &self.pgdata,
                format!("mode {mode:04o}, expected 0700 or 0750 (PostgreSQL refuses others)"),
                Problem::Permissions,
            ));
        }
        if !self.datadir.join("postgresql.conf").is_file() {
            return Err(ConfigError::host(
                DATADIR,
                &self.datadir,
                "no postgresql.conf in this directory",
                Problem::NotInstalled,
            ));
        }
        if !self.redis_config.is_file() {
            return Err(ConfigError::host(
                REDIS_CONFIG,
                &self.redis_config,
                "file missing",
                Problem::NotInstalled,
            ));
        }
        if let Some(root) = &self.pg_tls.rootcert {
            if !root.is_file() {
                return Err(ConfigError::host(
                    SSLROOTCERT,
                    root,
                    "file missing: put the CA certificate (PEM) that signed the PostgreSQL \
                     servers' certificates there, readable by system_user",
                    Problem::NotInstalled,
                ));
            }
        }
        self.check_redis_tls_files()?;
        Ok(())
    }

    /// With redis_tls, each file exists and redis_user can read it (from
    /// the permission bits of the file and of every directory above it,
    /// with the user's groups, as redis-server gets them; ACLs are not
    /// read). redis-server would otherwise exit at start with a message
    /// only in its own log.
    fn check_redis_tls_files(&self) -> Result<(), ConfigError> {
        let Some(tls) = &self.redis_tls else {
            return Ok(());
        };
        let (uid, gid) = self.redis_user()?;
        let groups = nix::unistd::getgrouplist(
            &std::ffi::CString::new(self.redis_user.as_str()).unwrap_or_default(),
            gid,
        )
        .unwrap_or_else(|_| vec![gid]);
        for (param, file) in [
            (REDIS_TLS_CERT, &tls.cert),
            (REDIS_TLS_KEY, &tls.key),
            (REDIS_TLS_CA, &tls.ca),
        ] {
            match std::fs::metadata(file) {
                Ok(m) if m.is_file() => {}
                Ok(_) => {
                    return Err(ConfigError::host(
                        param,
                        file,
                        "not a regular file; expected a PEM file",
                        Problem::NotInstalled,
                    ))
                }
                Err(e) => {
                    return Err(ConfigError::host(
                        param,
                        file,
                        format!("cannot use the file: {e}; expected a PEM file"),
                        Problem::NotInstalled,
                    ))
                }
            }
            if let Some(problem) = unreadable_by(file, uid, &groups) {
                return Err(ConfigError::host(
                    param,
                    file,
                    format!(
                        "{problem}, so redis_user {} cannot read it and redis-server would not \
                         start; give {} read access (e.g. chgrp {} and chmod g+r, or add {} to \
                         the file's group)",
                        self.redis_user, self.redis_user, self.redis_user, self.redis_user
                    ),
                    Problem::Permissions,
                ));
            }
        }
        Ok(())
    }

    /// Where the agent reaches a Redis over TCP: TLS with redis_tls.
    pub fn redis_endpoint(&self, host: &str, port: u16) -> crate::redis::Endpoint {
        crate::redis::Endpoint::tcp(host, port, self.redis_tls.as_ref())
    }

    /// The uid and gid of system_user.
    pub fn system_user(&self) -> Result<(Uid, Gid), ConfigError> {
        lookup_user(SYSTEM_USER, &self.system_user)
    }

    /// The password of `repl_user` towards `host:port`, database `dbname`
    /// (`replication` for a replication connection): `repl_password`, or else
    /// the one `system_user`'s `~/.pgpass` gives, as libpq finds it for the
    /// server's own connections (the WAL receiver, pg_rewind,
    /// pg_basebackup). The agent and rapidproctl run as root, whose own
    /// `.pgpass` is not the one that matters. An unusable file (a link, a
    /// file others may read) is logged and ignored, as libpq ignores it.
    pub fn repl_password_for(&self, host: &str, port: u16, dbname: &str) -> Option<String> {
        if let Some(p) = &self.repl_password {
            return Some(p.clone());
        }
        let (uid, _) = self.system_user().ok()?;
        let home = nix::unistd::User::from_uid(uid).ok()??.dir;
        let key = crate::postgres::pgpass::Key {
            host,
            port,
            dbname,
            user: &self.repl_user,
        };
        match crate::postgres::pgpass::password_for(&home, uid, &key) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("not using the password file: {e}");
                None
            }
        }
    }

    /// The PostgreSQL server these parameters describe, run as system_user.
    pub fn pg_server(&self) -> Result<crate::postgres::server::Server, ConfigError> {
        let (uid, gid) = self.system_user()?;
        Ok(crate::postgres::server::Server {
            pgdata: self.pgdata.clone(),
            datadir: self.datadir.clone(),
            bindir: self.bindir.clone(),
            logfile: self.pg_logfile.clone(),
            uid,
            gid,
        })
    }

    /// The uid and gid of redis_user.
    pub fn redis_user(&self) -> Result<(Uid, Gid), ConfigError> {
        lookup_user(REDIS_USER, &self.redis_user)
    }

    /// Whether the PostgreSQL installation is absent from this host, in which
    /// case nothing of it can run here (a probe reports "not running").
    pub fn pg_absent(&self) -> bool {
        !self.pgdata.join("PG_VERSION").is_file()
    }
}

fn lookup_user(param: &'static str, name: &str) -> Result<(Uid, Gid), ConfigError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok((u.uid, u.gid)),
        _ => Err(ConfigError {
            param,
            value: name.to_string(),
            problem: "no such system user on this host".to_string(),
            kind: Problem::WrongOnThisHost,
        }),
    }
}

/// Why a user with `uid` and `groups` cannot read `file`, from the mode
/// bits of the file and the search bits of its directories; `None` when it
/// can. Root reads everything.
fn unreadable_by(file: &Path, uid: Uid, groups: &[Gid]) -> Option<String> {
    if uid.is_root() {
        return None;
    }
    let allowed = |m: &std::fs::Metadata, bits: u32| {
        let class = if m.uid() == uid.as_raw() {
            (m.mode() >> 6) & 0o7
        } else if groups.iter().any(|g| g.as_raw() == m.gid()) {
            (m.mode() >> 3) & 0o7
        } else {
            m.mode() & 0o7
        };
        class & bits == bits
    };
    let describe = |p: &Path, m: &std::fs::Metadata| {
        format!(
            "{} has mode {:04o}, owner uid {} gid {}",
            p.display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        )
    };
    for dir in file.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Ok(m) = std::fs::metadata(dir) {
            if !allowed(&m, 0o1) {
                return Some(format!("directory {}", describe(dir, &m)));
            }
        }
    }
    match std::fs::metadata(file) {
        Ok(m) if !allowed(&m, 0o4) => Some(describe(file, &m)),
        _ => None,
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> OcfEnv {
        let mut all = vec![(
            "OCF_RESKEY_primary_host".to_string(),
            "10.0.0.10".to_string(),
        )];
        for (k, v) in vars {
            all.push((format!("OCF_RESKEY_{k}"), v.to_string()));
        }
        OcfEnv::from_vars(all)
    }

    #[test]
    fn defaults_are_debians() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.pgport, 5432);
        assert_eq!(c.primary_port, 5432);
        assert_eq!(c.redis_primary_port, 6379);
        assert_eq!(c.bindir, Path::new("/usr/lib/postgresql/15/bin"));
        assert_eq!(c.sync_replication, SyncMode::On);
        assert!(!c.rewind);
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn sslmode_defaults_to_prefer_as_libpq() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(
            c.pg_tls,
            PgTls {
                mode: SslMode::Prefer,
                rootcert: None
            }
        );
    }

    #[test]
    fn sslmode_takes_libpqs_values_only() {
        let c = Config::from_env(&env(&[
            ("sslmode", "verify-full"),
            ("sslrootcert", "/etc/rapidpro/ca.crt"),
        ]))
        .unwrap();
        assert_eq!(c.pg_tls.mode, SslMode::VerifyFull);
        assert_eq!(
            c.pg_tls.rootcert.as_deref(),
            Some(Path::new("/etc/rapidpro/ca.crt"))
        );
        let e = Config::from_env(&env(&[("sslmode", "verify_full")])).unwrap_err();
        assert_eq!((e.param, e.rc()), ("sslmode", OcfRc::ErrConfigured));
        assert!(e.problem.contains("verify-full"), "{e}");
    }

    #[test]
    fn verify_modes_without_sslrootcert_are_refused_naming_both_parameters() {
        for mode in ["verify-ca", "verify-full"] {
            let e = Config::from_env(&env(&[("sslmode", mode)])).unwrap_err();
            assert_eq!(e.rc(), OcfRc::ErrConfigured);
            let m = e.to_string();
            assert!(m.contains("sslmode") && m.contains("sslrootcert"), "{m}");
        }
        let e = Config::from_env(&env(&[("sslmode", "verify-ca"), ("sslrootcert", "ca.crt")]))
            .unwrap_err();
        assert_eq!(e.param, "sslrootcert");
    }

    #[test]
    fn require_with_sslrootcert_is_verify_ca() {
        let c =
            Config::from_env(&env(&[("sslmode", "require"), ("sslrootcert", "/ca.crt")])).unwrap();
        assert_eq!(c.pg_tls.effective_mode(), SslMode::VerifyCa);
    }

    #[test]
    fn primary_port_follows_pgport_unless_given() {
        let c = Config::from_env(&env(&[("pgport", "5433")])).unwrap();
        assert_eq!(c.primary_port, 5433);
        let c = Config::from_env(&env(&[("pgport", "5433"), ("primary_port", "6000")])).unwrap();
        assert_eq!(c.primary_port, 6000);
    }

    #[test]
    fn a_missing_primary_host_is_a_configuration_error() {
        let e = Config::from_env(&OcfEnv::from_vars([("x", "y")])).unwrap_err();
        assert_eq!(e.param, "primary_host");
        assert_eq!(e.rc(), OcfRc::ErrConfigured);
    }

    #[test]
    fn every_malformed_value_names_its_parameter() {
        let cases: &[(&str, &str)] = &[
            ("pgport", "0"),
            ("pgport", "70000"),
            ("pgport", "five"),
            ("primary_port", "-1"),
            ("redis_port", ""),
            ("redis_primary_port", "x"),
            ("pgdata", "relative/dir"),
            ("datadir", "etc"),
            ("bindir", "bin"),
            ("pghost", "sock"),
            ("pg_logfile", "log"),
            ("redis_server", "redis-server"),
            ("redis_config", "redis.conf"),
            ("redis_socket", "s.sock"),
            ("state_dir", "run"),
            ("primary_host", "a b"),
            ("primary_host", "host'; drop"),
            ("repl_user", "bad user"),
            ("system_user", "root;x"),
            ("redis_user", "a b"),
            ("maxlag", "-1"),
            ("maxlag", "lots"),
            ("sync_replication", "maybe"),
            ("rewind", "perhaps"),
            ("redis_tls", "perhaps"),
            ("redis_tls_cert", "node.crt"),
            ("redis_tls_ca", "ca.crt"),
            ("connect_timeout", "0"),
            ("connect_timeout", "1h"),
            ("query_timeout", "99999"),
            ("repl_password", "a\nb"),
            ("redis_password", "a\u{7}b"),
        ];
        for (k, v) in cases {
            let r = Config::from_env(&env(&[(k, v)]));
            if v.is_empty() {
                // Empty counts as unset: the default applies.
                assert!(r.is_ok(), "{k}={v:?}");
                continue;
            }
            let e = r.expect_err(&format!("{k}={v:?} should be rejected"));
            assert_eq!(e.param, *k, "{k}={v:?}: {e}");
            assert_eq!(e.rc(), OcfRc::ErrConfigured, "{k}={v:?}");
            assert!(e.to_string().contains("expected"), "{e}");
        }
    }

    #[test]
    fn a_parameter_that_is_not_utf8_is_a_configuration_error() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        for (name, shown) in [("pgdata", true), ("redis_password", false)] {
            let e = OcfEnv::from_vars_os([
                (
                    OsString::from("OCF_RESKEY_primary_host"),
                    OsString::from("10.0.0.10"),
                ),
                (
                    OsString::from(format!("OCF_RESKEY_{name}")),
                    OsString::from_vec(b"/x\xffsecret".to_vec()),
                ),
            ]);
            let err = Config::from_env(&e).unwrap_err();
            assert_eq!((err.param, err.rc()), (name, OcfRc::ErrConfigured));
            assert!(err.to_string().contains("UTF-8"), "{err}");
            assert_eq!(err.to_string().contains("secret"), shown, "{err}");
        }
    }

    /// A `"` in pgdata or pg_logfile reached the command line that pg_ctl
    /// hands to `/bin/sh -c`; every path parameter now refuses anything
    /// beyond letters, digits and `/ . _ - + @`.
    #[test]
    fn a_path_with_a_quote_or_shell_character_is_refused_naming_the_form() {
        let params = [
            "pgdata",
            "datadir",
            "bindir",
            "pghost",
            "pg_logfile",
            "redis_server",
            "redis_config",
            "redis_socket",
            "state_dir",
        ];
        let bad = [
            "/var/lib/pg\"\" -c \"x",
            "/tmp/log\"; touch /tmp/pwned; \"",
            "/tmp/$(id)",
            "/tmp/`id`",
            "/tmp/a b",
            "/tmp/a'b",
            "/tmp/a\\b",
            "/tmp/a;b",
            "/tmp/a\nb",
            "/tmp/a:b",
            "/tmp/\u{e9}",
        ];
        for name in params {
            for v in bad {
                let e = Config::from_env(&env(&[(name, v)]))
                    .expect_err(&format!("{name}={v:?} should be refused"));
                assert_eq!((e.param, e.rc()), (name, OcfRc::ErrConfigured), "{e}");
                let msg = e.to_string();
                assert!(msg.starts_with(&format!("parameter {name}=")), "{msg}");
                assert!(
                    msg.contains("absolute path made only of letters, digits and / . _ - + @"),
                    "{msg}"
                );
            }
        }
        let c = Config::from_env(&env(&[
            ("pgdata", "/srv/pg-15/main_1.d"),
            ("pg_logfile", "/var/log/postgresql/pg+rapidpro@node1.log"),
        ]))
        .unwrap();
        assert_eq!(c.pgdata, Path::new("/srv/pg-15/main_1.d"));
    }

    #[test]
    fn a_configs_debug_shows_no_password() {
        let c = Config::from_env(&env(&[
            ("repl_password", "hunter2-repl"),
            ("redis_password", "hunter2-redis"),
        ]))
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("repl_password: Some(\"<redacted>\")"),
            "{shown}"
        );
        assert!(
            shown.contains("redis_password: Some(\"<redacted>\")"),
            "{shown}"
        );
        assert!(
            shown.contains("pgdata: \"/var/lib/postgresql/15/main\""),
            "{shown}"
        );
        let none = format!("{:?}", Config::from_env(&env(&[])).unwrap());
        assert!(none.contains("repl_password: None"), "{none}");
    }

    #[test]
    fn secret_parameters_are_the_private_ones_and_any_password_like_name() {
        for name in [
            "repl_password",
            "redis_password",
            "repl_pasword",
            "api_token",
        ] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in ["pgdata", "repl_user", "primary_host", "state_dir"] {
            assert!(!is_secret_param(name), "{name}");
        }
    }

    #[test]
    fn long_socket_paths_are_rejected() {
        let long = format!("/{}", "s".repeat(120));
        let e = Config::from_env(&env(&[("redis_socket", &long)])).unwrap_err();
        assert_eq!(e.param, "redis_socket");
    }

    #[test]
    fn durations_take_seconds_or_milliseconds() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("3601"), None);
        assert_eq!(parse_duration("1.5"), None);
    }

    #[test]
    fn secrets_are_not_echoed_in_errors() {
        let e = Config::from_env(&env(&[("repl_password", "hunter2\n")])).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn redis_tls_requires_its_three_files_each_named_when_missing() {
        let all = [
            ("redis_tls", "true"),
            ("redis_tls_cert", "/etc/redis/tls/node.crt"),
            ("redis_tls_key", "/etc/redis/tls/node.key"),
            ("redis_tls_ca", "/etc/redis/tls/ca.crt"),
        ];
        let c = Config::from_env(&env(&all)).unwrap();
        assert_eq!(
            c.redis_tls,
            Some(crate::redis::TlsFiles {
                ca: "/etc/redis/tls/ca.crt".into(),
                cert: "/etc/redis/tls/node.crt".into(),
                key: "/etc/redis/tls/node.key".into(),
            })
        );
        assert_eq!(
            c.redis_endpoint("10.0.0.10", 6380).to_string(),
            "10.0.0.10:6380 (TLS)"
        );
        for missing in ["redis_tls_cert", "redis_tls_key", "redis_tls_ca"] {
            let some: Vec<_> = all.iter().copied().filter(|(k, _)| *k != missing).collect();
            let e = Config::from_env(&env(&some)).unwrap_err();
            assert_eq!((e.param, e.rc()), (missing, OcfRc::ErrConfigured), "{e}");
            assert!(
                e.to_string().contains("required when redis_tls=true"),
                "{e}"
            );
        }
        let relative: Vec<_> = all
            .iter()
            .map(|&(k, v)| {
                if k == "redis_tls_ca" {
                    (k, "ca.crt")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(
            Config::from_env(&env(&relative)).unwrap_err().param,
            "redis_tls_ca"
        );
    }

    #[test]
    fn without_redis_tls_the_files_are_ignored_and_tcp_stays_plain() {
        let c = Config::from_env(&env(&[("redis_tls_ca", "/etc/redis/tls/ca.crt")])).unwrap();
        assert_eq!(c.redis_tls, None);
        assert_eq!(
            c.redis_endpoint("10.0.0.10", 6379).to_string(),
            "10.0.0.10:6379"
        );
    }

    #[test]
    fn a_tls_file_the_redis_user_cannot_read_is_explained() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rapidpro-ha-tls-perm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = dir.join("node.key");
        std::fs::write(&key, "x").unwrap();
        let me = Uid::current();
        let other = Uid::from_raw(me.as_raw() + 54321);
        let owner_gid = Gid::from_raw(std::fs::metadata(&key).unwrap().gid());
        let stranger = [Gid::from_raw(owner_gid.as_raw() + 54321)];
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let why = unreadable_by(&key, other, &stranger).expect("0600 of another owner");
        assert!(why.contains("mode 0600"), "{why}");
        // Group read for a member of the file's group is enough.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(unreadable_by(&key, other, &[owner_gid]), None);
        assert!(unreadable_by(&key, other, &stranger).is_some());
        // A directory without search permission hides a readable file.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(unreadable_by(&key, other, &stranger), None);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let why = unreadable_by(&key, other, &stranger).expect("closed directory");
        assert!(why.starts_with("directory"), "{why}");
        assert_eq!(unreadable_by(&key, Uid::from_raw(0), &stranger), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_kind_of_wrong_parameter_has_its_own_ocf_code() {
        // Wrong everywhere: Pacemaker stops the resource on every node.
        assert_eq!(Problem::Invalid.rc(), OcfRc::ErrConfigured);
        // Wrong on this host only: the resource is kept off this node.
        assert_eq!(Problem::NotInstalled.rc(), OcfRc::ErrInstalled);
        assert_eq!(Problem::WrongOnThisHost.rc(), OcfRc::ErrArgs);
        assert_eq!(Problem::Permissions.rc(), OcfRc::ErrPerm);
        let e = Config::from_env(&env(&[("pgport", "0")])).unwrap_err();
        assert_eq!((e.kind, e.rc()), (Problem::Invalid, OcfRc::ErrConfigured));
    }

    #[test]
    fn host_problems_are_told_apart_by_kind() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rapidpro-ha-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir_s = dir.display().to_string();
        let check = |vars: &[(&str, &str)]| Config::from_env(&env(vars)).unwrap().check_host();

        let e = check(&[("bindir", &format!("{dir_s}/none"))]).unwrap_err();
        assert_eq!((e.param, e.kind), ("bindir", Problem::NotInstalled), "{e}");

        let e = check(&[("system_user", "no-such-user-rapidpro")]).unwrap_err();
        assert_eq!((e.param, e.kind), ("system_user", Problem::WrongOnThisHost));

        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let e = check(&[("pgdata", &file.display().to_string())]).unwrap_err();
        assert_eq!(
            (e.param, e.kind),
            ("pgdata", Problem::WrongOnThisHost),
            "{e}"
        );

        // A data directory anyone may enter: PostgreSQL refuses it.
        let pgdata = dir.join("pgdata");
        std::fs::create_dir(&pgdata).unwrap();
        std::fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
        let pg = User::from_name("postgres")
            .unwrap()
            .expect("the postgres user");
        nix::unistd::chown(&pgdata, Some(pg.uid), Some(pg.gid)).unwrap();
        std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&[("pgdata", &pgdata.display().to_string())]).unwrap_err();
        assert_eq!((e.param, e.kind), ("pgdata", Problem::Permissions), "{e}");
        assert_eq!(e.rc(), OcfRc::ErrPerm);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_parameter_has_descriptions() {
        for p in PARAMETERS {
            assert!(
                !p.shortdesc.is_empty() && p.longdesc.len() > p.shortdesc.len(),
                "{}",
                p.name
            );
        }
    }
}
