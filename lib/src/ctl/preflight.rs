//! The preflight of `rapidproctl check`: every condition that would break
//! a failover, a rejoin or replication, found before it happens.
//!
//! [`observe`] does all the I/O (connections from this node to every node's
//! PostgreSQL, a replication connection to every peer, this node's
//! `pg_hba_file_rules` over the local socket, Redis at `primary_host`, the
//! systemd unit files); [`verdicts`] turns the [`Observed`] facts into named
//! checks, each with what was found and the fix, and is pure.
//!
//! Connection failures are classified by SQLSTATE ([`ConnFail::classify`]):
//! 28000 (invalid_authorization_specification) is `pg_hba.conf` refusing,
//! 28P01 (invalid_password) a wrong password, 57P03 (cannot_connect_now) a
//! server starting up or with `hot_standby=off`; no SQLSTATE at all means
//! nothing answered (refused, unreachable, timed out).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::deadline::Deadline;
use crate::postgres::db::quote_literal;
use crate::postgres::db::{connect_tcp, TcpFailure};
use crate::postgres::hba::{self, DbRequest, HbaRequest, HbaRule, HbaVerdict};
use crate::postgres::sqlstate::ErrorKind;
use crate::postgres::tls::{PgTls, TlsError};
use crate::postgres::wire::{self, Identity, ReplTarget, WireFailure};
use crate::redis::{self as rds, RedisError, Role};
use crate::systemd::{self, UnitFiles};

use super::check::{check, Check, Status};

/// Timeout of each connection and query of the preflight.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The functions pg_rewind calls on its source server, by signature.
pub const REWIND_FUNCTIONS: [&str; 4] = [
    "pg_catalog.pg_ls_dir(text, boolean, boolean)",
    "pg_catalog.pg_stat_file(text, boolean)",
    "pg_catalog.pg_read_binary_file(text)",
    "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
];

/// Why a connection to PostgreSQL failed, by SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnFail {
    /// Nothing answered: refused, unreachable, timed out.
    NotListening(String),
    /// 28000: no `pg_hba.conf` line admits it, or a `reject` line.
    HbaRejected(String),
    /// 28P01: the password is wrong (or the role cannot log in with it).
    BadPassword(String),
    /// The server asked for a password; none is configured.
    NoPassword,
    /// 57P03: starting up, shutting down, or `hot_standby=off`.
    NotAccepting(String),
    /// TLS failed (`sslmode`, `sslrootcert`): no password was sent.
    Tls(TlsError),
    /// Anything else, with its SQLSTATE if any.
    Other(String),
}

impl ConnFail {
    /// Classifies a failure from its SQLSTATE (`None`: the server never
    /// answered with an error) and its message (only shown, never parsed).
    pub fn classify(sqlstate: Option<&str>, message: String) -> ConnFail {
        match sqlstate.map(ErrorKind::of_code) {
            None => ConnFail::NotListening(message),
            Some(ErrorKind::InvalidAuthorization) => ConnFail::HbaRejected(message),
            Some(ErrorKind::InvalidPassword) => ConnFail::BadPassword(message),
            Some(ErrorKind::CannotConnectNow) => ConnFail::NotAccepting(message),
            Some(k) => ConnFail::Other(format!("{message} (SQLSTATE {})", k.code())),
        }
    }

    fn from_wire(t: &ReplTarget<'_>, f: WireFailure) -> ConnFail {
        if let Some(e) = t.tls_error(&f) {
            return ConnFail::Tls(e);
        }
        match f {
            WireFailure::NoAnswer(m) => ConnFail::NotListening(m),
            WireFailure::Server { sqlstate, message } => Self::classify(Some(&sqlstate), message),
            WireFailure::NoPassword => ConnFail::NoPassword,
            WireFailure::Protocol(m) => ConnFail::Other(m),
            // Made a ConnFail::Tls above.
            WireFailure::Tls(f) => ConnFail::Other(f.to_string()),
        }
    }

