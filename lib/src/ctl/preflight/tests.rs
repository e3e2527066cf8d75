//! The preflight's verdicts, table-driven: a healthy two-node observation
//! passes, and each broken condition makes exactly its named check fail,
//! with the fix in the detail.

use super::*;
use crate::postgres::hba::parse_rows;

fn facts() -> PgFacts {
    PgFacts {
        version_num: 150010,
        wal_level: "replica".into(),
        hot_standby: true,
        max_wal_senders: 10,
        wal_keep_bytes: 256 << 20,
        wal_log_hints: true,
        data_checksums: false,
        archiving: false,
        physical_slots: 0,
        rewind_grants: vec![true; 4],
        system_identifier: Some("7301".into()),
    }
}

fn identity() -> Identity {
    Identity {
        system_identifier: "7301".into(),
        timeline: 1,
        server_version: "15.10 (Debian 15.10-0+deb12u1)".into(),
    }
}

fn rules() -> Vec<HbaRule> {
    let row = |line: &str, t: &str, db: &str, user: &str, a: &str, m: &str, method: &str| {
        vec![
            Some(line.to_string()),
            Some(t.to_string()),
            Some(db.to_string()),
            Some(user.to_string()),
            Some(a.to_string()),
            Some(m.to_string()),
            Some(method.to_string()),
            None,
        ]
    };
    parse_rows(&[
        row(
            "97",
            "host",
            "all",
            "all",
            "127.0.0.1",
            "255.255.255.255",
            "scram-sha-256",
        ),
        row(
            "110",
            "host",
            "all",
            "all",
            "10.200.200.0",
            "255.255.255.0",
            "scram-sha-256",
        ),
        row(
            "111",
            "host",
            "replication",
            "replicator",
            "10.200.200.0",
            "255.255.255.0",
            "scram-sha-256",
        ),
    ])
}

fn healthy() -> Observed {
    Observed {
        params: Params {
            primary: "10.200.200.100:5432".into(),
            redis_primary: "10.200.200.100:6379".into(),
            repl_user: "replicator".into(),
            rewind: true,
            redis_password: true,
            pg_tls: true,
        },
        this_node: "node1".into(),
        this_addr: Some("10.200.200.11".into()),
        nodes: Ok(vec![
            NodeObs {
                name: "node1".into(),
                addr: "10.200.200.11".into(),
                is_self: true,
                pg: Ok(facts()),
                repl: None,
            },
            NodeObs {
                name: "node2".into(),
                addr: "10.200.200.12".into(),
                is_self: false,
                pg: Ok(facts()),
                repl: Some(Ok(identity())),
            },
        ]),
        primary_pg: Ok(facts()),
        local: Ok(LocalFacts {
            rules: rules(),
            ssl: false,
            member_of: vec!["pg_monitor".into()],
            version_num: 150010,
            system_identifier: "7301".into(),
        }),
        redis: RedisAt::Answers(Role::Master),
        redis_auth: RedisAuth::PasswordRequired,
        units: UnitFiles::default(),
    }
}

fn get<'a>(v: &'a [Check], name: &str) -> &'a Check {
    v.iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}: {v:#?}"))
}

fn node2(o: &mut Observed) -> &mut NodeObs {
    &mut o.nodes.as_mut().unwrap()[1]
}

#[test]
fn a_healthy_cluster_passes_every_check() {
    let v = verdicts(&healthy());
    for c in &v {
        assert_eq!(c.status, Status::Ok, "{c:?}");
    }
    let names: Vec<&str> = v.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(
        names,
        [
            "postgres at primary_host",
            "postgres on node1",
            "postgres on node2",
            "replication to node2",
            "pg_hba for node2",
            "pg_rewind grants",
            "wal_log_hints",
            "wal_level",
            "hot_standby",
            "max_wal_senders",
            "wal retention",
            "postgres version",
            "system identifier",
            "redis at primary_host",
            "redis requirepass",
            "systemd units",
        ]
    );
}

