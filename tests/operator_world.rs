//! The agent in the operator's world rather than the harness's: a standby
//! made with `pg_basebackup`, Debian's `ssl = on` configuration, a
//! replication role without the pg_rewind grants, the password in
//! `.pgpass`, a password with quotes and backslashes, and a primary whose
//! servers do not answer at primary_host. Each test failed before its fix.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{
    run_command, Node, Pair, TestDir, LOOPBACK, PG_BINDIR, PG_USER, REPL_PASSWORD, REPL_USER,
};

use super::agent_node::{
    diverge, post_promote, primary_and_standby, OCF_ERR_GENERIC, OCF_RUNNING_PROMOTED, OCF_SUCCESS,
};
use super::{agent, wait_redis_link, wait_streaming};

const OCF_DEGRADED_PROMOTED: i32 = 191;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `args` as the `postgres` user (runuser), panicking with the output
/// on failure.
#[track_caller]
fn as_postgres(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new("runuser");
    c.args(["-u", PG_USER, "--"]).args(args).current_dir("/");
    for (k, v) in env {
        c.env(k, v);
    }
    run_command(c, TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_result()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The port and socket lines the harness gives each node, appended again
/// after a base backup brought the primary's postgresql.conf.
fn own_settings(node: &Node) -> String {
    format!(
        "port = {}\nunix_socket_directories = '{}'\n",
        node.pgport,
        node.pg_socket_dir.display()
    )
}

/// `pg_basebackup -X stream -R` from node1 into node2's emptied data
/// directory, as RUNBOOK and README tell operators to build a standby.
fn basebackup(from: &Node, into: &Node) {
    std::fs::remove_dir_all(&into.pgdata).unwrap();
    let mut mkdir = Command::new("install");
    mkdir
        .args(["-d", "-o", PG_USER, "-g", PG_USER, "-m", "0700"])
        .arg(&into.pgdata);
    run_command(mkdir, TIMEOUT).unwrap().into_result().unwrap();
    as_postgres(
        &[
            &format!("{PG_BINDIR}/pg_basebackup"),
            "-h",
            LOOPBACK,
            "-p",
            &from.pgport.to_string(),
            "-U",
            REPL_USER,
            "-D",
            into.pgdata.to_str().unwrap(),
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
        ],
        &[("PGPASSWORD", REPL_PASSWORD)],
    );
    let conf = into.pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&own_settings(into));
    std::fs::write(&conf, text).unwrap();
}

/// Defect 1: the copy's control file says `in production` and it holds a
/// `backup_label`: start took it for a crashed primary and ran single-user
/// recovery, which refuses `standby.signal`.
#[test]
fn a_standby_made_by_pg_basebackup_starts_and_streams() {
    let pair = Pair::new("basebackup");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    n1.psql("insert into sms(body) values ('before the base backup')");
    basebackup(n1, n2);
    assert!(n2.pgdata.join("backup_label").exists());
    assert!(n2.pgdata.join("standby.signal").exists());

    let out = agent(n2, n1).run("start");
    out.assert_code(OCF_SUCCESS);
    assert!(
        !out.stderr.contains("single-user"),
        "a base backup is no crashed primary:\n{}",
        out.stderr
    );
    wait_streaming(n2);
    wait_redis_link(n2);
    assert_eq!(n2.psql("select body from sms"), "before the base backup");
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
}

/// Defect 2: Debian's `postgresql.conf` has `ssl = on` with the snakeoil
/// key, readable only through the `ssl-cert` group of `postgres`.
#[test]
fn debians_ssl_configuration_starts_under_the_agent() {
    let key = Path::new("/etc/ssl/private/ssl-cert-snakeoil.key");
    let cert = Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    assert!(
        key.exists() && cert.exists(),
        "Debian's snakeoil certificate (package ssl-cert, a dependency of postgresql) is missing"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(
        mode & 0o004,
        0,
        "the snakeoil key is world-readable here: the test proves nothing"
    );

    let pair = Pair::new("debian_ssl");
    let n1 = &pair.nodes[0];
    let conf = n1.pgdata.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        cert.display(),
        key.display()
    ));
    std::fs::write(&conf, text).unwrap();

    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    assert_eq!(n1.psql("show ssl"), "on");
}