    /// What was found and the fix, for a connection as `user` to `what`
    /// (`database postgres`, `replication`) at `target` from `from`.
    fn explain(&self, target: &str, what: &str, user: &str, from: &str) -> String {
        match self {
            ConnFail::NotListening(m) => format!(
                "nothing answers at {target} ({m}): PostgreSQL must run and listen there; \
                 add the address to listen_addresses (or '*') in postgresql.conf and restart it"
            ),
            ConnFail::HbaRejected(m) => format!(
                "pg_hba.conf at {target} refuses {user} for {what} from {from} ({m}): add \
                 `host {} {user} {from}/32 scram-sha-256` before any reject line and reload \
                 (SELECT pg_reload_conf())",
                if what == "replication" {
                    "replication"
                } else {
                    "postgres"
                }
            ),
            ConnFail::BadPassword(m) => format!(
                "{target} rejects the password of {user} ({m}): set repl_password to the role's \
                 password, or ALTER ROLE {user} PASSWORD '...' on the primary"
            ),
            ConnFail::NoPassword => format!(
                "{target} asks {user} for a password, repl_password is not set and system_user's \
                 ~/.pgpass has no usable line for it: set repl_password, or add \
                 host:port:*:{user}:password to that file (mode 0600)"
            ),
            ConnFail::NotAccepting(m) => format!(
                "{target} does not accept connections ({m}): it is starting or stopping, or a \
                 standby with hot_standby=off (set hot_standby=on and restart it)"
            ),
            ConnFail::Tls(e) => e.to_string(),
            ConnFail::Other(m) => format!("{target}: {m}"),
        }
    }
}

/// The settings and grants a node's PostgreSQL reports to `repl_user`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgFacts {
    /// `server_version_num`.
    pub version_num: u32,
    /// `wal_level`.
    pub wal_level: String,
    /// `hot_standby`.
    pub hot_standby: bool,
    /// `max_wal_senders`.
    pub max_wal_senders: u32,
    /// `wal_keep_size` in bytes.
    pub wal_keep_bytes: u64,
    /// `wal_log_hints`.
    pub wal_log_hints: bool,
    /// `data_checksums`.
    pub data_checksums: bool,
    /// `archive_mode` is on/always and an archive command or library is set.
    pub archiving: bool,
    /// Physical replication slots.
    pub physical_slots: u32,
    /// `has_function_privilege` for each of [`REWIND_FUNCTIONS`].
    pub rewind_grants: Vec<bool>,
    /// `pg_control_system().system_identifier`, when readable.
    pub system_identifier: Option<String>,
}

const FACTS_SQL_HEAD: &str =
    "SELECT current_setting('server_version_num'), current_setting('wal_level'), \
  current_setting('hot_standby'), current_setting('max_wal_senders'), \
  pg_size_bytes(current_setting('wal_keep_size'))::text, current_setting('wal_log_hints'), \
  current_setting('data_checksums'), \
  (current_setting('archive_mode') <> 'off' AND (current_setting('archive_command') <> '' \
     OR current_setting('archive_library') <> ''))::text, \
  (SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'physical')::text, \
  CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') \
    THEN (SELECT system_identifier::text FROM pg_control_system()) END";

fn facts_sql() -> String {
    let mut s = FACTS_SQL_HEAD.to_string();
    for f in REWIND_FUNCTIONS {
        s.push_str(&format!(
            ", has_function_privilege({}, 'EXECUTE')::text",
            quote_literal(f)
        ));
    }
    s
}

fn on(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("on" | "true" | "t"))
}

/// Reads a `facts_sql()` row (pure).
pub fn parse_facts(r: &[Option<String>]) -> PgFacts {
    let get = |i: usize| r.get(i).cloned().flatten();
    PgFacts {
        version_num: get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
        wal_level: get(1).unwrap_or_default(),
        hot_standby: on(get(2).as_ref()),
        max_wal_senders: get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
        wal_keep_bytes: get(4).and_then(|v| v.parse().ok()).unwrap_or(0),
        wal_log_hints: on(get(5).as_ref()),
        data_checksums: on(get(6).as_ref()),
        archiving: on(get(7).as_ref()),
        physical_slots: get(8).and_then(|v| v.parse().ok()).unwrap_or(0),
        system_identifier: get(9),
        rewind_grants: (10..10 + REWIND_FUNCTIONS.len())
            .map(|i| on(get(i).as_ref()))
            .collect(),
    }
}

