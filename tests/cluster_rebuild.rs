//! `rapidproctl rebuild` in a real 2-node cluster (see `tests/cluster.rs`),
//! with a writer going through the VIP the whole time: the primary is
//! refused, a dry run changes nothing, and the standby rebuilt on itself
//! streams again, Unpromoted, with its old data directory kept under its
//! timestamped name, no ban left, and every acknowledged write on the
//! primary and on the rebuilt standby.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rapidpro_ha_harness::workload::{missing_rows, Writer};
use rapidpro_ha_harness::{poll, CmdOutput, NsCluster, REPL_PASSWORD, STACK_AGENT};
use serde_json::Value;

use super::bin;
use super::cluster::{
    assert_watched, steady_pair, wait_one_promoted, wait_replicating, WatchMark, PG_PORT, SETTLE,
};

/// Longest a rapidproctl run may take here.
const CTL_TIMEOUT: Duration = Duration::from_secs(240);
/// The data directory inside every node, and its parent on the host side.
const PGDATA: &str = "/var/lib/postgresql/15/main";
const PG_PARENT: &str = "var-lib-postgresql/15";

/// Runs `rapidproctl args…` inside `node` (on the nodes' PATH).
#[track_caller]
fn ctl(c: &NsCluster, node: &str, args: &[&str]) -> CmdOutput {
    let mut all = vec!["rapidproctl"];
    all.extend_from_slice(args);
    c.node(node)
        .exec(&all, CTL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `main.rebuild-*` directories beside a node's data directory.
fn kept_dirs(c: &NsCluster, node: &str) -> Vec<PathBuf> {
    let parent = c.node(node).host_path(PG_PARENT);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&parent)
        .unwrap_or_else(|e| panic!("{}: {e}", parent.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("main.rebuild-"))
        })
        .collect();
    v.sort();
    v
}

