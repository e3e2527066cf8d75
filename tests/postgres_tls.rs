//! TLS for the agent's PostgreSQL connections (`sslmode`, `sslrootcert`)
//! against real PostgreSQL 15 servers with certificates of a CA made by the
//! test ([`TestCa`]), whose `pg_hba.conf` admits TCP clients only over TLS
//! (`hostssl`). Each test failed before the agent had `sslmode`: it
//! connected without TLS, which such a `pg_hba.conf` refuses ("no
//! pg_hba.conf entry ... no encryption"), and it never refused a server it
//! could not verify.

use std::io::Write;
use std::time::Duration;

use rapidpro_ha::deadline::Deadline;
use rapidpro_ha::postgres::db::{Db, Host, Reach, Target};
use rapidpro_ha::postgres::tls::{PgTls, SslMode, TlsFailure};
use rapidpro_ha::postgres::wire::{self, ReplTarget, WireFailure};
use rapidpro_ha_harness::{poll, Agent, Node, Pair, TestCa, LOOPBACK, REPL_PASSWORD, REPL_USER};

use super::agent_node::{post_promote, OCF_ERR_GENERIC, OCF_RUNNING_PROMOTED, OCF_SUCCESS};
use super::{agent, wait_redis_link, wait_streaming};

/// `agent` with `sslmode` and `sslrootcert`.
fn with_tls(a: Agent, mode: &str, ca: &TestCa) -> Agent {
    a.param("sslmode", mode)
        .param("sslrootcert", ca.ca_file().display().to_string())
}

/// The post-promote notification on `nodes`, with `sslmode` and
/// `sslrootcert` (a standby follows the new primary with them).
fn post_promote_tls(nodes: &[&Node], promoted: &Node, mode: &str, ca: &TestCa) {
    for n in nodes {
        with_tls(agent(n, promoted), mode, ca)
            .notify("post", "promote", &[("promote_uname", &promoted.name)])
            .run("notify")
            .assert_code(OCF_SUCCESS);
    }
}

/// Gives `node` a certificate of `ca` for `names` and a hostssl-only
/// `pg_hba.conf` (before its server starts).
fn serve(node: &Node, ca: &TestCa, names: &[&str]) {
    node.serve_tls_only(&ca.issue(&format!("{}-server", node.name), names));
}

/// The length of `node`'s server log now, to read what comes after.
fn log_len(node: &Node) -> usize {
    std::fs::read_to_string(node.pg_logfile())
        .unwrap_or_default()
        .len()
}

/// Asserts that since `from` the server of `node` saw a connection but
/// never a startup message of the replication role: no authentication
/// attempt, so no password, reached it. log_connections logs "connection
/// received" when a client connects and names the user of every
/// authorization or authentication failure.
#[track_caller]
fn assert_no_authentication_since(node: &Node, from: usize) {
    let log = poll(
        "the server logs the connection",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(node.pg_logfile()).ok()?;
            let new = text.get(from..)?.to_string();
            new.contains("connection received").then_some(new)
        },
    );
    assert!(
        !log.contains(REPL_USER) && !log.contains("authorized") && !log.contains("authentication"),
        "the server got as far as authentication:\n{log}"
    );
}

/// A direct replication connection and a tokio-postgres connection to
/// `node` with `tls`: both must fail with TLS failure `want`.
#[track_caller]
fn assert_clients_refuse(node: &Node, tls: &PgTls, want: fn(&TlsFailure) -> bool) {
    let repl = ReplTarget {
        host: LOOPBACK,
        port: node.pgport,
        user: REPL_USER,
        password: Some(REPL_PASSWORD),
        tls,
    };
    match wire::identify_system(&repl, Duration::from_secs(10)) {
        Err(WireFailure::Tls(f)) if want(&f) => {}
        other => panic!("replication connection: {other:?}"),
    }
    let t = Target {
        host: Host::Tcp(LOOPBACK),
        port: node.pgport,
        user: REPL_USER,
        password: Some(REPL_PASSWORD),
        dbname: "postgres",
        peer_uid: None,
        tls,
    };
    let deadline = Deadline::after(Duration::from_secs(20));
    let s = Duration::from_secs(10);
    match Db::reach(&t, s, s, &deadline) {
        Ok(Reach::Tls(e)) if want(&e.failure) => {}
        other => panic!("tokio-postgres connection: {other:?}"),
    }
}

