//! `RUNBOOK.md`, run as written: every shell block of the runbook, in
//! order, inside a real 2-node cluster (app tier, alerts to sinks started
//! by the test), with the runbook's names mapped to the test cluster's.
//!
//! The runbook's convention: `sms1` is the primary when a procedure (a `##`
//! section) starts, or the node in standby mode if a procedure left one
//! (taking a node out, then bringing it back); `sms2` is the other node; a
//! block starting with `# on sms2` runs there, the others on `sms1`; the
//! virtual IP is `10.172.20.200`.

use std::collections::BTreeMap;
use std::time::Duration;

use rapidpro_ha_harness::sinks::{HttpSink, SmtpSink};
use rapidpro_ha_harness::{poll, NsCluster, STACK_AGENT, VIP_AGENT};

use super::bin;
use super::cluster::{assert_watched, WatchMark};
use super::cluster::{steady_pair, wait_one_promoted, wait_replicating, SETTLE};

const RUNBOOK: &str = include_str!("../RUNBOOK.md");
/// The names the runbook uses.
const DOC_VIP: &str = "10.172.20.200";
/// Words that start a command in the runbook's text.
const COMMANDS: [&str; 10] = [
    "rapidproctl",
    "pcs",
    "crm_mon",
    "crm_resource",
    "crm_attribute",
    "curl",
    "pgrep",
    "runuser",
    "tail",
    "rapidpro-alert",
];

/// One fenced `sh` block of the runbook.
#[derive(Debug, Clone)]
struct Block {
    /// The `##` section it belongs to.
    section: String,
    /// Line number of its first command, for messages.
    line: usize,
    /// Runs on `sms2` (`# on sms2` first line), else on `sms1`.
    on_sms2: bool,
    /// Its text.
    script: String,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut current: Option<Block> = None;
    for (i, raw) in md.lines().enumerate() {
        let line = raw.trim();
        if let Some(b) = current.as_mut() {
            if line == "```" {
                out.push(current.take().expect("a block"));
            } else {
                if b.script.is_empty() && line == "# on sms2" {
                    b.on_sms2 = true;
                }
                b.script.push_str(line);
                b.script.push('\n');
            }
        } else if line == "```sh" {
            current = Some(Block {
                section: section.clone(),
                line: i + 2,
                on_sms2: false,
                script: String::new(),
            });
        } else if let Some(h) = raw.strip_prefix("## ") {
            section = h.trim().to_owned();
        }
    }
    assert!(current.is_none(), "RUNBOOK.md: an unclosed ```sh block");
    out
}

/// Every command line of a block (comments and blank lines left out).
fn command_lines(script: &str) -> Vec<String> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Inline code spans of the text (outside blocks) that are commands.
fn inline_commands(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            let first = span.split_whitespace().next().unwrap_or("");
            if i % 2 == 1 && COMMANDS.contains(&first) && span.contains(' ') {
                out.push(span.to_owned());
            }
        }
    }
    out
}

/// Whether the words of `cmd` appear, in order, among those of `line`; an
/// upper-case word of `cmd` (`FILE`, `NODE`) is a placeholder for any word.
fn is_subsequence(cmd: &str, line: &str) -> bool {
    let placeholder = |w: &str| w.chars().all(|c| c.is_ascii_uppercase());
    let mut words = line.split_whitespace();
    cmd.split_whitespace()
        .all(|w| words.any(|l| l == w || placeholder(w)))
}

#[test]
fn runbook_blocks_and_inline_commands_are_all_found() {
    let all = blocks(RUNBOOK);
    assert!(all.len() >= 15, "{} blocks only", all.len());
    let lines: Vec<String> = all.iter().flat_map(|b| command_lines(&b.script)).collect();
    for cmd in inline_commands(RUNBOOK) {
        assert!(
            lines.iter().any(|l| is_subsequence(&cmd, l)),
            "RUNBOOK.md names `{cmd}` but no block runs it"
        );
    }
    // Each row of the old runbook's map (shared/notes/runbook-map.md) has
    // its answer here, as a command a block runs.
    for answer in [
        "crm_mon -1",
        "pcs status",
        "rapidproctl status",
        "rapidproctl state",
        "rapidproctl state sms2",
        "rapidproctl postgres",
        "rapidproctl check",
        "rapidproctl alert --test",
        "rapidproctl pgdump",
        "rapidproctl switchover",
        "rapidproctl rebuild sms1",
        "pcs resource move stack-clone --promoted",
        "pcs node standby",
        "pcs resource ban",
        "pcs node unstandby",
        "pcs resource cleanup",
        "rapidproctl health",
        "rapidproctl health --publish",
        "pcs resource debug-monitor nginx",
        "pcs resource debug-monitor celery",
        "crm_resource --resource stack-clone --locate",
    ] {
        assert!(
            lines.iter().any(|l| is_subsequence(answer, l)),
            "RUNBOOK.md has no block running `{answer}`"
        );
    }
    for policy in [
        "migration-threshold=2",
        "failure-timeout=90s",
        "promoted-max=1",
    ] {
        assert!(
            RUNBOOK.contains(policy),
            "RUNBOOK.md does not explain {policy}"
        );
    }
}

/// The node in standby mode, if any, as `ask` sees it.
fn standby_node(c: &NsCluster, ask: &str) -> Option<String> {
    let xml = c.crm_mon_xml(ask).ok()?;
    c.nodes()
        .iter()
        .find(|n| {
            xml.lines().any(|l| {
                l.contains("<node ")
                    && l.contains(&format!("name=\"{}\"", n.name))
                    && l.contains("standby=\"true\"")
            })
        })
        .map(|n| n.name.clone())
}

