//! Asking each node's PostgreSQL and Redis, over TCP, what they are.
//!
//! PostgreSQL is asked as the replication role (`repl_user`, database
//! `postgres`), which needs `pg_monitor` to read `pg_stat_replication` and
//! `pg_stat_wal_receiver` in full; Redis with `redis_password` if set. Every
//! connection has [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT) and
//! [`QUERY_TIMEOUT`](super::QUERY_TIMEOUT), and the nodes are asked in
//! parallel, so a powered-off node costs seconds, not minutes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Config;
use crate::deadline::Deadline;
use crate::postgres::db::{Db, Host, LocalStatus, Reach, StandbyRow, Target};
use crate::redis::{self, LinkStatus, ReplicationInfo};

/// What a node's PostgreSQL said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgProbe {
    /// Its state, when it answered.
    pub status: Option<LocalStatus>,
    /// On a primary: `pg_stat_replication`.
    pub standbys: Vec<StandbyRow>,
    /// Why it could not be asked (or a partial failure).
    pub error: Option<String>,
}

impl PgProbe {
    /// `primary`, `standby`, or `down`.
    pub fn role(&self) -> &'static str {
        match &self.status {
            Some(s) if s.in_recovery => "standby",
            Some(_) => "primary",
            None => "down",
        }
    }
}

/// What a node's Redis said.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RedisProbe {
    /// `INFO replication`, when it answered.
    pub info: Option<ReplicationInfo>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

impl RedisProbe {
    /// `master`, `replica`, or `down`.
    pub fn role(&self) -> &'static str {
        match &self.info {
            Some(i) if i.role == redis::Role::Master => "master",
            Some(_) => "replica",
            None => "down",
        }
    }

    /// A replica's link to its master: `up` or `down`; `None` on a master
    /// or when Redis did not answer.
    pub fn link(&self) -> Option<&'static str> {
        let i = self.info.as_ref()?;
        if i.role == redis::Role::Master {
            return None;
        }
        Some(match i.master_link_status {
            Some(LinkStatus::Up) => "up",
            _ => "down",
        })
    }
}

/// Timeouts of one probe.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each query.
    pub query: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: super::CONNECT_TIMEOUT,
            query: super::QUERY_TIMEOUT,
        }
    }
}

/// Asks the PostgreSQL at `addr` (port `pgport`) as `repl_user`.
pub fn postgres(addr: &str, cfg: &Config, t: Timeouts) -> PgProbe {
    let password = cfg.repl_password_for(addr, cfg.pgport, "postgres");
    let target = Target {
        host: Host::Tcp(addr),
        port: cfg.pgport,
        user: &cfg.repl_user,
        password: password.as_deref(),
        dbname: "postgres",
        peer_uid: None,
        tls: &cfg.pg_tls,
    };
    let deadline = Deadline::after(t.connect + t.query * 3);
    let db = match Db::reach(&target, t.connect, t.query, &deadline) {
        Ok(Reach::Connected(db)) => db,
        Ok(Reach::NoAnswer(r)) => {
            return PgProbe {
                error: Some(format!("{}: {r}", target.describe())),
                ..PgProbe::default()
            }
        }
        Ok(Reach::Refused(e)) => {
            return PgProbe {
                error: Some(format!("{}: {e}", target.describe())),
                ..PgProbe::default()
            }
        }
        Ok(Reach::Tls(e)) => {
            return PgProbe {
                error: Some(e.to_string()),
                ..PgProbe::default()
            }
        }
        Err(e) => {
            return PgProbe {
                error: Some(e.to_string()),
                ..PgProbe::default()
            }
        }
    };
    let status = match db.status() {
        Ok(s) => s,
        Err(e) => {
            return PgProbe {
                error: Some(e.to_string()),
                ..PgProbe::default()
            }
        }
    };
    let mut probe = PgProbe {
        status: Some(status.clone()),
        ..PgProbe::default()
    };
    if !status.in_recovery {
        match db.standbys() {
            Ok(rows) => probe.standbys = rows,
            Err(e) => probe.error = Some(e.to_string()),
        }
    }
    probe
}

/// Asks the Redis at `addr` (port `redis_port`) for `INFO replication`.
pub fn redis(addr: &str, cfg: &Config, t: Timeouts) -> RedisProbe {
    let ep = cfg.redis_endpoint(addr, cfg.redis_port);
    let result = redis::connect(&ep, cfg.redis_password.as_deref(), t.connect).and_then(|mut c| {
        c.set_timeout(t.query)?;
        c.info_replication()
    });
    match result {
        Ok(info) => RedisProbe {
            info: Some(info),
            error: None,
        },
        Err(e) => RedisProbe {
            info: None,
            error: Some(e.to_string()),
        },
    }
}

/// Probes every `(node, address)` in parallel, PostgreSQL and Redis each on
/// their own thread.
pub fn all(
    nodes: &[(String, String)],
    cfg: &Config,
    t: Timeouts,
) -> BTreeMap<String, (PgProbe, RedisProbe)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|(name, addr)| {
                let pg = s.spawn(move || postgres(addr, cfg, t));
                let rd = s.spawn(move || redis(addr, cfg, t));
                (name, pg, rd)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, pg, rd)| {
                let pg = pg.join().unwrap_or_else(|_| PgProbe {
                    error: Some("the probe panicked".into()),
                    ..PgProbe::default()
                });
                let rd = rd.join().unwrap_or_else(|_| RedisProbe {
                    info: None,
                    error: Some("the probe panicked".into()),
                });
                (name.clone(), (pg, rd))
            })
            .collect()
    })
}