/// Revokes the four EXECUTE grants pg_rewind needs from the replication
/// role (on the primary; the standby gets it by replication).
fn revoke_rewind_grants(primary: &Node) {
    for f in [
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    ] {
        primary.psql(&format!("revoke execute on function {f} from {REPL_USER}"));
    }
}

/// Defect 4: with rewind=false the history check ran `pg_rewind --dry-run`,
/// which needs grants the documentation calls optional: every old
/// primary's start failed with "permission denied for function
/// pg_read_binary_file".
#[test]
fn an_old_primary_rejoins_without_the_rewind_grants_when_rewind_is_off() {
    let pair = Pair::new("no_rewind_grants");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    revoke_rewind_grants(n1);
    n1.psql("insert into sms(body) values ('on the old primary')");
    // A clean switchover in Pacemaker's order, except that the old primary
    // is stopped, not demoted: its next start checks its history.
    agent(n1, n2).run("stop").assert_code(OCF_SUCCESS);
    agent(n2, n2).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n2], n2);
    n2.psql("insert into sms(body) values ('on the new primary')");

    let out = agent(n1, n2).param("rewind", "false").run("start");
    out.assert_code(OCF_SUCCESS);
    assert!(out.stderr.contains("no rewind required"), "{}", out.stderr);
    wait_streaming(n1);
    wait_redis_link(n1);
    poll_rows(n1, "on the new primary");
}

/// Defect 4, the other side: without the grants, a diverged old primary is
/// still found diverged and refused, its data untouched.
#[test]
fn a_diverged_old_primary_is_refused_without_the_rewind_grants() {
    let pair = Pair::new("diverged_no_grants");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    diverge(&pair);
    revoke_rewind_grants(n2);
    let out = agent(n1, n2).param("rewind", "false").run("start");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("diverged");
    out.assert_reason_contains("rebuild");
    assert!(
        n1.postmaster_pid().is_none(),
        "the diverged node must not run"
    );
}

fn poll_rows(node: &Node, want: &str) {
    rapidpro_ha_harness::poll(
        &format!("{} has the row {want:?}", node.name),
        Duration::from_secs(30),
        || {
            let rows = node.try_psql("select body from sms").ok()?;
            rows.contains(want).then_some(())
        },
    );
}

/// Defect 5: with the password in `system_user`'s `.pgpass` instead of
/// `repl_password`, the agent's own check of primary_host could not log in,
/// reported "cannot tell", and started a diverged old primary without its
/// history check. `.pgpass` lives in postgres's home: the agent runs in a
/// mount namespace of its own where that home is a directory of the test.
#[test]
fn the_password_in_pgpass_lets_start_find_a_diverged_old_primary() {
    let pair = Pair::new("pgpass");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    diverge(&pair);

    let passwd = run_command(
        {
            let mut c = Command::new("getent");
            c.args(["passwd", PG_USER]);
            c
        },
        TIMEOUT,
    )
    .unwrap()
    .into_result()
    .unwrap();
    let home = passwd.trim().split(':').nth(5).expect("a home").to_owned();
    let dir = TestDir::new("pgpass_home");
    let fake_home = dir.join("home");
    std::fs::create_dir(&fake_home).unwrap();
    let pgpass = fake_home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("{LOOPBACK}:*:*:{REPL_USER}:{REPL_PASSWORD}\n"),
    )
    .unwrap();
    let mut chown = Command::new("chown");
    chown
        .args(["-R", &format!("{PG_USER}:{PG_USER}")])
        .arg(&fake_home);
    run_command(chown, TIMEOUT).unwrap().into_result().unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let bind = format!(
        "mount --bind '{}' '{}' && exec \"$@\"",
        fake_home.display(),
        home
    );
    let out = agent(n1, n2)
        .unset_param("repl_password")
        .param("rewind", "false")
        .run_under(
            &[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &bind,
                "sh",
            ],
            "start",
        );
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains("diverged");
    assert!(
        !out.stderr.contains("cannot tell"),
        "the agent did not use .pgpass:\n{}",
        out.stderr
    );
    assert!(
        n1.postmaster_pid().is_none(),
        "the diverged node must not run"
    );
}

