//! Server errors classified by SQLSTATE against a real PostgreSQL 15: a
//! wrong password, a missing database, a peer authentication failure, and
//! a standby that accepts no connections (the postmaster state of a standby
//! not yet consistent, here held by `hot_standby=off`). Only the code
//! decides: the agent used to match the message for "starting up", and a
//! standby answering "the database system is not accepting connections"
//! failed its monitor (OCF_ERR_GENERIC) instead of reporting it degraded.

use std::io::Write;
use std::time::Duration;

use rapidpro_ha::deadline::Deadline;
use rapidpro_ha::postgres::db::{Db, Host, Reach, Target};
use rapidpro_ha::postgres::sqlstate::ErrorKind;
use rapidpro_ha::postgres::tls::PgTls;
use rapidpro_ha_harness::{Node, Pair, LOOPBACK, REPL_PASSWORD, REPL_USER};

use super::agent;
use super::agent_node::OCF_SUCCESS;

const OCF_DEGRADED: i32 = 190;

/// Connects to `node` and returns what refused the session.
#[track_caller]
fn refused(node: &Node, host: Host<'_>, user: &str, password: Option<&str>, db: &str) -> ErrorKind {
    let t = Target {
        host,
        port: node.pgport,
        user,
        password,
        dbname: db,
        peer_uid: None,
        tls: &PgTls::DISABLED,
    };
    let s = Duration::from_secs(10);
    let deadline = Deadline::after(Duration::from_secs(20));
    match Db::reach(&t, s, s, &deadline) {
        Ok(Reach::Refused(e)) => {
            // The session error says the same through Db::connect.
            let err = Db::connect(&t, s, s, &deadline).unwrap_err();
            assert_eq!(err.server_error_kind(), Some(&e.kind), "{err}");
            assert_eq!(err.is_cannot_connect_now(), e.is_cannot_connect_now());
            e.kind
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn refusals_are_classified_by_their_sqlstate() {
    let pair = Pair::new("pg_sqlstate");
    let n1 = &pair.nodes[0];
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);

    let tcp = Host::Tcp(LOOPBACK);
    assert_eq!(
        refused(n1, tcp, REPL_USER, Some("not-the-password"), "postgres"),
        ErrorKind::InvalidPassword
    );
    assert_eq!(
        refused(n1, tcp, REPL_USER, Some(REPL_PASSWORD), "no_such_database"),
        ErrorKind::InvalidCatalogName
    );
    // Root connecting as another role over the socket: peer authentication
    // fails.
    assert_eq!(
        refused(
            n1,
            Host::Socket(&n1.pg_socket_dir),
            REPL_USER,
            None,
            "postgres"
        ),
        ErrorKind::InvalidAuthorization
    );

    // A standby without hot standby: the postmaster answers as for a
    // standby not yet consistent, 57P03, "not accepting connections".
    n1.try_pg_ctl(&["stop", "-w", "-m", "fast"]).unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(n1.pgdata.join("postgresql.conf"))
        .unwrap();
    writeln!(conf, "hot_standby = off").unwrap();
    drop(conf);
    let log = n1.pg_logfile().display().to_string();
    n1.try_pg_ctl(&["start", "-w", "-l", &log]).unwrap();
    assert_eq!(
        refused(n1, tcp, REPL_USER, Some(REPL_PASSWORD), "postgres"),
        ErrorKind::CannotConnectNow
    );

    // The monitor of a standby that accepts no connections yet reports it
    // degraded, whatever the message says (before: OCF_ERR_GENERIC, since
    // only "starting up" was recognized).
    let out = agent(n1, n1).run("monitor");
    out.assert_code(OCF_DEGRADED);
}
