//! `rapidproctl postgres`: this node's PostgreSQL replication view, the
//! replacement of `rapidpro-postgres-status | grep wal`.
//!
//! Connects over the local unix socket as `system_user` with peer
//! authentication, as the agent does (`pghost`, `pgport`, `system_user` from
//! the stack resource; Debian's defaults if the CIB cannot be read), and
//! shows both sides: the WAL senders (`pg_stat_replication`, on a primary)
//! and the WAL receiver (`pg_stat_wal_receiver`, on a standby).
//!
//! JSON fields: `role` (`primary`, `standby`), `timeline`, `current_lsn`,
//! `receive_lsn`, `replay_lsn`, `replay_paused`, `receive_replay_lag_bytes`
//! (received but not yet replayed), `replay_delay` (time since the last
//! replayed transaction's commit), `synchronous_standby_names`, `senders[]`
//! {`application_name`, `client_addr`, `state`, `sync_state`, `sent_lsn`,
//! `write_lsn`, `flush_lsn`, `replay_lsn`, `lag_bytes`, `write_lag`,
//! `flush_lag`, `replay_lag`}, `receiver` {`status`, `sender_host`,
//! `sender_port`, `received_tli`, `written_lsn`, `flushed_lsn`,
//! `latest_end_lsn`, `last_msg_receipt_time`, `slot_name`} or `null`.

use serde::Serialize;

use crate::cluster::Cluster;
use crate::config::{names, Config};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::postgres::db::{Db, Host, LocalStatus, Target};
use crate::postgres::queries::{StandbyRow, WalReceiverRow};
use crate::postgres::tls::PgTls;
use crate::postgres::Lsn;

use super::table::{pairs, Table};
use super::{cib, human_bytes, Error, Outcome};

const DELAY_SQL: &str = "SELECT CASE WHEN pg_is_in_recovery() \
  THEN (now() - pg_last_xact_replay_timestamp())::text END";

/// One WAL sender as shown, from its `pg_stat_replication` row
/// ([`StandbyRow`], the agent's row too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sender {
    /// The standby's name (its node name).
    pub application_name: String,
    /// Its address.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`...
    pub state: String,
    /// `async`, `sync`, `quorum`, `potential`.
    pub sync_state: String,
    /// Sent.
    pub sent_lsn: Option<String>,
    /// Written on the standby.
    pub write_lsn: Option<String>,
    /// Flushed on the standby.
    pub flush_lsn: Option<String>,
    /// Replayed on the standby.
    pub replay_lsn: Option<String>,
    /// Bytes not yet replayed there.
    pub lag_bytes: Option<u64>,
    /// `write_lag` interval.
    pub write_lag: Option<String>,
    /// `flush_lag` interval.
    pub flush_lag: Option<String>,
    /// `replay_lag` interval.
    pub replay_lag: Option<String>,
}

/// The WAL receiver, as the agent reads it.
pub type Receiver = WalReceiverRow;

/// The whole view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationView {
    /// `primary` or `standby`.
    pub role: String,
    /// Timeline.
    pub timeline: Option<u32>,
    /// Primary: current WAL location.
    pub current_lsn: Option<String>,
    /// Standby: last received.
    pub receive_lsn: Option<String>,
    /// Standby: last replayed.
    pub replay_lsn: Option<String>,
    /// Standby: replay paused.
    pub replay_paused: bool,
    /// Standby: received minus replayed.
    pub receive_replay_lag_bytes: Option<u64>,
    /// Standby: time since the last replayed commit.
    pub replay_delay: Option<String>,
    /// `synchronous_standby_names`.
    pub synchronous_standby_names: String,
    /// WAL senders.
    pub senders: Vec<Sender>,
    /// The WAL receiver.
    pub receiver: Option<Receiver>,
}

impl Sender {
    /// The sender as shown, from the row the agent reads too (pure).
    pub fn of(r: &StandbyRow) -> Sender {
        let lsn = |l: Option<Lsn>| l.map(|l| l.to_string());
        Sender {
            application_name: r.name.clone(),
            client_addr: r.client_addr.clone(),
            state: r.state.to_string(),
            sync_state: r.sync_state.to_string(),
            sent_lsn: lsn(r.sent_lsn),
            write_lsn: lsn(r.write_lsn),
            flush_lsn: lsn(r.flush_lsn),
            replay_lsn: lsn(r.replay_lsn),
            lag_bytes: r.replay_lag_bytes(),
            write_lag: r.write_lag_time.clone(),
            flush_lag: r.flush_lag_time.clone(),
            replay_lag: r.replay_lag_time.clone(),
        }
    }
}

