//! Redis over TLS (`redis_tls`): the agent's Redis servers replicate over
//! TLS with no plain TCP port, a replica whose CA did not sign its master's
//! certificate is reported with the reason, and the agent's own connection
//! to primary_host never carries `AUTH` in clear. Each failed before
//! `redis_tls` existed (the parameters were ignored and everything ran in
//! plain TCP).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rapidpro_ha::redis::{self, Endpoint, RedisError, TlsFailure, TlsFiles};
use rapidpro_ha_harness::ocf::param;
use rapidpro_ha_harness::{Agent, Node, Pair, RedisTls, TestCa, LOOPBACK};

use super::agent_node::{post_promote, OCF_RUNNING_PROMOTED, OCF_SUCCESS};
use super::{agent, wait_streaming};

const OCF_DEGRADED: i32 = 190;
const OCF_ERR_PERM: i32 = 4;
/// requirepass of every Redis here, so that AUTH and masterauth are sent.
const REDIS_PASSWORD: &str = "redis-tls-secret";

/// `agent()` with Redis TLS on and a Redis password.
fn tls_agent(node: &Node, primary: &Node, tls: &RedisTls) -> Agent {
    agent(node, primary)
        .redis_tls(tls)
        .param(param::REDIS_PASSWORD, REDIS_PASSWORD)
}

/// Gives each node's Redis a password (requirepass).
fn require_password(nodes: &[Node]) {
    for n in nodes {
        let mut conf = std::fs::read_to_string(&n.redis_config).unwrap();
        conf.push_str(&format!("requirepass {REDIS_PASSWORD}\n"));
        std::fs::write(&n.redis_config, conf).unwrap();
    }
}

/// Waits until `node`'s Redis replica link is up (redis-cli with the
/// password).
fn wait_link_up(node: &Node) {
    rapidpro_ha_harness::poll(
        &format!("{}'s Redis link up", node.name),
        Duration::from_secs(60),
        || {
            let s = node
                .try_redis_cli(&[
                    "--no-auth-warning",
                    "-a",
                    REDIS_PASSWORD,
                    "info",
                    "replication",
                ])
                .ok()?;
            s.contains("master_link_status:up").then_some(())
        },
    )
}

/// The library's connection to `host:port` with `tls`, and `PING`.
fn lib_connect(host: &str, port: u16, tls: &RedisTls) -> Result<(), RedisError> {
    let files = TlsFiles {
        ca: tls.ca_file.clone(),
        cert: tls.node.cert_file.clone(),
        key: tls.node.key_file.clone(),
    };
    let ep = Endpoint::tcp(host, port, Some(&files));
    redis::connect(&ep, Some(REDIS_PASSWORD), Duration::from_secs(3))?.ping()
}

/// `CONFIG GET name` over the node's unix socket, as root's redis-cli.
fn config_get(node: &Node, name: &str) -> String {
    let out = node.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "config",
        "get",
        name,
    ]);
    out.lines().nth(1).unwrap_or_default().to_string()
}