fn untrusted(f: &TlsFailure) -> bool {
    matches!(f, TlsFailure::Untrusted(_))
}

/// (a) A hostssl-only pair with sslmode=verify-full: the standby streams
/// (libpq's WAL receiver with the agent's conninfo), promote and the
/// primary's monitor connect to primary_host, and after failovers the old
/// primary's history is checked over TLS, by TIMELINE_HISTORY
/// (rewind=false) and by pg_rewind (rewind=true).
#[test]
fn a_hostssl_only_pair_works_end_to_end_with_verify_full() {
    let pair = Pair::new("pgtls_full");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let ca = TestCa::new(pair.dir.path(), "pgtls");
    for n in [n1, n2] {
        serve(n, &ca, &[LOOPBACK, "localhost"]);
    }
    let a = |n: &Node, p: &Node| with_tls(agent(n, p), "verify-full", &ca);

    a(n1, n1).run("start").assert_code(OCF_SUCCESS);
    a(n2, n1).run("start").assert_code(OCF_SUCCESS);
    a(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    post_promote_tls(&[n1, n2], n1, "verify-full", &ca);
    wait_streaming(n2);
    wait_redis_link(n2);
    let conninfo = n2.psql("show primary_conninfo");
    assert!(
        conninfo.contains("sslmode=verify-full")
            && conninfo.contains(&format!("sslrootcert='{}'", ca.ca_file().display())),
        "{conninfo}"
    );
    // The WAL receiver is on TLS.
    assert_eq!(
        n1.psql("select bool_and(s.ssl) from pg_stat_ssl s join pg_stat_replication r using (pid)"),
        "t"
    );
    // The primary's self-check connects to primary_host.
    a(n1, n1).run("monitor").assert_code(OCF_RUNNING_PROMOTED);
    a(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    n1.psql("insert into sms(body) values ('over tls')");

    // Failover to node2; node1 comes back with rewind=false: its history is
    // checked with TIMELINE_HISTORY over a TLS replication connection.
    a(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    a(n2, n2).run("promote").assert_code(OCF_SUCCESS);
    post_promote_tls(&[n2], n2, "verify-full", &ca);
    let out = a(n1, n2).param("rewind", "false").run("start");
    out.assert_code(OCF_SUCCESS);
    assert!(out.stderr.contains("history check"), "{}", out.stderr);
    wait_streaming(n1);

    // And back, with rewind=true: pg_rewind --dry-run (libpq) over TLS.
    a(n2, n2).run("stop").assert_code(OCF_SUCCESS);
    a(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    post_promote_tls(&[n1], n1, "verify-full", &ca);
    let out = a(n2, n1).param("rewind", "true").run("start");
    out.assert_code(OCF_SUCCESS);
    assert!(out.stderr.contains("pg_rewind --dry-run"), "{}", out.stderr);
    wait_streaming(n2);
    assert_eq!(n2.psql("select body from sms"), "over tls");
}

/// (b) A server whose certificate comes from another CA is refused under
/// verify-full, and under require with sslrootcert (libpq's verify-ca):
/// start fails with a reason naming the parameters, PostgreSQL is not
/// started, and the server never saw a startup message, so no password.
#[test]
fn a_server_certified_by_another_ca_is_refused_before_any_password() {
    let pair = Pair::new("pgtls_other_ca");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let ours = TestCa::new(pair.dir.path(), "ours");
    let theirs = TestCa::new(pair.dir.path(), "theirs");
    serve(n1, &theirs, &[LOOPBACK, "localhost"]);
    with_tls(agent(n1, n1), "verify-full", &theirs)
        .run("start")
        .assert_code(OCF_SUCCESS);

    for mode in ["verify-full", "verify-ca", "require"] {
        let from = log_len(n1);
        let out = with_tls(agent(n2, n1), mode, &ours).run("start");
        out.assert_code(OCF_ERR_GENERIC);
        out.assert_reason_contains("TLS refused at primary_host");
        out.assert_reason_contains("signed by a CA not in sslrootcert");
        assert!(
            out.stderr.contains(&format!("sslmode={mode}"))
                && out
                    .stderr
                    .contains(&format!("sslrootcert={}", ours.ca_file().display())),
            "{mode}: {}",
            out.stderr
        );
        assert!(n2.postmaster_pid().is_none(), "{mode}: PostgreSQL started");
        assert_no_authentication_since(n1, from);
    }

    let from = log_len(n1);
    let tls = PgTls {
        mode: SslMode::VerifyFull,
        rootcert: Some(ours.ca_file()),
    };
    assert_clients_refuse(n1, &tls, untrusted);
    assert_no_authentication_since(n1, from);
}

/// (b) Under verify-full the certificate must name primary_host: one of the
/// right CA for another name is refused (no password sent), and accepted
/// under verify-ca, which checks the chain only.
#[test]
fn a_certificate_for_another_name_fails_verify_full_but_passes_verify_ca() {
    let pair = Pair::new("pgtls_name");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let ca = TestCa::new(pair.dir.path(), "pgtls");
    serve(n1, &ca, &["db.invalid"]);
    serve(n2, &ca, &[LOOPBACK]);
    with_tls(agent(n1, n1), "verify-ca", &ca)
        .run("start")
        .assert_code(OCF_SUCCESS);
    with_tls(agent(n1, n1), "verify-ca", &ca)
        .run("promote")
        .assert_code(OCF_SUCCESS);

    let from = log_len(n1);
    let out = with_tls(agent(n2, n1), "verify-full", &ca).run("start");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("does not name the host connected to");
    assert!(
        out.stderr.contains("subject alternative name"),
        "{}",
        out.stderr
    );
    assert_no_authentication_since(n1, from);
    let tls = PgTls {
        mode: SslMode::VerifyFull,
        rootcert: Some(ca.ca_file()),
    };
    let from = log_len(n1);
    assert_clients_refuse(n1, &tls, untrusted);
    assert_no_authentication_since(n1, from);

    with_tls(agent(n2, n1), "verify-ca", &ca)
        .run("start")
        .assert_code(OCF_SUCCESS);
    post_promote_tls(&[n2], n1, "verify-ca", &ca);
    wait_streaming(n2);
}

/// (b) A server without SSL is refused under require (no plain-text
/// fallback, no password), and still served under prefer, libpq's default.
#[test]
fn a_server_without_ssl_is_refused_under_require_and_served_under_prefer() {
    let pair = Pair::new("pgtls_nossl");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    // The harness's plain server (ssl off), with connections logged.
    std::fs::OpenOptions::new()
        .append(true)
        .open(n1.pgdata.join("postgresql.conf"))
        .and_then(|mut f| f.write_all(b"log_connections = on\n"))
        .unwrap();
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);

    // A root certificate file that is not there: this host is not ready.
    agent(n2, n1)
        .param("sslmode", "verify-full")
        .param("sslrootcert", "/nonexistent/ca.crt")
        .run("validate-all")
        .assert_code(5)
        .assert_reason_contains("parameter sslrootcert=\"/nonexistent/ca.crt\": file missing");

    let from = log_len(n1);
    let out = agent(n2, n1).param("sslmode", "require").run("start");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("does not support SSL");
    assert!(n2.postmaster_pid().is_none());
    let tls = PgTls {
        mode: SslMode::Require,
        rootcert: None,
    };
    assert_clients_refuse(n1, &tls, |f| *f == TlsFailure::NotSupported);
    assert_no_authentication_since(n1, from);

    let out = agent(n2, n1).param("sslmode", "prefer").run("start");
    out.assert_code(OCF_SUCCESS);
    post_promote(&[n2], n1);
    wait_streaming(n2);
}