/// Defect 6: a password with `'` and `\` was written into
/// `postgresql.auto.conf` with the backslash unescaped: PostgreSQL's
/// configuration parser ate it and the standby could never log in.
#[test]
fn a_replication_password_with_quotes_and_backslashes_reaches_the_standby() {
    let password = r"it's a \back\slash";
    let pair = Pair::new("odd_password");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    n1.psql(&format!(
        "alter role {REPL_USER} password '{}'",
        password.replace('\'', "''")
    ));
    let with_password = |node: &Node| agent(node, n1).param("repl_password", password);
    with_password(n2).run("start").assert_code(OCF_SUCCESS);
    wait_streaming(n2);
    // PostgreSQL's own reading of the file gives the conninfo back whole.
    let shown = as_postgres(
        &[
            &format!("{PG_BINDIR}/postgres"),
            "-D",
            n2.pgdata.to_str().unwrap(),
            "-C",
            "primary_conninfo",
        ],
        &[],
    );
    assert!(
        shown.contains(r"password='it\'s a \\back\\slash'"),
        "{shown}"
    );
    with_password(n2).run("monitor").assert_code(OCF_SUCCESS);
}

/// Defect 3: Redis or PostgreSQL not answering at primary_host (Debian's
/// `bind 127.0.0.1`, a `listen_addresses` without the VIP) left every
/// follower retrying forever while the primary's monitor said all was well.
/// The primary asks itself there while a follower is missing, and is
/// degraded, with the fix, once that outlasts two monitor intervals.
#[test]
fn a_primary_whose_servers_do_not_answer_at_primary_host_is_degraded_after_its_grace() {
    let pair = Pair::new("unreachable");
    let n1 = &pair.nodes[0];
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    // A second node that never joins: one follower is expected.
    let monitor = |pg_port: u16, redis_port: u16| {
        agent(n1, n1)
            .param("primary_port", pg_port.to_string())
            .param("redis_primary_port", redis_port.to_string())
            .meta("interval", "1000")
            .meta("clone_max", "2")
            .run("monitor")
    };
    monitor(n1.pgport, n1.redis_port).assert_code(OCF_RUNNING_PROMOTED);

    // Nothing listens on these ports of primary_host.
    let closed = rapidpro_ha_harness::free_port();
    for (pg, redis, what) in [
        (n1.pgport, closed, "Redis does not answer"),
        (closed, n1.redis_port, "PostgreSQL does not answer"),
    ] {
        // Within the grace period: still running promoted.
        monitor(pg, redis).assert_code(OCF_RUNNING_PROMOTED);
        let started = Instant::now();
        let out = loop {
            let out = monitor(pg, redis);
            if out.code != OCF_RUNNING_PROMOTED || started.elapsed() > Duration::from_secs(20) {
                break out;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        out.assert_code(OCF_DEGRADED_PROMOTED);
        out.assert_reason_contains(what);
        out.assert_reason_contains("primary_host");
        // Fixed: running promoted again at once.
        monitor(n1.pgport, n1.redis_port).assert_code(OCF_RUNNING_PROMOTED);
    }

    // A primary_host that is none of this node's addresses (a VIP not
    // colocated with the Promoted role) is named without connecting there
    // (192.0.2.1 is TEST-NET-1: no packet is sent).
    let elsewhere = || {
        agent(n1, n1)
            .param("primary_host", "192.0.2.1")
            .meta("interval", "1000")
            .meta("clone_max", "2")
            .run("monitor")
    };
    elsewhere().assert_code(OCF_RUNNING_PROMOTED);
    let started = Instant::now();
    let out = loop {
        let out = elsewhere();
        if out.code != OCF_RUNNING_PROMOTED || started.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    out.assert_code(OCF_DEGRADED_PROMOTED);
    out.assert_reason_contains("not an address of this node");
}