#[test]
fn runbook_procedures_run_as_written() {
    let recipient = "oncall@example.org,+255700000001";
    let c = NsCluster::builder("runbook")
        .nodes(2)
        .agent(bin())
        .app(true)
        .alerts(&[recipient])
        .sbin(env!("CARGO_BIN_EXE_rapidproctl"))
        .sbin(env!("CARGO_BIN_EXE_rapidpro-alert"))
        .build();
    // Every moment of the cluster's life: never two primaries, every
    // node sampled every 250 ms.
    let watch_mark = WatchMark::at_build(&c);
    let (primary, _) = steady_pair(&c);
    let (smtp, sms) = (c.alert_smtp(), c.alert_sms());

    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut section = String::new();
    for b in blocks(RUNBOOK) {
        if b.section != section {
            section = b.section.clone();
            c.wait_settled(&primary, SETTLE);
            // A node in standby mode runs no instance: only count Promoted.
            let p = poll("one Promoted node", SETTLE, || c.promoted_node());
            let sms1 = standby_node(&c, &p).unwrap_or_else(|| p.clone());
            let sms2 = c
                .nodes()
                .iter()
                .map(|n| n.name.clone())
                .find(|n| *n != sms1)
                .expect("two nodes");
            names.insert("sms1", sms1);
            names.insert("sms2", sms2);
            eprintln!(
                "runbook: {section}: sms1={} sms2={}",
                names["sms1"], names["sms2"]
            );
        }
        let script = b
            .script
            .replace("sms1", &names["sms1"])
            .replace("sms2", &names["sms2"])
            .replace(DOC_VIP, c.vip());
        let on = if b.on_sms2 {
            &names["sms2"]
        } else {
            &names["sms1"]
        };
        let out = c
            .node(on)
            .exec(&["sh", "-exc", &script], Duration::from_secs(240))
            .unwrap_or_else(|e| panic!("RUNBOOK.md line {}: {e}", b.line));
        eprintln!(
            "runbook: line {} on {on}:\n{}{}",
            b.line, out.stdout, out.stderr
        );
        assert!(
            out.success(),
            "RUNBOOK.md line {} ({section}) failed on {on}: {}\n{}",
            b.line,
            out.failure_message(),
            c.diagnostics()
        );
        after_block(&c, &b, &names, &out.stdout, smtp, sms);
    }
    c.wait_settled(&primary, SETTLE);
    let p = wait_one_promoted(&c, &primary, None);
    for n in c.nodes().iter().filter(|n| n.name != p) {
        wait_replicating(n);
    }
    let st = c.status(&p).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        st.failures.is_empty(),
        "the runbook left failed actions: {:?}",
        st.failures
    );
    assert_eq!(st.nodes_with_role(STACK_AGENT, "Unpromoted").len(), 1);
    assert_watched(&c, &watch_mark, "runbook procedures run as written");
}

/// What each procedure must have achieved, checked right after its block.
fn after_block(
    c: &NsCluster,
    b: &Block,
    names: &BTreeMap<&str, String>,
    stdout: &str,
    smtp: &SmtpSink,
    sms: &HttpSink,
) {
    let (sms1, sms2) = (&names["sms1"], &names["sms2"]);
    if b.script.contains("rapidproctl alert --test") {
        poll("the test email and SMS", Duration::from_secs(30), || {
            let mail = smtp
                .messages()
                .iter()
                .any(|m| m.to.iter().any(|t| t.contains("oncall@example.org")));
            let text = sms
                .requests()
                .iter()
                .any(|r| r.param("to").as_deref() == Some("+255700000001"));
            (mail && text).then_some(())
        });
    }
    if b.script.contains("rapidproctl switchover sms2") {
        assert_eq!(wait_one_promoted(c, sms1, Some(sms2)), *sms2);
    }
    if b.script.contains("pcs resource move stack-clone sms1") {
        assert_eq!(wait_one_promoted(c, sms1, Some(sms1)), *sms1);
    }
    if b.script.contains("pcs node standby sms1") {
        // sms1 is online but runs nothing: only sms2 has an instance.
        poll(
            &format!("{sms2} the only Promoted node, with the VIP, {sms1} in standby"),
            SETTLE,
            || {
                let st = c.status(sms2).ok()?;
                let promoted = st.nodes_with_role(STACK_AGENT, "Promoted");
                let vip = st.nodes_with_role(VIP_AGENT, "Started");
                (promoted == [sms2.clone()] && vip == promoted).then_some(())
            },
        );
        assert_eq!(standby_node(c, sms2).as_deref(), Some(sms1.as_str()));
    }
    if b.script.contains("pcs node unstandby sms1") {
        assert_eq!(standby_node(c, sms2), None);
        wait_replicating(c.node(sms1));
    }
    if b.script.contains("rapidproctl rebuild sms1") {
        // Rebuilt and given back: Unpromoted, replicating, no ban left,
        // the old data directory kept beside the new one.
        assert!(stdout.contains("done: pg_basebackup"), "{stdout}");
        assert_eq!(wait_one_promoted(c, sms2, Some(sms2)), *sms2);
        wait_replicating(c.node(sms1));
        let constraints = c
            .node(sms2)
            .run(&["cibadmin", "--query", "--scope", "constraints"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!constraints.contains("cli-ban"), "{constraints}");
        let kept = std::fs::read_dir(c.node(sms1).host_path("var-lib-postgresql/15"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("main.rebuild-"))
            .count();
        assert_eq!(kept, 1);
    }
    if b.script.contains("rapidproctl status") {
        assert!(stdout.contains(sms1) && stdout.contains(sms2), "{stdout}");
    }
}