/// Builds the view from what the server said (pure).
pub fn view(
    st: &LocalStatus,
    senders: Vec<Sender>,
    receiver: Option<Receiver>,
    replay_delay: Option<String>,
) -> ReplicationView {
    let lsn = |l: Option<Lsn>| l.map(|l| l.to_string());
    ReplicationView {
        role: if st.in_recovery { "standby" } else { "primary" }.to_string(),
        timeline: st.position().map(|p| p.timeline),
        current_lsn: lsn(st.current_lsn),
        receive_lsn: if st.in_recovery {
            lsn(st.receive_lsn)
        } else {
            None
        },
        replay_lsn: if st.in_recovery {
            lsn(st.replay_lsn)
        } else {
            None
        },
        replay_paused: st.replay_paused,
        receive_replay_lag_bytes: match (st.in_recovery, st.receive_lsn, st.replay_lsn) {
            (true, Some(rcv), Some(rpl)) => Some(rcv.bytes_after(rpl)),
            _ => None,
        },
        replay_delay,
        synchronous_standby_names: st.synchronous_standby_names.clone(),
        senders,
        receiver,
    }
}

fn dash(v: &Option<impl ToString>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

/// The view as text.
pub fn render(v: &ReplicationView) -> String {
    let mut items = vec![("role", v.role.clone()), ("timeline", dash(&v.timeline))];
    if v.role == "primary" {
        items.push(("current lsn", dash(&v.current_lsn)));
        items.push((
            "synchronous_standby_names",
            if v.synchronous_standby_names.is_empty() {
                "'' (asynchronous)".into()
            } else {
                v.synchronous_standby_names.clone()
            },
        ));
    } else {
        items.push(("receive lsn", dash(&v.receive_lsn)));
        items.push(("replay lsn", dash(&v.replay_lsn)));
        items.push((
            "received, not replayed",
            dash(&v.receive_replay_lag_bytes.map(human_bytes)),
        ));
        items.push((
            "replay paused",
            if v.replay_paused { "yes" } else { "no" }.into(),
        ));
        items.push((
            "last replayed commit",
            dash(&v.replay_delay.as_ref().map(|d| format!("{d} ago"))),
        ));
    }
    let mut s = pairs(&items);
    s.push_str("\nWAL senders (pg_stat_replication):\n");
    if v.senders.is_empty() {
        s.push_str("  none\n");
    } else {
        let mut t = Table::new(&[
            "Standby",
            "Address",
            "State",
            "Sync",
            "Sent",
            "Flushed",
            "Replayed",
            "Lag",
            "Replay lag",
        ]);
        for x in &v.senders {
            t.row(vec![
                x.application_name.clone(),
                dash(&x.client_addr),
                x.state.clone(),
                x.sync_state.clone(),
                dash(&x.sent_lsn),
                dash(&x.flush_lsn),
                dash(&x.replay_lsn),
                dash(&x.lag_bytes.map(human_bytes)),
                dash(&x.replay_lag),
            ]);
        }
        s.push_str(&t.render());
    }
    s.push_str("\nWAL receiver (pg_stat_wal_receiver):\n");
    match &v.receiver {
        None => s.push_str("  none\n"),
        Some(r) => {
            let from = match (&r.sender_host, r.sender_port) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.clone(),
                _ => "-".into(),
            };
            let items = [
                ("status", r.status.to_string()),
                ("from", from),
                ("timeline", dash(&r.received_tli)),
                ("flushed lsn", dash(&r.flushed_lsn)),
                ("latest end lsn", dash(&r.latest_end_lsn)),
                ("last message", dash(&r.last_msg_receipt_time)),
            ];
            for line in pairs(&items).lines() {
                s.push_str(&format!("  {line}\n"));
            }
        }
    }
    s
}

/// The stack's parameters from the CIB or, when the CIB cannot be read or
/// has no stack resource, the agent's defaults (with a warning).
pub fn local_config(cluster: &Cluster, deadline: &Deadline) -> Config {
    let from_cib = cib::query(cluster, deadline).and_then(|f| Ok(f.require_stack()?.config()?));
    match from_cib {
        Ok(c) => c,
        Err(e) => {
            log::warn!("{e}; using the agent's default parameters");
            let env = OcfEnv::from_vars([(
                format!("OCF_RESKEY_{}", names::PRIMARY_HOST),
                "localhost".to_string(),
            )]);
            Config::from_env(&env).expect("the defaults are valid")
        }
    }
}