/// The location constraints of the CIB.
fn constraints(c: &NsCluster, ask: &str) -> String {
    c.node(ask)
        .run(&["cibadmin", "--query", "--scope", "constraints"])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `YYYYmmddTHHMMSSZ`.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

#[test]
fn rebuild_reclones_a_standby_under_writes_and_keeps_its_old_data() {
    let c = NsCluster::builder("rebuild")
        .nodes(2)
        .agent(bin())
        .sbin(env!("CARGO_BIN_EXE_rapidproctl"))
        .build();
    let (primary, standby) = steady_pair(&c);
    let pid = c.client_netns_pid();
    let writer = Writer::start(pid, c.vip(), PG_PORT);
    writer.wait_for_acks(20, SETTLE);
    let mark = WatchMark::now(&c);

    // The primary is refused, wherever it is asked; and the standby must be
    // rebuilt on itself.
    let out = ctl(&c, &primary, &["rebuild", &primary]);
    assert_eq!(out.code(), 3, "{}", out.failure_message());
    assert!(
        out.stdout
            .contains(&format!("rebuild refused: {primary} is the primary")),
        "{}",
        out.stdout
    );
    let out = ctl(&c, &primary, &["--json", "rebuild", &standby]);
    assert_eq!(out.code(), 3, "{}", out.failure_message());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["refusal"], "not_local", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .ends_with(&format!("run it on {standby}")),
        "{v:#}"
    );

    // What only the old directory has.
    let marker = c
        .node(&standby)
        .host_path(&format!("{PG_PARENT}/main/rebuild-marker"));
    std::fs::write(&marker, "old data\n").unwrap();

    // The dry run: the plan, with the real paths and commands, and no
    // password; nothing changes.
    let out = ctl(&c, &standby, &["--json", "rebuild", &standby, "--dry-run"]);
    assert!(
        out.success(),
        "{}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    assert!(!out.stdout.contains(REPL_PASSWORD), "{}", out.stdout);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["dry_run"], true, "{plan:#}");
    assert_eq!(plan["node"], standby.as_str(), "{plan:#}");
    assert_eq!(plan["primary"], primary.as_str(), "{plan:#}");
    assert_eq!(plan["steps"], Value::Array(vec![]), "{plan:#}");
    let steps = plan["plan"].as_array().unwrap();
    let kinds: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ban",
            "move_aside",
            "base_backup",
            "configure",
            "give_back",
            "wait_streaming"
        ],
        "{plan:#}"
    );
    let backup = steps[2]["action"].as_str().unwrap();
    assert!(
        backup.contains(&format!(
            // -d: the agent's sslmode (the default, prefer) for libpq.
            "pg_basebackup -d sslmode=prefer -h {} -p 5432 -U replicator -D {PGDATA} -X stream \
             -c fast --no-password",
            c.vip()
        )),
        "{backup}"
    );
    let planned_old = plan["old_data_dir"].as_str().unwrap().to_string();
    assert!(
        planned_old
            .strip_prefix(&format!("{PGDATA}.rebuild-"))
            .is_some_and(is_stamp),
        "{planned_old}"
    );
    assert_eq!(
        plan["config_files_kept"],
        serde_json::json!(["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]),
        "{plan:#}"
    );
    assert!(kept_dirs(&c, &standby).is_empty());
    assert!(marker.is_file());
    assert!(!constraints(&c, &primary).contains("cli-ban"));
    assert!(c
        .status(&primary)
        .unwrap()
        .nodes_with_role(STACK_AGENT, "Unpromoted")
        .contains(&standby));

    // The rebuild.
    let conf_before = std::fs::read(
        c.node(&standby)
            .host_path(&format!("{PG_PARENT}/main/postgresql.conf")),
    )
    .unwrap();
    let started = Instant::now();
    let out = ctl(&c, &standby, &["rebuild", &standby]);
    let took = started.elapsed();
    eprintln!("rapidproctl rebuild:\n{}{}", out.stdout, out.stderr);
    assert!(
        out.success(),
        "{}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    for step in [
        "done: instance banned from the node and stopped",
        "done: old data directory moved aside, new one created",
        "done: pg_basebackup",
        "done: configuration files and standby.signal",
        "done: ban cleared, failures cleaned up",
        "done: Unpromoted and streaming",
    ] {
        assert!(out.stdout.contains(step), "{step}:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains(REPL_PASSWORD), "{}", out.stdout);
    eprintln!(
        "measured: rapidproctl rebuild of {standby} under writes: {:.1} s",
        took.as_secs_f64()
    );

    // The old directory is kept under its timestamped name, with what only
    // it had; the new one has the node's own configuration.
    let kept = kept_dirs(&c, &standby);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = kept[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.strip_prefix("main.rebuild-").is_some_and(is_stamp),
        "{name}"
    );
    assert!(kept[0].join("rebuild-marker").is_file());
    assert!(kept[0].join("PG_VERSION").is_file());
    assert!(!marker.exists());
    let new = c.node(&standby).host_path(&format!("{PG_PARENT}/main"));
    assert_eq!(
        std::fs::read(new.join("postgresql.conf")).unwrap(),
        conf_before
    );
    assert!(!Path::new(&new.join("backup_label")).exists());
    assert!(
        out.stdout
            .contains(&format!("the old data is kept at {PGDATA}.rebuild-")),
        "{}",
        out.stdout
    );

    // Unpromoted and streaming, no ban left, no failure.
    wait_replicating(c.node(&standby));
    c.wait_settled(&primary, SETTLE);
    assert_eq!(wait_one_promoted(&c, &standby, Some(&primary)), primary);
    let cons = constraints(&c, &primary);
    assert!(!cons.contains("cli-ban"), "{cons}");
    let st = c.status(&primary).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.failures.is_empty(), "{:?}", st.failures);
    assert_eq!(
        c.node(&standby)
            .psql("select pg_is_in_recovery()")
            .unwrap_or_else(|e| panic!("{e}")),
        "t"
    );

    // Once more with --discard (and --json): the directory it moved aside
    // is deleted once the new copy streams; the first kept one stays.
    let out = ctl(&c, &standby, &["--json", "rebuild", &standby, "--discard"]);
    assert!(
        out.success(),
        "{}\n{}",
        out.failure_message(),
        c.diagnostics()
    );
    assert!(!out.stdout.contains(REPL_PASSWORD), "{}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], false, "{v:#}");
    assert_eq!(v["streaming"], true, "{v:#}");
    assert_eq!(v["role"], "Unpromoted", "{v:#}");
    assert_eq!(v["redis_link"], "up", "{v:#}");
    assert_eq!(v["old_data_dir_kept"], false, "{v:#}");
    let done: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        done,
        [
            "ban",
            "move_aside",
            "base_backup",
            "configure",
            "give_back",
            "wait_streaming",
            "discard"
        ],
        "{v:#}"
    );
    assert_ne!(v["old_data_dir"].as_str(), None, "{v:#}");
    assert_eq!(kept_dirs(&c, &standby), kept);
    wait_replicating(c.node(&standby));
    assert!(!constraints(&c, &primary).contains("cli-ban"));

    // No acknowledged write lost, and the rebuilt standby has them all.
    writer.wait_for_acks(20, SETTLE);
    let written = writer.stop();
    let lost = missing_rows(pid, c.vip(), PG_PORT, &written.acked);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let standby_addr = c.node(&standby).addr.clone();
    poll(
        &format!("every acknowledged write replayed on the rebuilt {standby}"),
        SETTLE,
        || {
            missing_rows(pid, &standby_addr, PG_PORT, &written.acked)
                .is_empty()
                .then_some(())
        },
    );
    assert_watched(&c, &mark, "rebuild under writes");
    eprintln!(
        "measured: rebuild under writes: {} writes acknowledged, {} attempts failed, longest \
         write gap {:.2} s",
        written.acked.len(),
        written.failures,
        written.longest_gap.as_secs_f64()
    );
}