/// This node's own view, over its unix socket as `system_user`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalFacts {
    /// `pg_hba_file_rules`.
    pub rules: Vec<HbaRule>,
    /// `ssl`: whether peers' libpq (sslmode=prefer) would use TLS.
    pub ssl: bool,
    /// Roles `repl_user` is a member of.
    pub member_of: Vec<String>,
    /// `server_version_num`.
    pub version_num: u32,
    /// The system identifier.
    pub system_identifier: String,
}

/// One cluster node, as seen from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeObs {
    /// Its name.
    pub name: String,
    /// Its address (`ring0_addr`).
    pub addr: String,
    /// Whether it is this node.
    pub is_self: bool,
    /// A connection to database `postgres` as `repl_user`.
    pub pg: Result<PgFacts, ConnFail>,
    /// A replication connection (`IDENTIFY_SYSTEM`); `None` for this node.
    pub repl: Option<Result<Identity, ConnFail>>,
}

/// How Redis at `primary_host:redis_primary_port` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAt {
    /// With `redis_password`: it answered, in this role.
    Answers(Role),
    /// It did not answer, or refused the password; the reason.
    Fails(String),
}

/// Redis without a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisAuth {
    /// `PING` without `AUTH` works: no `requirepass`.
    Open,
    /// `NOAUTH`: a password is required.
    PasswordRequired,
    /// `DENIED`: protected mode refuses clients from other addresses.
    ProtectedMode,
    /// Could not tell (it did not answer).
    Unknown,
}

/// The parameters the verdicts need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `primary_host:primary_port`.
    pub primary: String,
    /// `primary_host:redis_primary_port`.
    pub redis_primary: String,
    /// `repl_user`.
    pub repl_user: String,
    /// `rewind`.
    pub rewind: bool,
    /// Whether `redis_password` is set.
    pub redis_password: bool,
    /// Whether the connections to PostgreSQL use TLS when the server has
    /// it (`sslmode` other than `disable`): `hostssl` lines admit them.
    pub pg_tls: bool,
}

/// Everything observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The parameters.
    pub params: Params,
    /// This node's name.
    pub this_node: String,
    /// This node's address, when it is in `corosync.conf`.
    pub this_addr: Option<String>,
    /// Every node of `corosync.conf`, or why it could not be read.
    pub nodes: Result<Vec<NodeObs>, String>,
    /// PostgreSQL at `primary_host`.
    pub primary_pg: Result<PgFacts, ConnFail>,
    /// This node's own view, or why it could not be had.
    pub local: Result<LocalFacts, String>,
    /// Redis at `primary_host`.
    pub redis: RedisAt,
    /// Redis at `primary_host` without a password.
    pub redis_auth: RedisAuth,
    /// The unit files.
    pub units: UnitFiles,
}

// ------------------------------------------------------------------ observe

fn pg_connect(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    tls: &PgTls,
) -> Result<(tokio::runtime::Runtime, tokio_postgres::Client), ConnFail> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConnFail::Other(format!("cannot build the runtime: {e}")))?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(user)
        .dbname("postgres")
        .application_name("rapidproctl-check")
        .connect_timeout(TIMEOUT);
    if let Some(p) = password {
        cfg.password(p);
    }
    let r = rt.block_on(async {
        tokio::time::timeout(TIMEOUT, connect_tcp(&mut cfg, host, port, tls)).await
    });
    match r {
        Err(_) => Err(ConnFail::NotListening(format!(
            "no answer within {} s",
            TIMEOUT.as_secs()
        ))),
        Ok(Err(TcpFailure::NoAnswer(m))) => Err(ConnFail::NotListening(m)),
        Ok(Err(TcpFailure::Tls(failure))) => Err(ConnFail::Tls(TlsError {
            target: format!("{host}:{port}"),
            tls: tls.clone(),
            failure,
        })),
        Ok(Err(TcpFailure::Pg(e))) => Err(match e.as_db_error() {
            Some(db) => ConnFail::classify(Some(db.code().code()), db.message().to_string()),
            None if password.is_none() && !has_io_source(&e) => ConnFail::NoPassword,
            None => ConnFail::NotListening(e.to_string()),
        }),
        Ok(Ok(client)) => Ok((rt, client)),
    }
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        if inner.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        src = inner.source();
    }
    false
}