/// Connects to the local server as `system_user` over its socket.
pub fn connect_local(cfg: &Config, deadline: &Deadline) -> Result<Db, Error> {
    let (uid, _) = cfg.system_user()?;
    let target = Target {
        host: Host::Socket(&cfg.pghost),
        port: cfg.pgport,
        user: &cfg.system_user,
        password: None,
        dbname: "postgres",
        peer_uid: Some(uid),
        tls: &PgTls::DISABLED,
    };
    Ok(Db::connect(
        &target,
        super::QUERY_TIMEOUT,
        super::QUERY_TIMEOUT,
        deadline,
    )?)
}

/// `rapidproctl postgres`.
pub fn postgres(cluster: &Cluster, deadline: &Deadline) -> Result<Outcome, Error> {
    let cfg = local_config(cluster, deadline);
    let db = connect_local(&cfg, deadline)?;
    let st = db.status()?;
    let senders = db.standbys()?.iter().map(Sender::of).collect();
    let receiver = db.wal_receiver()?;
    let delay = db
        .row("the replay delay query", DELAY_SQL)?
        .first()
        .cloned()
        .flatten();
    let v = view(&st, senders, receiver, delay);
    let json = serde_json::to_value(&v).expect("the view serializes");
    Ok(Outcome::ok(json, render(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::queries::{parse_receiver, parse_standby, parse_status};

    fn row(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|c| c.map(str::to_string)).collect()
    }

    fn primary_status() -> LocalStatus {
        parse_status(&row(&[
            Some("f"),
            Some("0/3000148"),
            Some("000000020000000000000003"),
            Some("0/1789158"),
            Some("0/1789158"),
            Some("f"),
            Some("2"),
            Some("0"),
            None,
            None,
            Some("ANY 1 (*)"),
            Some(""),
            Some("150010"),
        ]))
        .unwrap()
    }

    #[test]
    fn a_primary_shows_its_senders_and_no_receiver() {
        let sender = Sender::of(
            &parse_standby(&row(&[
                Some("node2"),
                Some("10.200.200.12"),
                Some("streaming"),
                Some("quorum"),
                Some("0/3000148"),
                Some("0/3000148"),
                Some("0/3000148"),
                Some("0/3000100"),
                Some("0/3000148"),
                Some("00:00:00.000412"),
                None,
                None,
            ]))
            .unwrap(),
        );
        assert_eq!(sender.lag_bytes, Some(72));
        let v = view(&primary_status(), vec![sender], None, None);
        assert_eq!(v.role, "primary");
        assert_eq!(v.timeline, Some(2));
        assert_eq!(v.current_lsn.as_deref(), Some("0/3000148"));
        assert_eq!(v.replay_lsn, None);
        let text = render(&v);
        assert!(text.starts_with("role:"), "{text}");
        assert!(
            text.contains("| node2   | 10.200.200.12 | streaming | quorum |"),
            "{text}"
        );
        assert!(
            text.contains("WAL receiver (pg_stat_wal_receiver):\n  none\n"),
            "{text}"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["senders"][0]["application_name"], "node2");
        assert_eq!(json["receiver"], serde_json::Value::Null);
    }

    #[test]
    fn a_standby_shows_its_receiver_and_what_it_has_not_replayed() {
        let st = parse_status(&row(&[
            Some("t"),
            None,
            None,
            Some("0/9000000"),
            Some("0/5000000"),
            Some("t"),
            Some("2"),
            Some("2"),
            Some("streaming"),
            Some("2"),
            Some(""),
            Some("host=x"),
            Some("150010"),
        ]))
        .unwrap();
        let rcv = parse_receiver(&row(&[
            Some("streaming"),
            Some("10.200.200.100"),
            Some("5432"),
            Some("2"),
            Some("0/9000000"),
            Some("0/9000000"),
            Some("0/9000000"),
            Some("2026-11-26 00:00:00+00"),
            None,
        ]))
        .unwrap();
        let v = view(&st, vec![], Some(rcv), Some("00:00:01.5".into()));
        assert_eq!(v.role, "standby");
        assert_eq!(v.receive_replay_lag_bytes, Some(0x400_0000));
        assert!(v.replay_paused);
        let text = render(&v);
        assert!(text.contains("replay paused:"), "{text}");
        assert!(
            text.contains("from:            10.200.200.100:5432"),
            "{text}"
        );
        assert!(
            text.contains("WAL senders (pg_stat_replication):\n  none\n"),
            "{text}"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["receiver"]["sender_port"], 5432);
        assert_eq!(json["receiver"]["status"], "streaming");
    }
}
