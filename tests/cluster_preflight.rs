//! The preflight of `rapidproctl check` in one live 2-node cluster: it
//! passes as built, then each condition is broken alone (pg_hba on the peer
//! and here, the replication password, a pg_rewind grant, WAL retention,
//! Redis's bind and protected mode, an enabled systemd unit, a disabled
//! fencing device), `check` exits 3 naming it with its fix, and after the
//! repair the check is ok again.
//!
//! Conditions that need a restart (listen_addresses, max_wal_senders,
//! hot_standby, wal_log_hints without checksums), another database cluster
//! (system identifier) or a Redis password Pacemaker's monitor would trip
//! on are broken while the cluster is in maintenance mode. Only a different
//! major version (one is installed) and wal_level (a replica needs it) are
//! left to the verdict tables in `lib/src/ctl/preflight/tests.rs`.

use std::time::Duration;

use rapidpro_ha_harness::{poll, NsCluster, REPL_PASSWORD, REPL_USER};
use serde_json::Value;

use super::bin;
use super::cluster::steady_pair;
use super::cluster::{assert_watched, WatchMark};

/// Longest one `rapidproctl check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a change (a reload, a replicated ALTER ROLE) may take to show.
const SHOW: Duration = Duration::from_secs(20);

/// Runs `rapidproctl --json check` in `node`: (exit code, document).
fn check(c: &NsCluster, node: &str) -> (i32, Value) {
    let out = c
        .node(node)
        .exec(
            &[env!("CARGO_BIN_EXE_rapidproctl"), "--json", "check"],
            CHECK_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let doc = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", out.failure_message()));
    (out.code(), doc)
}

/// The check called `name`: (status, detail).
fn named(doc: &Value, name: &str) -> Option<(String, String)> {
    doc["checks"].as_array()?.iter().find_map(|c| {
        (c["check"] == name).then(|| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["detail"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

/// Waits until `check` in `node` exits 3 with `name` an error whose detail
/// contains every one of `fix`.
#[track_caller]
fn expect_error(c: &NsCluster, node: &str, name: &str, fix: &[&str]) {
    let mut last = Value::Null;
    poll(&format!("check error {name:?}"), SHOW, || {
        let (code, doc) = check(c, node);
        let hit = code == 3
            && named(&doc, name)
                .is_some_and(|(s, d)| s == "error" && fix.iter().all(|f| d.contains(f)));
        last = doc;
        hit.then_some(())
    });
    let (_, detail) = named(&last, name).unwrap();
    eprintln!("{name}: {detail}");
}

/// Waits until `check` in `node` exits 0 with `name` ok.
#[track_caller]
fn expect_ok(c: &NsCluster, node: &str, name: &str) {
    let mut last = Value::Null;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll(&format!("check ok again for {name:?}"), SHOW, || {
            let (code, doc) = check(c, node);
            let ok = code == 0 && named(&doc, name).is_some_and(|(s, _)| s == "ok");
            last = doc;
            ok.then_some(())
        })
    }));
    if r.is_err() {
        panic!("{name} not ok again:\n{last:#}\n{}", c.diagnostics());
    }
}

#[track_caller]
fn sh(c: &NsCluster, node: &str, script: &str) -> String {
    c.node(node)
        .sh(script)
        .unwrap_or_else(|e| panic!("{node}: {script}: {e}"))
}

#[track_caller]
fn psql(c: &NsCluster, node: &str, sql: &str) -> String {
    c.node(node)
        .psql(sql)
        .unwrap_or_else(|e| panic!("{node}: {sql}: {e}"))
}

const PG_HBA: &str = "/var/lib/postgresql/15/main/pg_hba.conf";
const PGDATA: &str = "/var/lib/postgresql/15/main";
const PG_CONF: &str = "/var/lib/postgresql/15/main/postgresql.conf";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const REDIS_SOCKET: &str = rapidpro_ha_harness::netns::REDIS_SOCKET;
/// pg_ctl as postgres on the node's cluster, for the steps done while
/// Pacemaker is in maintenance mode.
const PG_CTL: &str = "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl \
     -D /var/lib/postgresql/15/main -l /var/log/postgresql/postgresql-15-main.log -w -t 60 -m fast";

#[test]
fn check_names_every_condition_that_breaks_failover_rejoin_or_replication() {
    let c = NsCluster::builder("preflight")
        .nodes(2)
        .agent(bin())
        .param("rewind", "true")
        .build();
    // Every moment of the cluster's life but the foreign database cluster
    // made by hand below: never two primaries, every node sampled every
    // 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let (p, s) = steady_pair(&c);
    let p_addr = c.node(&p).addr.clone();
    let s_addr = c.node(&s).addr.clone();

    // As built: every check ok, but Redis without requirepass (a warning),
    // no alert configured (a warning of the alerts check) and two nodes
    // with two_node and no quorum device (a warning).
    let (code, doc) = check(&c, &p);
    assert_eq!(code, 0, "{doc:#}\n{}", c.diagnostics());
    for chk in doc["checks"].as_array().unwrap() {
        let (name, status) = (
            chk["check"].as_str().unwrap(),
            chk["status"].as_str().unwrap(),
        );
        match name {
            "redis requirepass" | "quorum device" => assert_eq!(status, "warning", "{chk}"),
            "alerts" | "node-health-strategy" => {}
            _ => assert_eq!(status, "ok", "{chk}"),
        }
    }
    for name in [
        "postgres at primary_host".to_string(),
        format!("postgres on {p}"),
        format!("postgres on {s}"),
        format!("replication to {s}"),
        format!("pg_hba for {s}"),
        "pg_rewind grants".into(),
        "wal_log_hints".into(),
        "hot_standby".into(),
        "max_wal_senders".into(),
        "wal retention".into(),
        "postgres version".into(),
        "system identifier".into(),
        "redis at primary_host".into(),
        "systemd units".into(),
        "fencing device".into(),
    ] {
        assert!(named(&doc, &name).is_some(), "no check {name}: {doc:#}");
    }

    // The peer's pg_hba.conf rejects replication from here: the live
    // replication connection is refused with SQLSTATE 28000.
    sh(
        &c,
        &s,
        &format!("sed -i '1i host replication replicator {p_addr}/32 reject' {PG_HBA}"),
    );
    psql(&c, &s, "SELECT pg_reload_conf()");
    expect_error(
        &c,
        &p,
        &format!("replication to {s}"),
        &[
            "pg_hba.conf",
            "refuses",
            &format!("host replication replicator {p_addr}/32"),
        ],
    );
    sh(&c, &s, &format!("sed -i '1d' {PG_HBA}"));
    psql(&c, &s, "SELECT pg_reload_conf()");
    expect_ok(&c, &p, &format!("replication to {s}"));

    // This node's pg_hba.conf rejects the peer: found in pg_hba_file_rules.
    sh(
        &c,
        &p,
        &format!("sed -i '1i host all replicator {s_addr}/32 reject' {PG_HBA}"),
    );
    expect_error(
        &c,
        &p,
        &format!("pg_hba for {s}"),
        &["line 1 rejects", "postgres"],
    );
    sh(&c, &p, &format!("sed -i '1d' {PG_HBA}"));
    expect_ok(&c, &p, &format!("pg_hba for {s}"));

    // A wrong repl_password: SQLSTATE 28P01 at primary_host.
    psql(
        &c,
        &p,
        "ALTER ROLE replicator PASSWORD 'not-the-configured-one'",
    );
    expect_error(
        &c,
        &p,
        "postgres at primary_host",
        &["rejects the password", "repl_password"],
    );
    psql(
        &c,
        &p,
        &format!("ALTER ROLE replicator PASSWORD '{REPL_PASSWORD}'"),
    );
    expect_ok(&c, &p, "postgres at primary_host");

    // A pg_rewind grant revoked, with rewind=true.
    psql(
        &c,
        &p,
        "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) FROM replicator",
    );
    expect_error(
        &c,
        &p,
        "pg_rewind grants",
        &["GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO replicator"],
    );
    psql(
        &c,
        &p,
        "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO replicator",
    );
    expect_ok(&c, &p, "pg_rewind grants");

    // No WAL retention on the primary.
    psql(&c, &p, "ALTER SYSTEM SET wal_keep_size = 0");
    psql(&c, &p, "SELECT pg_reload_conf()");
    expect_error(
        &c,
        &p,
        "wal retention",
        &[
            &format!("{p}: wal_keep_size=0"),
            "ALTER SYSTEM SET wal_keep_size",
        ],
    );
    psql(&c, &p, "ALTER SYSTEM RESET wal_keep_size");
    psql(&c, &p, "SELECT pg_reload_conf()");
    expect_ok(&c, &p, "wal retention");

    // Redis no longer bound to primary_host (Debian's bind, plus the node's
    // own address).
    let redis = |args: &[&str]| c.node(&p).redis_cli(args).unwrap_or_else(|e| panic!("{e}"));
    redis(&["CONFIG", "SET", "bind", &format!("127.0.0.1 {p_addr}")]);
    expect_error(&c, &p, "redis at primary_host", &["bind", "primary_host"]);
    redis(&["CONFIG", "SET", "bind", "0.0.0.0"]);
    expect_ok(&c, &p, "redis at primary_host");

    // Debian's protected mode without a password refuses the replicas.
    redis(&["CONFIG", "SET", "protected-mode", "yes"]);
    expect_error(
        &c,
        &p,
        "redis requirepass",
        &["protected mode", "protected-mode no"],
    );
    redis(&["CONFIG", "SET", "protected-mode", "no"]);
    let (_, doc) = check(&c, &p);
    assert_eq!(
        named(&doc, "redis requirepass").map(|r| r.0).as_deref(),
        Some("warning"),
        "{doc:#}"
    );
    expect_ok(&c, &p, "redis at primary_host");

    // PostgreSQL not listening on primary_host: listen_addresses without
    // the VIP. A restart is needed; Pacemaker is kept out of it meanwhile
    // (maintenance mode), as an administrator would.
    let maintenance = |on: &str| {
        let out = c.crm(
            &p,
            &[
                "crm_attribute",
                "--type",
                "crm_config",
                "--name",
                "maintenance-mode",
                "--update",
                on,
            ],
        );
        assert!(out.success(), "{}", out.failure_message());
    };
    let restart_pg = |node: &str| {
        sh(&c, node, &format!("{PG_CTL} restart"));
    };
    maintenance("true");
    psql(
        &c,
        &p,
        &format!("ALTER SYSTEM SET listen_addresses = 'localhost,{p_addr}'"),
    );
    restart_pg(&p);
    expect_error(&c, &p, "postgres at primary_host", &["listen_addresses"]);
    psql(&c, &p, "ALTER SYSTEM RESET listen_addresses");
    restart_pg(&p);
    expect_ok(&c, &p, "postgres at primary_host");

    // The settings that need a restart, each alone, still in maintenance
    // mode: a line appended to the node's postgresql.conf, then removed.
    let with_setting = |node: &str, line: &str| {
        sh(&c, node, &format!("echo '{line}' >> {PG_CONF}"));
        restart_pg(node);
    };
    let without_last_setting = |node: &str| {
        sh(&c, node, &format!("sed -i '$d' {PG_CONF}"));
        restart_pg(node);
    };
    // Fewer WAL senders than nodes on the primary.
    with_setting(&p, "max_wal_senders = 1");
    expect_error(
        &c,
        &p,
        "max_wal_senders",
        &["max_wal_senders=1", "ALTER SYSTEM SET max_wal_senders = 10"],
    );
    without_last_setting(&p);
    expect_ok(&c, &p, "max_wal_senders");

    // A standby with hot_standby=off accepts no connection (57P03).
    with_setting(&s, "hot_standby = off");
    expect_error(&c, &p, &format!("postgres on {s}"), &["hot_standby=on"]);
    without_last_setting(&s);
    expect_ok(&c, &p, &format!("postgres on {s}"));

    // With rewind=true, a node with neither data checksums nor
    // wal_log_hints (the template has checksums: they are turned off on the
    // cleanly stopped standby first).
    sh(
        &c,
        &s,
        &format!(
            "{PG_CTL} stop && runuser -u postgres -- {PG_BIN}/pg_checksums --disable -D {PGDATA} \
           && echo 'wal_log_hints = off' >> {PG_CONF} && {PG_CTL} start"
        ),
    );
    expect_error(
        &c,
        &p,
        "wal_log_hints",
        &[
            "wal_log_hints=off and no data checksums",
            "ALTER SYSTEM SET wal_log_hints = on",
        ],
    );
    without_last_setting(&s);
    expect_ok(&c, &p, "wal_log_hints");

    // Another database cluster on the standby: a different system
    // identifier (its own data kept aside meanwhile). A fresh initdb is a
    // writable PostgreSQL beside the primary, made by hand on purpose: the
    // watcher sees it (two primaries for as long as it runs), so the watch
    // is asserted up to here, and again from when the standby's own data
    // is back.
    assert_watched(
        &c,
        &watch_mark,
        "preflight, up to the foreign database cluster made by hand",
    );
    sh(
        &c,
        &s,
        &format!(
            "set -e; {PG_CTL} stop; mv {PGDATA} {PGDATA}.real; \
             install -d -o postgres -g postgres -m 0700 {PGDATA}; \
             runuser -u postgres -- {PG_BIN}/initdb -D {PGDATA} -A peer >/dev/null; \
             cp -p {PGDATA}.real/postgresql.conf {PGDATA}.real/pg_hba.conf {PGDATA}/; \
             {PG_CTL} start; \
             runuser -u postgres -- psql -XAtq -h /run/postgresql -d postgres \
               -c \"CREATE ROLE {REPL_USER} REPLICATION LOGIN PASSWORD '{REPL_PASSWORD}'\" \
               -c 'GRANT pg_monitor TO {REPL_USER}'"
        ),
    );
    expect_error(
        &c,
        &p,
        "system identifier",
        &["different database clusters", "rapidproctl rebuild"],
    );
    sh(
        &c,
        &s,
        &format!(
            "set -e; {PG_CTL} stop; rm -rf {PGDATA}; mv {PGDATA}.real {PGDATA}; {PG_CTL} start"
        ),
    );
    expect_ok(&c, &p, "system identifier");
    let watch_mark = WatchMark::now(&c);

    // Redis requires a password that redis_password does not give.
    let redis_sh = |cmd: &str| sh(&c, &p, &format!("redis-cli -s {REDIS_SOCKET} {cmd}"));
    redis_sh("CONFIG SET requirepass not-configured");
    expect_error(
        &c,
        &p,
        "redis requirepass",
        &["requires a password but redis_password is not set"],
    );
    sh(
        &c,
        &p,
        &format!(
            "REDISCLI_AUTH=not-configured redis-cli -s {REDIS_SOCKET} CONFIG SET requirepass ''"
        ),
    );
    expect_ok(&c, &p, "redis at primary_host");
    maintenance("false");

    // redis-server enabled in systemd (the node's own /etc/systemd/system).
    let wants = c
        .node(&p)
        .host_path("etc-systemd-system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/redis-server.service",
        wants.join("redis-server.service"),
    )
    .unwrap();
    expect_error(
        &c,
        &p,
        "systemd units",
        &[
            "redis-server.service is enabled",
            "systemctl disable redis-server.service",
        ],
    );
    std::fs::remove_file(wants.join("redis-server.service")).unwrap();
    expect_ok(&c, &p, "systemd units");

    // The only fencing device disabled.
    let crm = |args: &[&str]| {
        let out = c.crm(&p, args);
        assert!(out.success(), "{}", out.failure_message());
    };
    crm(&[
        "crm_resource",
        "--resource",
        "fence-sandbox",
        "--meta",
        "--set-parameter",
        "target-role",
        "--parameter-value",
        "Stopped",
    ]);
    expect_error(
        &c,
        &p,
        "fencing device",
        &["no fencing device", "fence-sandbox disabled"],
    );
    crm(&[
        "crm_resource",
        "--resource",
        "fence-sandbox",
        "--meta",
        "--delete-parameter",
        "target-role",
    ]);
    expect_ok(&c, &p, "fencing device");

    // Everything repaired: the whole check passes again.
    let (code, doc) = check(&c, &p);
    assert_eq!(code, 0, "{doc:#}");
    assert_watched(
        &c,
        &watch_mark,
        "preflight, from the standby's own data back to the end",
    );
}