fn query_rows(
    rt: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let r = rt.block_on(async { tokio::time::timeout(TIMEOUT, client.simple_query(sql)).await });
    match r {
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(match e.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => e.to_string(),
        }),
        Ok(Ok(msgs)) => Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()),
    }
}

fn pg_facts(host: &str, port: u16, cfg: &Config) -> Result<PgFacts, ConnFail> {
    let password = cfg.repl_password_for(host, port, "postgres");
    let (rt, client) = pg_connect(host, port, &cfg.repl_user, password.as_deref(), &cfg.pg_tls)?;
    let rows = query_rows(&rt, &client, &facts_sql()).map_err(ConnFail::Other)?;
    Ok(parse_facts(rows.first().map(Vec::as_slice).unwrap_or(&[])))
}

fn local_facts(cfg: &Config, deadline: &Deadline) -> Result<LocalFacts, String> {
    let db = super::postgres::connect_local(cfg, deadline).map_err(|e| e.to_string())?;
    let rules = db
        .rows("pg_hba_file_rules", hba::RULES_SQL)
        .map_err(|e| e.to_string())?;
    let sql = format!(
        "SELECT current_setting('ssl'), current_setting('server_version_num'), \
         (SELECT system_identifier::text FROM pg_control_system()), \
         (SELECT string_agg(rolname, chr(31)) FROM pg_roles r WHERE r.rolname <> {u} \
            AND EXISTS (SELECT 1 FROM pg_roles me WHERE me.rolname = {u}) \
            AND pg_has_role({u}, r.oid, 'MEMBER'))",
        u = quote_literal(&cfg.repl_user)
    );
    let r = db
        .row("the local settings", &sql)
        .map_err(|e| e.to_string())?;
    let get = |i: usize| r.get(i).cloned().flatten();
    Ok(LocalFacts {
        rules: hba::parse_rows(&rules),
        ssl: on(get(0).as_ref()),
        version_num: get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
        system_identifier: get(2).unwrap_or_default(),
        member_of: get(3)
            .map(|s| s.split('\u{1f}').map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

fn redis_at(cfg: &Config) -> (RedisAt, RedisAuth) {
    let ep = cfg.redis_endpoint(&cfg.primary_host, cfg.redis_primary_port);
    let at = match rds::connect(&ep, cfg.redis_password.as_deref(), TIMEOUT)
        .and_then(|mut c| c.info_replication())
    {
        Ok(info) => RedisAt::Answers(info.role),
        Err(e) => RedisAt::Fails(e.to_string()),
    };
    let auth = match rds::connect(&ep, None, TIMEOUT).and_then(|mut c| c.ping()) {
        Ok(()) => RedisAuth::Open,
        Err(RedisError::Query { source, .. }) => match source.code() {
            Some("NOAUTH") => RedisAuth::PasswordRequired,
            Some("DENIED") => RedisAuth::ProtectedMode,
            _ => RedisAuth::Unknown,
        },
        Err(_) => RedisAuth::Unknown,
    };
    (at, auth)
}

/// Observes everything, the nodes in parallel.
pub fn observe(
    cluster: &Cluster,
    cfg: &Config,
    corosync_conf: &Path,
    unit_roots: &[&Path],
    deadline: &Deadline,
) -> Observed {
    let this_node = cluster.local_node_name(None, deadline).to_string();
    let nodes_map = super::corosync::addresses(corosync_conf).map_err(|e| e.to_string());
    let this_addr = nodes_map
        .as_ref()
        .ok()
        .and_then(|m: &BTreeMap<String, String>| m.get(&this_node).cloned());
    let (nodes, primary_pg, local, (redis, redis_auth)) = std::thread::scope(|s| {
        let node_handles: Vec<_> = match &nodes_map {
            Ok(m) => m
                .iter()
                .map(|(name, addr)| {
                    let is_self = *name == this_node;
                    let pg = s.spawn(move || pg_facts(addr, cfg.pgport, cfg));
                    let repl = (!is_self).then(|| {
                        s.spawn(move || {
                            let password = cfg.repl_password_for(addr, cfg.pgport, "replication");
                            let target = ReplTarget {
                                host: addr,
                                port: cfg.pgport,
                                user: &cfg.repl_user,
                                password: password.as_deref(),
                                tls: &cfg.pg_tls,
                            };
                            wire::identify_system(&target, TIMEOUT * 2)
                                .map_err(|f| ConnFail::from_wire(&target, f))
                        })
                    });
                    (name.clone(), addr.clone(), is_self, pg, repl)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let primary = s.spawn(|| pg_facts(&cfg.primary_host, cfg.primary_port, cfg));
        let redis = s.spawn(|| redis_at(cfg));
        let local = local_facts(cfg, deadline);
        let panicked = || ConnFail::Other("the probe panicked".into());
        let node_obs: Vec<NodeObs> = node_handles
            .into_iter()
            .map(|(name, addr, is_self, pg, repl)| NodeObs {
                name,
                addr,
                is_self,
                pg: pg.join().unwrap_or_else(|_| Err(panicked())),
                repl: repl.map(|h| h.join().unwrap_or_else(|_| Err(panicked()))),
            })
            .collect();
        (
            node_obs,
            primary.join().unwrap_or_else(|_| Err(panicked())),
            local,
            redis.join().unwrap_or((
                RedisAt::Fails("the probe panicked".into()),
                RedisAuth::Unknown,
            )),
        )
    });
    let nodes = nodes_map.map(|_| nodes);
    Observed {
        params: Params {
            primary: format!("{}:{}", cfg.primary_host, cfg.primary_port),
            redis_primary: format!("{}:{}", cfg.primary_host, cfg.redis_primary_port),
            repl_user: cfg.repl_user.clone(),
            rewind: cfg.rewind,
            redis_password: cfg.redis_password.is_some(),
            pg_tls: cfg.pg_tls.effective_mode() != crate::postgres::tls::SslMode::Disable,
        },
        this_node,
        this_addr,
        nodes,
        primary_pg,
        local,
        redis,
        redis_auth,
        units: systemd::observe(unit_roots, &cfg.datadir),
    }
}

// ----------------------------------------------------------------- verdicts

fn major(version_num: u32) -> u32 {
    version_num / 10000
}

/// The checks (pure).
pub fn verdicts(o: &Observed) -> Vec<Check> {
    let p = &o.params;
    let from = o.this_addr.clone().unwrap_or_else(|| o.this_node.clone());
    let mut v = Vec::new();

    // 1. PostgreSQL at primary_host and at every node.
    v.push(match &o.primary_pg {
        Ok(_) => check(
            "postgres at primary_host",
            Status::Ok,
            format!("{} answers {} from {}", p.primary, p.repl_user, o.this_node),
        ),
        Err(f) => check(
            "postgres at primary_host",
            Status::Error,
            f.explain(&p.primary, "database postgres", &p.repl_user, &from),
        ),
    });
    let nodes: &[NodeObs] = match &o.nodes {
        Ok(n) => n,
        Err(e) => {
            v.push(check(
                "nodes",
                Status::Error,
                format!("cannot list the nodes from corosync.conf: {e}"),
            ));
            &[]
        }
    };
    for n in nodes {
        let target = format!("{} ({})", n.name, n.addr);
        v.push(match &n.pg {
            Ok(_) => check(
                format!("postgres on {}", n.name),
                Status::Ok,
                format!("{target} admits {} to database postgres", p.repl_user),
            ),
            Err(f) => check(
                format!("postgres on {}", n.name),
                Status::Error,
                f.explain(&target, "database postgres", &p.repl_user, &from),
            ),
        });
        if let Some(r) = &n.repl {
            v.push(match r {
                Ok(_) => check(
                    format!("replication to {}", n.name),
                    Status::Ok,
                    format!("{target} admits {} for replication", p.repl_user),
                ),
                Err(f) => check(
                    format!("replication to {}", n.name),
                    Status::Error,
                    f.explain(&target, "replication", &p.repl_user, &from),
                ),
            });
        }
    }

    // 2. This node's pg_hba.conf, for each peer.
    match &o.local {
        Ok(l) => {
            for r in l.rules.iter().filter(|r| r.error.is_some()) {
                v.push(check(
                    format!("pg_hba.conf line {}", r.line),
                    Status::Error,
                    format!(
                        "{}: PostgreSQL ignores the whole file on reload and keeps its old rules; fix the line",
                        r.error.as_deref().unwrap_or("")
                    ),
                ));
            }
            for n in nodes.iter().filter(|n| !n.is_self) {
                v.push(hba_check(l, n, &p.repl_user, &o.this_node, p.pg_tls));
            }
        }
        Err(e) => v.push(check(
            "pg_hba here",
            Status::Warning,
            format!(
                "cannot read this node's pg_hba_file_rules over the local socket ({e}): \
                 run check again with PostgreSQL running here"
            ),
        )),
    }

    // 3. pg_rewind grants (on the primary; they replicate).
    let facts: Vec<(&str, &PgFacts)> = nodes
        .iter()
        .filter_map(|n| n.pg.as_ref().ok().map(|f| (n.name.as_str(), f)))
        .collect();
    let grants = o
        .primary_pg
        .as_ref()
        .ok()
        .or_else(|| facts.first().map(|f| f.1));
    v.push(match grants {
        None => check(
            "pg_rewind grants",
            Status::Warning,
            "no PostgreSQL answered: cannot tell",
        ),
        Some(f) => {
            let missing: Vec<&str> = REWIND_FUNCTIONS
                .iter()
                .zip(&f.rewind_grants)
                .filter(|(_, ok)| !**ok)
                .map(|(name, _)| *name)
                .collect();
            if missing.is_empty() {
                check(
                    "pg_rewind grants",
                    Status::Ok,
                    format!("{} may EXECUTE what pg_rewind needs", p.repl_user),
                )
            } else {
                let fix = missing
                    .iter()
                    .map(|m| format!("GRANT EXECUTE ON FUNCTION {m} TO {};", p.repl_user))
                    .collect::<Vec<_>>()
                    .join(" ");
                if p.rewind {
                    check(
                        "pg_rewind grants",
                        Status::Error,
                        format!(
                            "rewind=true but {} may not EXECUTE {}: pg_rewind fails with \
                             'permission denied'; on the primary run: {fix}",
                            p.repl_user,
                            missing.join(", ")
                        ),
                    )
                } else {
                    check(
                        "pg_rewind grants",
                        Status::Ok,
                        format!(
                            "{} may not EXECUTE {}: needed only with rewind=true ({fix})",
                            p.repl_user,
                            missing.join(", ")
                        ),
                    )
                }
            }
        }
    });

    // 4.-5. Settings of every node that answered.
    let per_node = |name: &str, bad: &dyn Fn(&PgFacts) -> Option<String>, fix: &str| -> Check {
        if facts.is_empty() {
            return check(name, Status::Warning, "no node answered: cannot tell");
        }
        let problems: Vec<String> = facts
            .iter()
            .filter_map(|(n, f)| bad(f).map(|b| format!("{n}: {b}")))
            .collect();
        let asked: Vec<&str> = facts.iter().map(|f| f.0).collect();
        if problems.is_empty() {
            check(name, Status::Ok, format!("right on {}", asked.join(", ")))
        } else {
            check(
                name,
                Status::Error,
                format!("{}; fix: {fix}", problems.join("; ")),
            )
        }
    };
    if p.rewind {
        v.push(per_node(
            "wal_log_hints",
            &|f| {
                (!f.wal_log_hints && !f.data_checksums).then(|| {
                    "wal_log_hints=off and no data checksums: pg_rewind refuses to run".to_string()
                })
            },
            "ALTER SYSTEM SET wal_log_hints = on; then restart PostgreSQL on that node",
        ));
    } else {
        v.push(check(
            "wal_log_hints",
            Status::Ok,
            "rewind=false: pg_rewind is not used",
        ));
    }
    v.push(per_node(
        "wal_level",
        &|f| {
            (f.wal_level != "replica" && f.wal_level != "logical")
                .then(|| format!("wal_level={}: no streaming replication", f.wal_level))
        },
        "ALTER SYSTEM SET wal_level = replica; then restart PostgreSQL on that node",
    ));
    v.push(per_node(
        "hot_standby",
        &|f| {
            (!f.hot_standby).then(|| {
                "hot_standby=off: the standby accepts no connection, so the agent cannot watch it"
                    .to_string()
            })
        },
        "ALTER SYSTEM SET hot_standby = on; then restart PostgreSQL on that node",
    ));
    let n_nodes = nodes.len() as u32;
    v.push(per_node(
        "max_wal_senders",
        &|f| {
            (f.max_wal_senders < n_nodes).then(|| {
                format!(
                    "max_wal_senders={} is less than the {n_nodes} nodes: a standby (or pg_rewind, \
                     pg_basebackup) is refused",
                    f.max_wal_senders
                )
            })
        },
        &format!(
            "ALTER SYSTEM SET max_wal_senders = {}; then restart PostgreSQL on that node",
            n_nodes.max(10)
        ),
    ));
    v.push(per_node(
        "wal retention",
        &|f| {
            (f.wal_keep_bytes == 0 && f.physical_slots == 0 && !f.archiving).then(|| {
                "wal_keep_size=0, no replication slot and no archiving: a standby or old primary \
                 that falls behind finds its WAL removed and can never catch up"
                    .to_string()
            })
        },
        "ALTER SYSTEM SET wal_keep_size = '1GB'; SELECT pg_reload_conf();",
    ));

    // 9. Same major version and system identifier everywhere.
    let mut ids: Vec<(String, Option<u32>, Option<String>)> = Vec::new();
    for n in nodes {
        let (mut ver, mut sysid) = (None, None);
        if n.is_self {
            if let Ok(l) = &o.local {
                ver = Some(major(l.version_num));
                sysid = Some(l.system_identifier.clone());
            }
        }
        if let Some(Ok(id)) = &n.repl {
            ver = ver.or_else(|| {
                id.server_version
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|m| m.parse().ok())
            });
            sysid = sysid.or(Some(id.system_identifier.clone()));
        }
        if let Ok(f) = &n.pg {
            ver = ver.or(Some(major(f.version_num)));
            sysid = sysid.or(f.system_identifier.clone());
        }
        ids.push((n.name.clone(), ver, sysid));
    }
    v.push(same_everywhere(
        "postgres version",
        ids.iter()
            .map(|(n, v, _)| (n.as_str(), v.map(|v| v.to_string()))),
        "install the same PostgreSQL major version (and bindir) on every node",
    ));
    v.push(same_everywhere(
        "system identifier",
        ids.iter().map(|(n, _, s)| (n.as_str(), s.clone())),
        "the nodes hold different database clusters: rebuild the odd ones from the primary \
         (rapidproctl rebuild NODE, or pg_basebackup)",
    ));

    // 6. Redis at primary_host.
    v.push(match &o.redis {
        RedisAt::Answers(role) => check(
            "redis at primary_host",
            if *role == Role::Master {
                Status::Ok
            } else {
                Status::Warning
            },
            format!(
                "{} answers ({}){}",
                p.redis_primary,
                if *role == Role::Master {
                    "master"
                } else {
                    "a replica"
                },
                if *role == Role::Master {
                    ""
                } else {
                    ": the promoted node's Redis should answer there"
                }
            ),
        ),
        RedisAt::Fails(e) => check(
            "redis at primary_host",
            Status::Error,
            format!(
                "{e}: replicas follow {} and never connect; the primary's redis.conf must \
                 `bind` an address that includes primary_host (0.0.0.0, or add the VIP with \
                 net.ipv4.ip_nonlocal_bind=1), and redis_password must match requirepass",
                p.redis_primary
            ),
        ),
    });
    v.push(match (o.redis_auth, p.redis_password) {
        (RedisAuth::PasswordRequired, true) => check(
            "redis requirepass",
            Status::Ok,
            "set, and redis_password is set",
        ),
        (RedisAuth::PasswordRequired, false) => check(
            "redis requirepass",
            Status::Error,
            format!(
                "Redis at {} requires a password but redis_password is not set: replicas get no \
                 masterauth and cannot replicate; set redis_password to its requirepass",
                p.redis_primary
            ),
        ),
        (RedisAuth::Open, _) => check(
            "redis requirepass",
            Status::Warning,
            format!(
                "Redis at {} has no requirepass: anyone who reaches it can read and write; set \
                 requirepass in redis.conf on every node and the same value in redis_password",
                p.redis_primary
            ),
        ),
        (RedisAuth::ProtectedMode, _) => check(
            "redis requirepass",
            Status::Error,
            format!(
                "Redis at {} is in protected mode with no password: it refuses replicas from \
                 other addresses; set requirepass (and redis_password), or protected-mode no",
                p.redis_primary
            ),
        ),
        (RedisAuth::Unknown, _) => check(
            "redis requirepass",
            Status::Warning,
            "cannot tell: Redis at primary_host did not answer",
        ),
    });

    // 7. systemd units.
    let units = systemd::verdict(&o.units);
    v.push(if units.is_empty() {
        check(
            "systemd units",
            Status::Ok,
            "postgresql and redis-server are not started at boot (Pacemaker owns them)",
        )
    } else {
        check(
            "systemd units",
            Status::Error,
            format!(
                "{} (at boot they would start PostgreSQL and Redis outside Pacemaker)",
                units.join("; ")
            ),
        )
    });
    v
}

/// `tls`: whether the peer's agent and WAL receiver ask for TLS (`sslmode`);
/// they get it where this server has `ssl=on`.
fn hba_check(l: &LocalFacts, peer: &NodeObs, user: &str, this_node: &str, tls: bool) -> Check {
    let name = format!("pg_hba for {}", peer.name);
    let Ok(addr) = peer.addr.parse::<IpAddr>() else {
        return check(
            name,
            Status::Warning,
            format!("{} is not an IP address: cannot evaluate", peer.addr),
        );
    };
    let mut problems = Vec::new();
    let mut fine = Vec::new();
    let mut undecided = Vec::new();
    // Both the WAL receiver (primary_conninfo) and the agent's own
    // connections use the agent's sslmode.
    let ssl = tls && l.ssl;
    for (db, label) in [
        (DbRequest::Replication, "replication"),
        (DbRequest::Named("postgres"), "postgres"),
    ] {
        let req = HbaRequest {
            database: db,
            user,
            member_of: &l.member_of,
            addr,
            ssl,
        };
        match hba::evaluate(&l.rules, &req) {
            HbaVerdict::Admitted { line, method } => {
                fine.push(format!("{label}: line {line} ({method})"))
            }
            HbaVerdict::Rejected { line } => problems.push(format!(
                "{label}: line {line} rejects it; remove it or put `host {label} {user} {addr}/32 \
                 scram-sha-256` before it, then SELECT pg_reload_conf()"
            )),
            HbaVerdict::NoEntry => problems.push(format!(
                "{label}: no line admits it; add `host {label} {user} {addr}/32 scram-sha-256`, \
                 then SELECT pg_reload_conf()"
            )),
            HbaVerdict::Undecided { line, address } => undecided.push(format!(
                "{label}: line {line} names {address}, which is not judged here"
            )),
        }
    }
    let who = format!(
        "{this_node}'s pg_hba.conf for {user} from {} ({addr})",
        peer.name
    );
    if !problems.is_empty() {
        check(
            name,
            Status::Error,
            format!("{who}: {}", problems.join("; ")),
        )
    } else if !undecided.is_empty() {
        check(
            name,
            Status::Warning,
            format!("{who}: {}", undecided.join("; ")),
        )
    } else {
        check(name, Status::Ok, format!("{who}: {}", fine.join("; ")))
    }
}

fn same_everywhere<'a>(
    name: &str,
    values: impl Iterator<Item = (&'a str, Option<String>)>,
    fix: &str,
) -> Check {
    let mut by_value: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (node, v) in values {
        match v {
            Some(v) => by_value.entry(v).or_default().push(node),
            None => unknown.push(node),
        }
    }
    let shown = by_value
        .iter()
        .map(|(v, n)| format!("{v} on {}", n.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    match by_value.len() {
        0 => check(name, Status::Warning, "no node answered: cannot tell"),
        1 if unknown.is_empty() => check(name, Status::Ok, shown),
        1 => check(
            name,
            Status::Warning,
            format!("{shown}; not known for {}", unknown.join(", ")),
        ),
        _ => check(name, Status::Error, format!("{shown}: {fix}")),
    }
}

#[cfg(test)]
mod tests;