/// What a plain-text client gets back for `PING` on `port`: empty when the
/// server closed or answered nothing readable in 2 s.
fn plain_ping(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect((LOOPBACK, port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(b"PING\r\n");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn with_redis_tls_replicas_follow_over_tls_and_no_plain_port_is_open() {
    let pair = Pair::new("redis_tls_up");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    require_password(&pair.nodes);
    let ca = TestCa::new(pair.dir.path(), "redis");
    let t1 = ca.redis_tls("node1-redis", &[LOOPBACK, "localhost"]);
    let t2 = ca.redis_tls("node2-redis", &[LOOPBACK, "localhost"]);
    tls_agent(n1, n1, &t1).run("start").assert_code(OCF_SUCCESS);
    tls_agent(n2, n1, &t2).run("start").assert_code(OCF_SUCCESS);
    tls_agent(n1, n1, &t1)
        .run("promote")
        .assert_code(OCF_SUCCESS);
    post_promote(&[n1, n2], n1);
    wait_streaming(n2);
    wait_link_up(n2);
    let info = n2.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "info",
        "replication",
    ]);
    assert!(info.contains("master_link_status:up"), "{info}");
    for n in [n1, n2] {
        assert_eq!(config_get(n, "port"), "0", "{}: plain TCP port", n.name);
        assert_eq!(config_get(n, "tls-port"), n.redis_port.to_string());
        assert_eq!(config_get(n, "tls-replication"), "yes");
        // What listens on redis_port speaks TLS only.
        let answer = plain_ping(n.redis_port);
        assert!(
            !answer.contains("PONG"),
            "{}: plain PING got {answer:?}",
            n.name
        );
    }
    // A write on the master reaches the replica through the TLS link.
    n1.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "set",
        "tls-key",
        "v1",
    ]);
    rapidpro_ha_harness::poll(
        "the write replicated over TLS",
        Duration::from_secs(20),
        || {
            let v = n2
                .try_redis_cli(&["--no-auth-warning", "-a", REDIS_PASSWORD, "get", "tls-key"])
                .ok()?;
            (v == "v1").then_some(())
        },
    );
    tls_agent(n1, n1, &t1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    // The library's TLS connection, as the agent and rapidproctl make it.
    lib_connect(LOOPBACK, n1.redis_port, &t2).expect("TLS connection to node1's Redis");
    tls_agent(n2, n1, &t2)
        .run("monitor")
        .assert_code(OCF_SUCCESS);
    // The agent's own TLS connection to primary_host: a standby whose link
    // is down asks the master there, and it answers (not "cannot tell").
    n2.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "config",
        "set",
        "masterauth",
        "wrong",
    ]);
    n2.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "client",
        "kill",
        "type",
        "master",
    ]);
    let monitor = || {
        tls_agent(n2, n1, &t2)
            .meta("interval", "1000")
            .run("monitor")
    };
    monitor().assert_code(OCF_SUCCESS);
    std::thread::sleep(Duration::from_millis(2100));
    let out = monitor();
    out.assert_code(OCF_DEGRADED);
    out.assert_reason_contains("link down while its master answers");
}