#[test]
fn each_broken_condition_fails_its_own_check_with_the_fix() {
    type Break = fn(&mut Observed);
    let table: Vec<(&str, Break, &str, Status, &str)> = vec![
        (
            "primary_host not listening",
            |o| o.primary_pg = Err(ConnFail::classify(None, "connection refused".into())),
            "postgres at primary_host",
            Status::Error,
            "listen_addresses",
        ),
        (
            "primary_host's certificate fails verify-full",
            |o| {
                o.primary_pg = Err(ConnFail::Tls(crate::postgres::tls::TlsError {
                    target: "10.200.200.100:5432".into(),
                    tls: crate::postgres::tls::PgTls {
                        mode: crate::postgres::tls::SslMode::VerifyFull,
                        rootcert: Some("/etc/rapidpro/ca.crt".into()),
                    },
                    failure: crate::postgres::tls::TlsFailure::Untrusted(
                        "signed by a CA not in sslrootcert".into(),
                    ),
                }))
            },
            "postgres at primary_host",
            Status::Error,
            "(sslmode=verify-full sslrootcert=/etc/rapidpro/ca.crt); no password sent",
        ),
        (
            "peer refuses replication by pg_hba",
            |o| {
                node2(o).repl = Some(Err(ConnFail::classify(
                    Some("28000"),
                    "no pg_hba.conf entry".into(),
                )))
            },
            "replication to node2",
            Status::Error,
            "host replication replicator 10.200.200.11/32",
        ),
        (
            "peer refuses the password",
            |o| {
                node2(o).pg = Err(ConnFail::classify(
                    Some("28P01"),
                    "password authentication failed".into(),
                ))
            },
            "postgres on node2",
            Status::Error,
            "repl_password",
        ),
        (
            "standby with hot_standby=off refuses connections",
            |o| {
                node2(o).pg = Err(ConnFail::classify(
                    Some("57P03"),
                    "the database system is not accepting connections".into(),
                ))
            },
            "postgres on node2",
            Status::Error,
            "hot_standby=on",
        ),
        (
            "local pg_hba rejects the peer",
            |o| {
                let mut rules = parse_rows(&[vec![
                    Some("1".into()),
                    Some("host".into()),
                    Some("replication".into()),
                    Some("all".into()),
                    Some("10.200.200.12".into()),
                    Some("255.255.255.255".into()),
                    Some("reject".into()),
                    None,
                ]]);
                let l = o.local.as_mut().unwrap();
                rules.extend(l.rules.clone());
                l.rules = rules;
            },
            "pg_hba for node2",
            Status::Error,
            "line 1 rejects",
        ),
        (
            "local pg_hba has no replication line",
            |o| o.local.as_mut().unwrap().rules.truncate(2),
            "pg_hba for node2",
            Status::Error,
            "host replication replicator 10.200.200.12/32",
        ),
        (
            "a grant is missing with rewind=true",
            |o| o.primary_pg.as_mut().unwrap().rewind_grants[2] = false,
            "pg_rewind grants",
            Status::Error,
            "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO replicator",
        ),
        (
            "a grant is missing with rewind=false",
            |o| {
                o.params.rewind = false;
                o.primary_pg.as_mut().unwrap().rewind_grants[0] = false
            },
            "pg_rewind grants",
            Status::Ok,
            "needed only with rewind=true",
        ),
        (
            "no wal_log_hints nor checksums",
            |o| node2(o).pg.as_mut().unwrap().wal_log_hints = false,
            "wal_log_hints",
            Status::Error,
            "node2: wal_log_hints=off",
        ),
        (
            "checksums instead of wal_log_hints",
            |o| {
                let f = node2(o).pg.as_mut().unwrap();
                f.wal_log_hints = false;
                f.data_checksums = true;
            },
            "wal_log_hints",
            Status::Ok,
            "right on node1, node2",
        ),
        (
            "hot_standby off",
            |o| node2(o).pg.as_mut().unwrap().hot_standby = false,
            "hot_standby",
            Status::Error,
            "ALTER SYSTEM SET hot_standby = on",
        ),
        (
            "too few WAL senders",
            |o| node2(o).pg.as_mut().unwrap().max_wal_senders = 1,
            "max_wal_senders",
            Status::Error,
            "less than the 2 nodes",
        ),
        (
            "wal_level minimal",
            |o| node2(o).pg.as_mut().unwrap().wal_level = "minimal".into(),
            "wal_level",
            Status::Error,
            "wal_level = replica",
        ),
        (
            "no WAL retention",
            |o| node2(o).pg.as_mut().unwrap().wal_keep_bytes = 0,
            "wal retention",
            Status::Error,
            "wal_keep_size",
        ),
        (
            "a slot is retention enough",
            |o| {
                let f = node2(o).pg.as_mut().unwrap();
                f.wal_keep_bytes = 0;
                f.physical_slots = 1;
            },
            "wal retention",
            Status::Ok,
            "right on",
        ),
        (
            "another major version",
            |o| {
                node2(o).repl = Some(Ok(Identity {
                    server_version: "16.4".into(),
                    ..identity()
                }))
            },
            "postgres version",
            Status::Error,
            "16 on node2",
        ),
        (
            "another system identifier",
            |o| {
                node2(o).repl = Some(Ok(Identity {
                    system_identifier: "9999".into(),
                    ..identity()
                }))
            },
            "system identifier",
            Status::Error,
            "rebuild",
        ),
        (
            "redis not answering at primary_host",
            |o| o.redis = RedisAt::Fails("connection refused".into()),
            "redis at primary_host",
            Status::Error,
            "bind",
        ),
        (
            "redis without requirepass",
            |o| o.redis_auth = RedisAuth::Open,
            "redis requirepass",
            Status::Warning,
            "set requirepass",
        ),
        (
            "redis requires a password the agent lacks",
            |o| o.params.redis_password = false,
            "redis requirepass",
            Status::Error,
            "set redis_password",
        ),
        (
            "redis protected mode",
            |o| o.redis_auth = RedisAuth::ProtectedMode,
            "redis requirepass",
            Status::Error,
            "protected-mode no",
        ),
        (
            "redis-server enabled",
            |o| {
                o.units.wanted = vec![(
                    "multi-user.target.wants".into(),
                    "redis-server.service".into(),
                )]
            },
            "systemd units",
            Status::Error,
            "systemctl disable redis-server.service",
        ),
    ];
    for (case, brk, name, status, fix) in table {
        let mut o = healthy();
        brk(&mut o);
        let v = verdicts(&o);
        let c = get(&v, name);
        assert_eq!(c.status, status, "{case}: {c:?}");
        assert!(
            c.detail.contains(fix),
            "{case}: {fix:?} not in {:?}",
            c.detail
        );
        // Exactly that one check changed.
        for other in v.iter().filter(|c| c.check != name) {
            assert_eq!(other.status, Status::Ok, "{case}: {other:?}");
        }
    }
}

