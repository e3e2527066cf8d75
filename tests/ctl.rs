//! `rapidproctl` in a real 2-node cluster (see `tests/cluster.rs`): the
//! freshly built binary runs inside the nodes by its absolute path (the
//! nodes see the host's filesystem), and what it says is compared with what
//! crm_mon, `ip addr` and psql say in each node.

use std::time::Duration;

use rapidpro_ha_harness::workload::Writer;
use rapidpro_ha_harness::{poll, CmdOutput, NsCluster};
use serde_json::Value;

use super::bin;
use super::cluster::{
    assert_primary, finish_load, start_load, steady_pair, wait_one_promoted, wait_synchronous,
    SETTLE,
};
use super::cluster::{assert_watched, WatchMark};

/// The freshly built rapidproctl.
fn ctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rapidproctl")
}

/// Longest a rapidproctl run may take in a test (a switchover included).
const CTL_TIMEOUT: Duration = Duration::from_secs(200);

/// Runs `rapidproctl args…` inside `node`.
#[track_caller]
fn ctl(c: &NsCluster, node: &str, args: &[&str]) -> CmdOutput {
    let mut all = vec![ctl_bin()];
    all.extend_from_slice(args);
    c.node(node)
        .exec(&all, CTL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `rapidproctl --json args…` inside `node`, expecting exit 0, and
/// parses its output.
#[track_caller]
fn ctl_json(c: &NsCluster, node: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ctl(c, node, &all);
    assert!(
        out.success(),
        "{}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("rapidproctl --json printed no JSON ({e}):\n{}", out.stdout))
}

/// The node called `name` in `status --json` output.
#[track_caller]
fn node<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no node {name} in {status:#}"))
}

/// `primary` or `standby`, as psql in the node says.
#[track_caller]
fn pg_role(c: &NsCluster, name: &str) -> &'static str {
    match c
        .node(name)
        .psql("select pg_is_in_recovery()")
        .unwrap_or_else(|e| panic!("{e}"))
        .as_str()
    {
        "f" => "primary",
        "t" => "standby",
        other => panic!("pg_is_in_recovery() on {name}: {other:?}"),
    }
}

/// Asserts that `status --json`, asked on `ask`, matches the cluster's true
/// state among the nodes that are up: the promoted node (crm_mon), the VIP
/// owner (`ip addr` in each node), PostgreSQL roles (psql in each node).
#[track_caller]
fn assert_status_matches(c: &NsCluster, ask: &str, status: &Value) {
    let promoted = c.promoted_node().expect("one promoted node");
    assert_eq!(
        status["cluster"]["promoted"],
        promoted.as_str(),
        "{status:#}"
    );
    assert_eq!(
        status["cluster"]["stack_resource"],
        c.stack_clone_id().as_str()
    );
    assert_eq!(status["vip"]["address"], c.vip(), "{status:#}");
    for n in c.nodes().iter().filter(|n| n.is_up()) {
        let v = node(status, &n.name);
        let has_vip = n.has_address(c.vip());
        assert_eq!(
            v["vip"], has_vip,
            "VIP on {} (asked on {ask}): {status:#}",
            n.name
        );
        if has_vip {
            assert_eq!(status["vip"]["node"], n.name.as_str(), "{status:#}");
        }
        assert_eq!(v["state"], "online", "{status:#}");
        assert_eq!(v["address"], n.addr.as_str(), "{status:#}");
        let role = pg_role(c, &n.name);
        assert_eq!(
            v["postgres"]["role"], role,
            "{} (asked on {ask}): {status:#}",
            n.name
        );
        if n.name == promoted {
            assert_eq!(v["role"], "Promoted", "{status:#}");
            assert_eq!(role, "primary");
            assert_eq!(v["redis"]["role"], "master", "{status:#}");
        } else {
            assert_eq!(v["role"], "Unpromoted", "{status:#}");
            assert_eq!(v["redis"]["role"], "replica", "{status:#}");
        }
    }
}

/// Polls `rapidproctl status` on `ask` until one snapshot shows `standby`
/// streaming with lag 0 and at the very LSN `primary` reports in it.
/// `rapidproctl status` asks the nodes one after the other, and an idle
/// primary still writes WAL now and then (the background writer's
/// running-transactions record): one snapshot may catch the primary a record
/// ahead (CI: primary 0/17AC8F8, standby 0/17AC9F8). A caught-up standby
/// shows the same LSN in a later snapshot, so that is what is waited for.
/// Also waits for its Redis link up; returns that status.
#[track_caller]
fn wait_caught_up(c: &NsCluster, ask: &str, primary: &str, standby: &str) -> Value {
    poll(
        &format!(
            "rapidproctl status on {ask} showing {standby} streaming with lag 0 at {primary}'s LSN"
        ),
        SETTLE,
        || {
            let st = ctl_json(c, ask, &["status"]);
            let v = node(&st, standby);
            let p = node(&st, primary);
            let ok = v["postgres"]["lag_bytes"] == 0
                && v["postgres"]["replication_state"] == "streaming"
                && v["postgres"]["receiver"] == "streaming"
                && v["redis"]["link"] == "up"
                && p["postgres"]["lsn"] == v["postgres"]["lsn"];
            ok.then_some(st)
        },
    )
}

#[test]
fn status_json_matches_the_cluster_before_and_after_a_power_off_failover() {
    let c = NsCluster::builder("ctl-status")
        .nodes(2)
        .agent(bin())
        .app(true)
        .build();
    let (primary, standby) = steady_pair(&c);
    wait_synchronous(&c, &primary);

    // Writes through the VIP, then replication catches up: lag 0.
    let writer = Writer::start(c.client_netns_pid(), c.vip(), 5432);
    writer.wait_for_acks(20, SETTLE);
    let written = writer.stop();
    assert!(!written.acked.is_empty());
    for ask in [&primary, &standby] {
        let st = wait_caught_up(&c, ask, &primary, &standby);
        assert_status_matches(&c, ask, &st);
        let p = node(&st, &primary);
        let s = node(&st, &standby);
        // Equal LSNs: what wait_caught_up waited for.
        assert_eq!(
            p["postgres"]["timeline"], s["postgres"]["timeline"],
            "{st:#}"
        );
        assert_eq!(s["postgres"]["sync_state"], "quorum", "{st:#}");
        assert_eq!(st["cluster"]["quorum"], true);
        assert_eq!(st["failed_actions"], Value::Array(vec![]), "{st:#}");
        for n in [p, s] {
            assert_eq!(n["transient"], false, "{st:#}");
            assert_eq!(n["health"], "green", "{st:#}");
        }
    }
    // The table, for people.
    let text = ctl(&c, &standby, &["status"]);
    assert!(text.success(), "{}", text.failure_message());
    assert!(
        text.stdout
            .contains(&format!("VIP {} on {primary}", c.vip())),
        "{}",
        text.stdout
    );
    for name in [&primary, &standby] {
        assert!(
            text.stdout.contains(&format!("| {name} ")),
            "{}",
            text.stdout
        );
    }
    eprintln!("rapidproctl status before the failover:\n{}", text.stdout);

    let load = start_load(&c);
    c.power_off(&primary);
    let promoted = wait_one_promoted(&c, &standby, Some(&standby));
    assert_eq!(promoted, standby);
    c.wait_settled(&standby, SETTLE);
    assert_primary(&c, &standby);

    let st = ctl_json(&c, &standby, &["status"]);
    assert_status_matches(&c, &standby, &st);
    let old = node(&st, &primary);
    assert_eq!(old["state"], "offline", "{st:#}");
    assert_eq!(old["role"], "Stopped", "{st:#}");
    assert_eq!(old["vip"], false, "{st:#}");
    assert_eq!(old["postgres"]["role"], "down", "{st:#}");
    assert_eq!(old["redis"]["role"], "down", "{st:#}");
    assert_eq!(st["vip"]["node"], standby.as_str(), "{st:#}");
    // The harness's two nodes have two_node and no arbiter.
    assert_eq!(st["quorum_device"]["configured"], false, "{st:#}");
    assert_eq!(st["quorum_device"]["two_node"], true, "{st:#}");
    let new = node(&st, &standby);
    assert_eq!(new["postgres"]["role"], "primary", "{st:#}");
    assert_eq!(new["redis"]["role"], "master", "{st:#}");
    let text = ctl(&c, &standby, &["status"]);
    assert!(text.success(), "{}", text.failure_message());
    eprintln!("rapidproctl status after the failover:\n{}", text.stdout);
    finish_load(&c, load, "power-off seen by rapidproctl status");
}

#[test]
fn switchover_moves_the_role_under_writes_without_losing_an_acknowledged_one() {
    let c = NsCluster::builder("ctl-switchover")
        .nodes(2)
        .agent(bin())
        .app(true)
        .build();
    let (old, new) = steady_pair(&c);
    wait_synchronous(&c, &old);
    let load = start_load(&c);

    let dry = ctl_json(&c, &old, &["switchover", "--dry-run"]);
    assert_eq!(dry["from"], old.as_str(), "{dry:#}");
    assert_eq!(dry["to"], new.as_str(), "{dry:#}");
    assert_eq!(c.promoted_node().as_deref(), Some(old.as_str()));

    // nginx restarting (stop, then start: transitions and operations in
    // flight, usually still under way when switchover reads the cluster,
    // which then prints that it waited): switchover waits for them to end
    // instead of refusing (a runbook run once saw it refuse "in a
    // transition" right after a monitor had changed a score).
    c.node(&old)
        .sh("(crm_resource --restart --resource nginx --timeout 60s >/dev/null 2>&1 &)")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = ctl(&c, &old, &["switchover", "--timeout", "150"]);
    assert!(
        out.success(),
        "{}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    eprintln!("rapidproctl switchover:\n{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("{new} promoted with the VIP on {new}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{old} is now Unpromoted")),
        "{}",
        out.stdout
    );
    assert_eq!(wait_one_promoted(&c, &new, Some(&new)), new);
    assert_primary(&c, &new);
    // The move constraint is gone, and the role does not flip back.
    let constraints = c
        .node(&new)
        .run(&["cibadmin", "--query", "--scope", "constraints"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!constraints.contains("cli-prefer"), "{constraints}");
    assert!(!constraints.contains("cli-ban"), "{constraints}");
    c.wait_settled(&new, SETTLE);
    std::thread::sleep(Duration::from_secs(5));
    c.wait_settled(&new, SETTLE);
    assert_eq!(wait_one_promoted(&c, &new, Some(&new)), new);
    finish_load(&c, load, "rapidproctl switchover");
}

#[test]
fn switchover_refuses_a_lagging_standby_and_leaves_the_roles_alone() {
    let c = NsCluster::builder("ctl-lagging")
        .nodes(2)
        .agent(bin())
        .param("maxlag", "65536")
        .build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let (primary, standby) = steady_pair(&c);
    c.node(&standby)
        .psql("select pg_wal_replay_pause()")
        .unwrap_or_else(|e| panic!("{e}"));
    // About 1 MB of WAL the standby receives but does not replay.
    c.node(&primary)
        .psql(
            "create table filler(x text); \
             insert into filler select repeat('x', 1000) from generate_series(1, 1000)",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    poll(
        &format!("{standby} more than 65536 bytes behind in replay"),
        SETTLE,
        || {
            let lag = c
                .node(&primary)
                .psql(&format!(
                    "select pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint \
                     from pg_stat_replication where application_name = '{standby}'"
                ))
                .ok()?;
            (lag.parse::<u64>().ok()? > 65536).then_some(())
        },
    );

    let out = ctl(&c, &primary, &["switchover", &standby]);
    assert_eq!(out.code(), 3, "{}", out.failure_message());
    assert!(
        out.stdout
            .contains(&format!("switchover refused: {standby} is "))
            && out
                .stdout
                .contains("behind the primary, beyond maxlag 65536 bytes"),
        "{}",
        out.stdout
    );
    let mut args = vec![ctl_bin(), "--json", "switchover"];
    args.push(&standby);
    let json = c
        .node(&standby)
        .exec(&args, CTL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json.code(), 3, "{}", json.failure_message());
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["refused"], true, "{v:#}");
    assert_eq!(v["refusal"], "lagging", "{v:#}");

    // Nothing moved, no constraint left.
    assert_eq!(c.promoted_node().as_deref(), Some(primary.as_str()));
    assert_primary(&c, &primary);
    let constraints = c
        .node(&primary)
        .run(&["cibadmin", "--query", "--scope", "constraints"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!constraints.contains("cli-"), "{constraints}");
    // status shows why.
    let st = ctl_json(&c, &primary, &["status"]);
    let s = node(&st, &standby);
    assert_eq!(s["postgres"]["replay_paused"], true, "{st:#}");
    assert!(
        s["postgres"]["lag_bytes"].as_u64().unwrap() > 65536,
        "{st:#}"
    );
    assert_watched(
        &c,
        &watch_mark,
        "switchover refuses a lagging standby and leaves the roles alone",
    );
}

#[test]
fn state_postgres_check_health_and_pgdump_answer_on_a_running_pair() {
    let c = NsCluster::builder("ctl-state")
        .nodes(2)
        .agent(bin())
        .build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let (primary, standby) = steady_pair(&c);

    // state: this node by default, or the one named.
    let p = ctl_json(&c, &primary, &["state"]);
    assert_eq!(p["name"], primary.as_str(), "{p:#}");
    assert_eq!(p["role"], "Promoted", "{p:#}");
    assert_eq!(p["vip"], true, "{p:#}");
    assert_eq!(p["transient"], false, "{p:#}");
    assert_eq!(p["postgres"]["role"], "primary", "{p:#}");
    let s = ctl_json(&c, &primary, &["state", &standby]);
    assert_eq!(s["name"], standby.as_str(), "{s:#}");
    assert_eq!(s["role"], "Unpromoted", "{s:#}");
    assert_eq!(s["vip"], false, "{s:#}");
    assert_eq!(s["postgres"]["role"], "standby", "{s:#}");
    let text = ctl(&c, &standby, &["state"]);
    assert!(text.success(), "{}", text.failure_message());
    assert!(text.stdout.contains("role:"), "{}", text.stdout);
    assert!(text.stdout.contains("Unpromoted"), "{}", text.stdout);
    let unknown = ctl(&c, &standby, &["state", "node9"]);
    assert_eq!(unknown.code(), 1, "{}", unknown.failure_message());
    assert!(
        unknown.stderr.contains("no node \"node9\""),
        "{}",
        unknown.stderr
    );

    // postgres: the sender side on the primary, the receiver on the standby.
    let pp = ctl_json(&c, &primary, &["postgres"]);
    assert_eq!(pp["role"], "primary", "{pp:#}");
    assert_eq!(pp["receiver"], Value::Null, "{pp:#}");
    let senders = pp["senders"].as_array().unwrap();
    assert_eq!(senders.len(), 1, "{pp:#}");
    assert_eq!(senders[0]["application_name"], standby.as_str(), "{pp:#}");
    assert_eq!(senders[0]["state"], "streaming", "{pp:#}");
    assert_eq!(
        senders[0]["client_addr"],
        c.node(&standby).addr.as_str(),
        "{pp:#}"
    );
    let sp = ctl_json(&c, &standby, &["postgres"]);
    assert_eq!(sp["role"], "standby", "{sp:#}");
    assert_eq!(sp["senders"], Value::Array(vec![]), "{sp:#}");
    assert_eq!(sp["receiver"]["status"], "streaming", "{sp:#}");
    assert_eq!(sp["receiver"]["sender_host"], c.vip(), "{sp:#}");
    assert_eq!(sp["timeline"], pp["timeline"], "{sp:#}");
    let text = ctl(&c, &standby, &["postgres"]);
    assert!(text.success(), "{}", text.failure_message());
    assert!(
        text.stdout
            .contains("WAL receiver (pg_stat_wal_receiver):\n  status:          streaming"),
        "{}",
        text.stdout
    );

    // check: the configuration the example script builds passes; with no
    // alert configured, the harness's Redis without requirepass, and its
    // two nodes with two_node and no quorum device, those are the three
    // warnings.
    let chk = ctl_json(&c, &standby, &["check"]);
    assert_eq!(chk["status"], "warning", "{chk:#}");
    for k in chk["checks"].as_array().unwrap() {
        let expected = if k["check"] == "alerts"
            || k["check"] == "redis requirepass"
            || k["check"] == "quorum device"
        {
            "warning"
        } else {
            "ok"
        };
        assert_eq!(k["status"], expected, "{chk:#}");
    }
    assert!(
        chk["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["check"] == "validate-all"),
        "{chk:#}"
    );
    let none = ctl(&c, &standby, &["alert", "--test"]);
    assert_eq!(none.code(), 3, "{}", none.failure_message());
    assert!(
        none.stdout.contains("no rapidpro-alert alert"),
        "{}",
        none.stdout
    );

    // health --publish: a closed gateway port is red, exit 3, and the
    // attribute shows in status. Loose CPU and load thresholds: the tests
    // share two cores.
    let loose = [
        "--cpu-yellow",
        "101",
        "--load-yellow",
        "1000",
        "--load-red",
        "1000",
    ];
    let mut args = vec!["health", "--publish", "--gateway", "127.0.0.1:1"];
    args.extend(loose);
    let h = ctl(&c, &standby, &args);
    assert_eq!(h.code(), 3, "{}", h.failure_message());
    assert!(h.stdout.contains("| gateway "), "{}", h.stdout);
    assert!(h.stdout.contains("published: #health-cpu"), "{}", h.stdout);
    let st = poll("the #health-gateway attribute in status", SETTLE, || {
        let st = ctl_json(&c, &primary, &["status"]);
        (node(&st, &standby)["health_attributes"]["#health-gateway"] == "red").then_some(st)
    });
    let sv = node(&st, &standby);
    assert_eq!(sv["health"], "red", "{st:#}");
    for a in ["cpu", "memory", "load", "disk", "network"] {
        let v = &sv["health_attributes"][format!("#health-{a}")];
        assert!(
            ["green", "yellow", "red"].contains(&v.as_str().unwrap_or("")),
            "{a}: {st:#}"
        );
    }
    let mut args = vec!["health"];
    args.extend(loose);
    let h = ctl_json(&c, &primary, &args);
    assert_eq!(h["status"], "green", "{h:#}");
    assert_eq!(h["published"], Value::Array(vec![]), "{h:#}");

    // pgdump: from the primary, locally; an existing file is refused.
    let dir = c.dir.join("dumps");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("before-intervention.sql");
    let file_s = file.display().to_string();
    let d = ctl_json(&c, &primary, &["pgdump", &file_s]);
    assert_eq!(d["source"], "local", "{d:#}");
    assert_eq!(d["program"], "pg_dumpall", "{d:#}");
    let sql = std::fs::read_to_string(&file).unwrap();
    assert!(
        sql.contains("CREATE TABLE public.sms"),
        "{}",
        &sql[..sql.len().min(500)]
    );
    assert_eq!(d["bytes"], sql.len() as u64, "{d:#}");
    let again = ctl(&c, &primary, &["pgdump", &file_s]);
    assert_eq!(again.code(), 1, "{}", again.failure_message());
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let custom = dir.join("postgres.dump").display().to_string();
    let d = ctl_json(
        &c,
        &primary,
        &[
            "pgdump",
            &custom,
            "--database",
            "postgres",
            "--format",
            "custom",
        ],
    );
    assert_eq!(d["format"], "custom", "{d:#}");
    let head = std::fs::read(&custom).unwrap();
    assert!(head.starts_with(b"PGDMP"), "not a pg_dump archive");
    // From the standby: through the VIP, which needs a password here...
    let remote = dir.join("remote.sql").display().to_string();
    let r = ctl(&c, &standby, &["pgdump", &remote]);
    assert_eq!(r.code(), 1, "{}", r.failure_message());
    assert!(r.stderr.contains("pg_dumpall failed"), "{}", r.stderr);
    assert!(r.stderr.contains("--local"), "{}", r.stderr);
    assert!(!std::path::Path::new(&remote).exists());
    assert!(!std::path::Path::new(&format!("{remote}.partial")).exists());
    // ...or of the standby itself.
    let d = ctl_json(&c, &standby, &["pgdump", &remote, "--local"]);
    assert_eq!(
        (d["source"].as_str(), d["role"].as_str()),
        (Some("local"), Some("standby")),
        "{d:#}"
    );
    assert!(std::fs::read_to_string(&remote)
        .unwrap()
        .contains("CREATE TABLE public.sms"));
    assert_watched(
        &c,
        &watch_mark,
        "state postgres check health and pgdump answer on a running pair",
    );
}

#[test]
fn check_passes_alert_test_delivers_and_status_shows_the_app_where_it_runs() {
    let recipient = "oncall@example.org,+255700000001";
    let c = NsCluster::builder("ctl-alerts")
        .nodes(2)
        .agent(bin())
        .app(true)
        .alerts(&[recipient])
        .sbin(env!("CARGO_BIN_EXE_rapidpro-alert"))
        .build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let (primary, standby) = steady_pair(&c);

    // Every check ok but the warnings of the harness: its Redis runs
    // without requirepass, its two nodes have two_node and no quorum device.
    let chk = ctl_json(&c, &standby, &["check"]);
    assert_eq!(chk["status"], "warning", "{chk:#}");
    for k in chk["checks"].as_array().unwrap() {
        let expected = if k["check"] == "redis requirepass" || k["check"] == "quorum device" {
            "warning"
        } else {
            "ok"
        };
        assert_eq!(k["status"], expected, "{chk:#}");
    }
    let alert_lines: Vec<&Value> = chk["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| {
            k["check"]
                .as_str()
                .unwrap_or("")
                .starts_with("alert rapidpro-alert: ")
        })
        .collect();
    assert!(alert_lines.len() >= 3, "{chk:#}");

    let mails_before = c.alert_smtp().messages().len();
    let texts_before = c.alert_sms().requests().len();
    let out = ctl(&c, &standby, &["alert", "--test"]);
    assert!(out.success(), "{}", out.failure_message());
    assert!(
        out.stdout.contains("alert rapidpro-alert: all sent"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("email to oncall@example.org sent"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("SMS to +255700000001 sent"),
        "{}",
        out.stdout
    );
    poll(
        "the test email and SMS at the sinks",
        Duration::from_secs(30),
        || {
            let mails = c.alert_smtp().messages();
            let texts = c.alert_sms().requests();
            let mail = mails[mails_before.min(mails.len())..]
                .iter()
                .any(|m| m.to.iter().any(|t| t.contains("oncall@example.org")));
            let text = texts[texts_before.min(texts.len())..]
                .iter()
                .any(|r| r.param("to").as_deref() == Some("+255700000001"));
            (mail && text).then_some(())
        },
    );

    // The app group runs on the primary only.
    let st = poll("the app group started on the primary", SETTLE, || {
        let st = ctl_json(&c, &standby, &["status"]);
        let all = node(&st, &primary)["app"]
            .as_array()?
            .iter()
            .all(|a| a["running"] == true);
        all.then_some(st)
    });
    let names: Vec<&str> = node(&st, &primary)["app"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["resource"].as_str())
        .collect();
    assert_eq!(names, ["uwsgi", "celery", "celerybeat", "nginx"], "{st:#}");
    assert!(
        node(&st, &standby)["app"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["running"] == false),
        "{st:#}"
    );
    let text = ctl(&c, &standby, &["status"]);
    assert!(text.stdout.contains("| App "), "{}", text.stdout);
    assert!(
        text.stdout
            .contains("all 4 (uwsgi,celery,celerybeat,nginx)"),
        "{}",
        text.stdout
    );
    eprintln!("rapidproctl status with the app tier:\n{}", text.stdout);
    assert_watched(
        &c,
        &watch_mark,
        "check passes alert test delivers and status shows the app where it runs",
    );
}