#[test]
fn a_replica_whose_ca_did_not_sign_the_masters_certificate_is_reported_with_the_fix() {
    let pair = Pair::new("redis_tls_ca");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    require_password(&pair.nodes);
    let ca = TestCa::new(pair.dir.path(), "redis");
    let other = TestCa::new(pair.dir.path(), "other");
    let t1 = ca.redis_tls("node1-redis", &[LOOPBACK]);
    let t2 = other.redis_tls("node2-redis", &[LOOPBACK]);
    tls_agent(n1, n1, &t1).run("start").assert_code(OCF_SUCCESS);
    tls_agent(n2, n1, &t2).run("start").assert_code(OCF_SUCCESS);
    tls_agent(n1, n1, &t1)
        .run("promote")
        .assert_code(OCF_SUCCESS);
    post_promote(&[n1, n2], n1);
    wait_streaming(n2);
    let monitor = || {
        tls_agent(n2, n1, &t2)
            .meta("interval", "1000")
            .run("monitor")
    };
    monitor().assert_code(OCF_SUCCESS);
    std::thread::sleep(Duration::from_millis(2100));
    let info = n2.redis_cli(&[
        "--no-auth-warning",
        "-a",
        REDIS_PASSWORD,
        "info",
        "replication",
    ]);
    assert!(info.contains("master_link_status:down"), "{info}");
    let out = monitor();
    out.assert_code(OCF_DEGRADED);
    out.assert_reason_contains(&format!(
        "Redis link down: TLS to redis at {LOOPBACK}:{}: certificate not signed by redis_tls_ca",
        n1.redis_port
    ));
    // The whole message (logs, rapidproctl check) names the CA file too.
    let err = lib_connect(LOOPBACK, n1.redis_port, &t2).unwrap_err();
    assert!(
        matches!(
            err,
            RedisError::Tls {
                failure: TlsFailure::UnknownCa,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&t2.ca_file.display().to_string()),
        "{err}"
    );
    // node1's certificate names 127.0.0.1 only: connecting as "localhost"
    // with the right CA is refused for the name.
    let err = lib_connect("localhost", n1.redis_port, &t1).unwrap_err();
    assert!(
        matches!(
            err,
            RedisError::Tls {
                failure: TlsFailure::WrongName,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("does not name localhost"), "{err}");
    // The master logs that it refused the replica's certificate too.
    let log = std::fs::read_to_string(n1.redis_logfile()).unwrap_or_default();
    assert!(
        log.contains("certificate") || log.contains("SSL"),
        "master log: {log}"
    );
}

/// A plain TCP listener standing in for primary_host's Redis: records the
/// first bytes of each connection, then closes it.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                buf.truncate(n);
                record.lock().unwrap().push(buf);
            }
        });
        Recorder { port, seen }
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn with_redis_tls_the_agent_sends_a_tls_hello_to_primary_host_never_auth() {
    let pair = Pair::new("redis_tls_auth");
    let n1 = &pair.nodes[0];
    let ca = TestCa::new(pair.dir.path(), "redis");
    let t1 = ca.redis_tls("node1-redis", &[LOOPBACK]);
    let recorder = Recorder::start();
    // primary_host:redis_primary_port is the recorder: the replica
    // (redis-server) and the agent's monitor both connect there.
    let run = |action: &str| {
        agent(n1, n1)
            .redis_tls(&t1)
            .param(param::REDIS_PASSWORD, REDIS_PASSWORD)
            .param(param::REDIS_PRIMARY_PORT, recorder.port.to_string())
            .run(action)
    };
    // A key the redis user cannot read is found before redis-server fails.
    let mut c = std::process::Command::new("chown");
    c.arg("root:root").arg(&t1.node.key_file);
    rapidpro_ha_harness::run_command(c, Duration::from_secs(10))
        .unwrap()
        .into_result()
        .unwrap();
    let out = run("validate-all");
    out.assert_code(OCF_ERR_PERM);
    out.assert_reason_contains("redis_tls_key");
    let mut c = std::process::Command::new("chown");
    c.arg("redis:redis").arg(&t1.node.key_file);
    rapidpro_ha_harness::run_command(c, Duration::from_secs(10))
        .unwrap()
        .into_result()
        .unwrap();
    run("validate-all").assert_code(OCF_SUCCESS);
    run("start").assert_code(OCF_SUCCESS);
    rapidpro_ha_harness::poll(
        "redis-server connecting to the recorder",
        Duration::from_secs(20),
        || (!recorder.connections().is_empty()).then_some(()),
    );
    let before = recorder.connections().len();
    let out = run("monitor");
    assert!(
        out.code == OCF_SUCCESS,
        "monitor: {} {}",
        out.code,
        out.stderr
    );
    rapidpro_ha_harness::poll(
        "the agent's monitor connecting to primary_host",
        Duration::from_secs(10),
        || (recorder.connections().len() > before).then_some(()),
    );
    // The library says what answered is not TLS.
    let err = lib_connect(LOOPBACK, recorder.port, &t1).unwrap_err();
    assert!(
        matches!(
            err,
            RedisError::Tls {
                failure: TlsFailure::NotTls(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("set redis_tls=true on every node"),
        "{err}"
    );
    // A server that accepts and never answers the handshake costs the
    // connect timeout, not a hang.
    let silent = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || silent.accept().map(|(s, _)| s));
    let started = std::time::Instant::now();
    let err = lib_connect(LOOPBACK, silent_port, &t1).unwrap_err();
    assert!(matches!(err, RedisError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(held.join());
    let all = recorder.connections();
    for bytes in &all {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("AUTH") && !text.contains(REDIS_PASSWORD),
            "cleartext AUTH sent to primary_host: {text:?}"
        );
        // A TLS handshake record (22), TLS major version 3: a ClientHello.
        assert!(
            bytes.len() > 5 && bytes[0] == 0x16 && bytes[1] == 0x03,
            "not a TLS ClientHello: {bytes:02x?}"
        );
    }
}