/// `rules()` with `hostssl` instead of `host`: what a TLS-only setup has.
fn hostssl_only(o: &mut Observed) {
    let l = o.local.as_mut().unwrap();
    for r in &mut l.rules {
        if r.conn_type == "host" {
            r.conn_type = "hostssl".into();
        }
    }
}

#[test]
fn hostssl_lines_admit_the_peers_when_sslmode_asks_for_tls_and_the_server_has_it() {
    let mut o = healthy();
    o.local.as_mut().unwrap().ssl = true;
    hostssl_only(&mut o);
    let v = verdicts(&o);
    let c = get(&v, "pg_hba for node2");
    assert_eq!(c.status, Status::Ok, "{c:?}");
    // sslmode=disable: hostssl lines admit neither connection.
    o.params.pg_tls = false;
    let v = verdicts(&o);
    let c = get(&v, "pg_hba for node2");
    assert_eq!(c.status, Status::Error, "{c:?}");
    // ssl=off on the server: no TLS, whatever sslmode says.
    let mut o = healthy();
    hostssl_only(&mut o);
    let v = verdicts(&o);
    assert_eq!(get(&v, "pg_hba for node2").status, Status::Error);
}

#[test]
fn connection_failures_are_classified_by_sqlstate_only() {
    let table = [
        (None, "whatever the text says: password", "NotListening"),
        (Some("28000"), "connection refused", "HbaRejected"),
        (Some("28P01"), "no pg_hba.conf entry", "BadPassword"),
        (Some("57P03"), "", "NotAccepting"),
        (Some("53300"), "", "Other"),
    ];
    for (code, msg, want) in table {
        let got = format!("{:?}", ConnFail::classify(code, msg.into()));
        assert!(got.starts_with(want), "{code:?}: {got}");
    }
}

#[test]
fn facts_rows_are_read_in_order() {
    let row: Vec<Option<String>> = [
        "150010",
        "replica",
        "on",
        "10",
        "268435456",
        "off",
        "on",
        "false",
        "2",
        "7301",
        "true",
        "false",
        "true",
        "true",
    ]
    .iter()
    .map(|s| Some(s.to_string()))
    .collect();
    let f = parse_facts(&row);
    assert_eq!(f.version_num, 150010);
    assert!(f.hot_standby && !f.wal_log_hints && f.data_checksums && !f.archiving);
    assert_eq!(f.wal_keep_bytes, 256 << 20);
    assert_eq!(f.physical_slots, 2);
    assert_eq!(f.rewind_grants, [true, false, true, true]);
    assert_eq!(f.system_identifier.as_deref(), Some("7301"));
}
