//! Bad input and hostile environments: every parameter malformed or missing,
//! host problems, garbage from Pacemaker's own tools and in notification
//! variables, a PostgreSQL that refuses connections, a Redis that answers
//! slowly, and a full disk. Each case asserts the exit code and the exit
//! reason, and that no action panics (the harness fails any run that exits
//! 101) or outlives `CRM_meta_timeout`.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rapidpro_ha::config::{ParamSpec, ParamType, PARAMETERS};
use rapidpro_ha_harness::{poll, Agent, AgentOutput, Node, Pair, PG_BINDIR};

use super::agent_node::signal;
use super::{agent, bin, wait_redis_link, wait_streaming};

const OCF_SUCCESS: i32 = 0;
const OCF_ERR_GENERIC: i32 = 1;
const OCF_ERR_ARGS: i32 = 2;
const OCF_ERR_UNIMPLEMENTED: i32 = 3;
const OCF_ERR_PERM: i32 = 4;
const OCF_ERR_INSTALLED: i32 = 5;
const OCF_ERR_CONFIGURED: i32 = 6;
const OCF_NOT_RUNNING: i32 = 7;
const OCF_RUNNING_PROMOTED: i32 = 8;
const OCF_FAILED_PROMOTED: i32 = 9;

/// The `CRM_meta_timeout` of the "not a hang" cases, in milliseconds.
const SHORT_TIMEOUT_MS: u64 = 4000;

/// Panics if the agent's stderr shows a panic (also under `panic=abort`,
/// where the exit status would be a signal, which the harness rejects too).
#[track_caller]
fn assert_no_panic(out: &AgentOutput) {
    assert!(!out.stderr.contains("panicked"), "{out}");
}

/// Runs `action`, and asserts its code, that its exit reason contains every
/// one of `reason`, and that it returned within `within`.
#[track_caller]
fn expect(a: &Agent, action: &str, code: i32, reason: &[&str], within: Duration) -> AgentOutput {
    let t = Instant::now();
    let out = a.run(action);
    let took = t.elapsed();
    out.assert_code(code);
    for r in reason {
        out.assert_reason_contains(r);
    }
    assert_no_panic(&out);
    assert!(took < within, "`{action}` took {took:?}\n{out}");
    out
}

/// Starts both nodes unpromoted, promotes node1, and waits until node2
/// streams from it and follows its Redis.
fn primary_and_standby(pair: &Pair) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    wait_streaming(n2);
    wait_redis_link(n2);
}

/// The agent of `node` following `primary`, as a recurring monitor with a
/// short Pacemaker timeout.
fn short(node: &Node, primary: &Node) -> Agent {
    agent(node, primary).meta("timeout", SHORT_TIMEOUT_MS.to_string())
}

fn short_bound() -> Duration {
    Duration::from_millis(SHORT_TIMEOUT_MS)
}

// ------------------------------------------------------------ parameters

/// A value of the wrong form for `p`, chosen from its type in the table, so
/// that a parameter added to the table is covered at once (or this test
/// says which one it cannot make wrong).
fn malformed(p: &ParamSpec) -> &'static str {
    match (p.kind, p.name) {
        (ParamType::Integer, _) => "12 monkeys",
        (ParamType::Boolean, _) => "perhaps",
        (_, "sync_replication") => "sometimes",
        (_, "primary_host" | "repl_user" | "system_user" | "redis_user") => "two words",
        _ if p.private => "pass\nword",
        // Every other text parameter is an absolute path.
        _ => "relative/path",
    }
}

/// The actions that read the configuration, and what a configuration error
/// gives in each: `notify` never fails (a failed notify would stop the
/// clone), every other action says 6.
const CONFIGURED_ACTIONS: &[(&str, i32)] = &[
    ("validate-all", OCF_ERR_CONFIGURED),
    ("start", OCF_ERR_CONFIGURED),
    ("stop", OCF_ERR_CONFIGURED),
    ("promote", OCF_ERR_CONFIGURED),
    ("demote", OCF_ERR_CONFIGURED),
    ("monitor", OCF_ERR_CONFIGURED),
];

#[test]
fn every_parameter_malformed_or_missing_is_refused_by_name_in_every_action() {
    let pair = Pair::new("bad_params");
    let n1 = &pair.nodes[0];
    n1.agent(bin()).run("validate-all").assert_code(OCF_SUCCESS);
    let mut cases: Vec<(&str, String)> = PARAMETERS
        .iter()
        .map(|p| (p.name, malformed(p).to_string()))
        .collect();
    // Blanks are a value, not "unset", and a wrong one.
    cases.push(("primary_host", "   ".into()));
    // Too long for a host name, and for a unix socket.
    cases.push(("primary_host", "h".repeat(100_000)));
    cases.push(("redis_socket", format!("/{}", "s".repeat(120))));
    // A verifying sslmode without the CA file to verify with.
    cases.push(("sslmode", "verify-full".into()));
    // Absolute, but with a character a shell or a config file reads.
    cases.push(("pgdata", format!("{}\"x", n1.pgdata.display())));
    cases.push(("pg_logfile", "/var/log/postgresql/a b.log".into()));
    for (name, value) in &cases {
        let a = n1.agent(bin()).param(name, value.as_str());
        for (action, code) in CONFIGURED_ACTIONS {
            let shown: String = value.chars().take(30).collect();
            let out = a.run(action);
            assert!(
                out.code == *code,
                "{name}={shown:?}: `{action}` gave {}, not {code}\n{out}",
                out.code
            );
            out.assert_reason_contains(&format!("parameter {name}="));
            assert_no_panic(&out);
        }
        let out = a.clone().notify("post", "promote", &[]).run("notify");
        out.assert_code(OCF_SUCCESS);
        assert_no_panic(&out);
        // A recurring monitor too, not only a probe.
        a.clone()
            .meta("interval", "15000")
            .run("monitor")
            .assert_code(OCF_ERR_CONFIGURED)
            .assert_reason_contains(&format!("parameter {name}="));
    }
    // The one required parameter, missing or empty.
    for a in [
        n1.agent(bin()).unset_param("primary_host"),
        n1.agent(bin()).param("primary_host", ""),
    ] {
        for (action, code) in CONFIGURED_ACTIONS {
            a.run(action)
                .assert_code(*code)
                .assert_reason_contains("parameter primary_host=\"\": required");
        }
    }
    assert!(n1.postmaster_pid().is_none() && n1.redis_pid().is_none());
}

/// pg_ctl starts the server through `/bin/sh -c` with `-l "LOGFILE"` in
/// double quotes: before paths were restricted, a `pg_logfile` holding
/// `$(...)` ran that command as `postgres` on start (here it creates a
/// file in the user's home). Now it, and a `"` in `pgdata`, are refused
/// before anything runs, naming the parameter and the allowed form.
#[test]
fn a_path_parameter_with_shell_characters_is_refused_before_anything_runs() {
    let pair = Pair::new("shell_paths");
    let n1 = &pair.nodes[0];
    let marker = format!("rapidpro-ha-pwned-{}", std::process::id());
    let victim = Path::new("/var/lib/postgresql").join(&marker);
    let _ = std::fs::remove_file(&victim);
    let logfile = format!("{}/pg$(cd;touch {marker}).log", n1.dir.display());
    let pgdata = format!("{}\"", n1.pgdata.display());
    for (name, value) in [
        ("pg_logfile", logfile.as_str()),
        ("pgdata", pgdata.as_str()),
    ] {
        let out = n1.agent(bin()).param(name, value).run("start");
        let exists = victim.exists();
        let _ = std::fs::remove_file(&victim);
        assert!(!exists, "{name}={value:?} ran a shell command\n{out}");
        out.assert_code(OCF_ERR_CONFIGURED)
            .assert_reason_contains(&format!("parameter {name}="));
        assert!(
            out.stderr
                .contains("absolute path made only of letters, digits and / . _ - + @"),
            "{name}: the error does not state the allowed form\n{out}"
        );
        assert_no_panic(&out);
    }
    assert!(n1.postmaster_pid().is_none() && n1.redis_pid().is_none());
}

/// Runs the agent with `OCF_RESKEY_<name>` set to `bytes`, which need not
/// be UTF-8 (the harness keeps its environment as text: a shell sets it).
fn run_with_raw_param(a: &Agent, name: &str, bytes: &[u8], action: &str) -> AgentOutput {
    let octal: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
    let script =
        format!("OCF_RESKEY_{name}=$(printf '{octal}'); export OCF_RESKEY_{name}; exec \"$@\"");
    a.run_under(&["sh", "-c", &script, "sh"], action)
}

#[test]
fn a_parameter_that_is_not_utf8_is_refused_not_defaulted() {
    let pair = Pair::new("bad_utf8");
    let n1 = &pair.nodes[0];
    let a = n1.agent(bin());
    // Dropping it would use the default pgdata, /var/lib/postgresql/15/main.
    let bad = [n1.pgdata.as_os_str().as_encoded_bytes(), b"\xff"].concat();
    for action in ["validate-all", "start", "monitor"] {
        let out = run_with_raw_param(&a, "pgdata", &bad, action);
        out.assert_code(OCF_ERR_CONFIGURED);
        out.assert_reason_contains("parameter pgdata=");
        out.assert_reason_contains("UTF-8");
        assert_no_panic(&out);
    }
    let out = run_with_raw_param(&a, "repl_password", b"se\xffcret", "validate-all");
    out.assert_code(OCF_ERR_CONFIGURED);
    out.assert_reason_contains("parameter repl_password=\"\"");
    assert!(!out.stderr.contains("cret"), "a secret was shown\n{out}");
    // A meta attribute or notification list that is not UTF-8 is only
    // unusable, as if malformed.
    let out = run_with_raw_param(&a, "CRM_meta_interval", b"1\xff", "monitor");
    out.assert_code(OCF_NOT_RUNNING);
    assert!(n1.postmaster_pid().is_none());
}

/// The host problems of `check_host`, each with its code and the parameter
/// its reason names; checked by validate-all, start, promote and demote
/// alike (nothing is started).
#[test]
fn host_problems_give_5_2_or_4_naming_the_parameter() {
    let pair = Pair::new("bad_host");
    let n1 = &pair.nodes[0];
    let dir = pair.dir.path();
    // A bindir without pg_rewind, for rewind=true.
    let partial = dir.join("partial-bin");
    std::fs::create_dir_all(&partial).unwrap();
    for b in ["pg_ctl", "pg_controldata", "postgres"] {
        std::os::unix::fs::symlink(Path::new(PG_BINDIR).join(b), partial.join(b)).unwrap();
    }
    // A bindir whose pg_ctl is not executable.
    let noexec = dir.join("noexec-bin");
    std::fs::create_dir_all(&noexec).unwrap();
    std::fs::write(noexec.join("pg_ctl"), "#!/bin/sh\n").unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let s = |p: &Path| p.display().to_string();
    // (parameters, code, the parameter named, why)
    type Case<'a> = (Vec<(&'a str, String)>, i32, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("bindir", "/nonexistent/bin".into())],
            OCF_ERR_INSTALLED,
            "bindir",
            "missing",
        ),
        (
            vec![("bindir", s(&noexec))],
            OCF_ERR_INSTALLED,
            "bindir",
            "not executable",
        ),
        (
            vec![("bindir", s(&partial)), ("rewind", "true".into())],
            OCF_ERR_INSTALLED,
            "bindir",
            "pg_rewind",
        ),
        (
            vec![("redis_server", "/nonexistent/redis-server".into())],
            OCF_ERR_INSTALLED,
            "redis_server",
            "missing",
        ),
        (
            vec![("datadir", s(&empty))],
            OCF_ERR_INSTALLED,
            "datadir",
            "postgresql.conf",
        ),
        (
            vec![("redis_config", s(&empty.join("redis.conf")))],
            OCF_ERR_INSTALLED,
            "redis_config",
            "missing",
        ),
        (
            vec![("system_user", "no-such-user".into())],
            OCF_ERR_ARGS,
            "system_user",
            "no such system user",
        ),
        (
            vec![("redis_user", "no-such-user".into())],
            OCF_ERR_ARGS,
            "redis_user",
            "no such system user",
        ),
        (
            vec![("pgdata", "/nonexistent/pgdata".into())],
            OCF_ERR_ARGS,
            "pgdata",
            "cannot use",
        ),
        (
            vec![("pgdata", s(&file))],
            OCF_ERR_ARGS,
            "pgdata",
            "not a directory",
        ),
        (
            vec![("pgdata", s(&empty))],
            OCF_ERR_ARGS,
            "pgdata",
            "PG_VERSION",
        ),
        (
            vec![("pgdata", format!("/{}", "d".repeat(100_000)))],
            OCF_ERR_ARGS,
            "pgdata",
            "",
        ),
    ];
    for (params, code, name, why) in &cases {
        let mut a = n1.agent(bin());
        for (k, v) in params {
            a = a.param(k, v.as_str());
        }
        for action in ["validate-all", "start", "promote", "demote"] {
            let out = a.run(action);
            assert!(
                out.code == *code,
                "{params:?}: `{action}` gave {}\n{out}",
                out.code
            );
            out.assert_reason_contains(&format!("parameter {name}="));
            out.assert_reason_contains(why);
            assert_no_panic(&out);
        }
    }
    // Ownership and permissions of the data directory: 4.
    let mode = |m: u32| std::fs::set_permissions(&n1.pgdata, std::fs::Permissions::from_mode(m));
    for m in [0o755, 0o777, 0o600] {
        mode(m).unwrap();
        for action in ["validate-all", "start", "promote", "demote"] {
            let out = n1.agent(bin()).run(action);
            out.assert_code(OCF_ERR_PERM);
            out.assert_reason_contains("parameter pgdata=");
            out.assert_reason_contains(&format!("mode {m:04o}"));
        }
    }
    mode(0o750).unwrap();
    n1.agent(bin()).run("validate-all").assert_code(OCF_SUCCESS);
    mode(0o700).unwrap();
    std::os::unix::fs::chown(&n1.pgdata, Some(0), None).unwrap();
    for action in ["validate-all", "start", "promote", "demote"] {
        let out = n1.agent(bin()).run(action);
        out.assert_code(OCF_ERR_PERM);
        out.assert_reason_contains("parameter pgdata=");
        out.assert_reason_contains("owned by uid 0");
    }
    // A probe on a host where the service cannot run finds it not running
    // (Pacemaker would otherwise count a failure on every such node).
    n1.agent(bin())
        .param("system_user", "no-such-user")
        .run("monitor")
        .assert_code(OCF_NOT_RUNNING);
    n1.agent(bin())
        .param("system_user", "no-such-user")
        .meta("interval", "15000")
        .run("monitor")
        .assert_code(OCF_ERR_ARGS)
        .assert_reason_contains("parameter system_user=");
    assert!(n1.postmaster_pid().is_none() && n1.redis_pid().is_none());
}

#[test]
fn unknown_or_missing_actions_are_refused() {
    let run = |args: &[&str]| {
        let out = Command::new(bin()).args(args).env_clear().output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        (out.status.code(), stderr)
    };
    for action in [
        "migrate_to",
        "reload",
        "reload-agent",
        "MONITOR",
        "",
        "start now",
    ] {
        let (code, stderr) = run(&[action]);
        assert_eq!(code, Some(OCF_ERR_UNIMPLEMENTED), "{action:?}: {stderr}");
        let reason = format!("ocf-exit-reason:action {action:?} is not implemented");
        assert!(stderr.contains(&reason), "{action:?}: {stderr}");
    }
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(OCF_ERR_ARGS), "{stderr}");
    assert!(
        stderr.contains("ocf-exit-reason:no action given"),
        "{stderr}"
    );
    // meta-data needs nothing from the environment.
    let (code, _) = run(&["meta-data", "extra", "arguments"]);
    assert_eq!(code, Some(OCF_SUCCESS));
    // An action that is not UTF-8 is unknown too, not a panic.
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(bin())
        .arg(std::ffi::OsStr::from_bytes(b"st\xffrt"))
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(OCF_ERR_UNIMPLEMENTED), "{stderr}");
    assert!(stderr.contains("is not implemented"), "{stderr}");
}

// ------------------------------------------------------------ notify

#[test]
fn malformed_notify_variables_never_fail_nor_panic_nor_change_roles() {
    let pair = Pair::new("bad_notify");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let huge = "node9 ".repeat(20_000);
    let junk = "\u{1}\u{7f} node1\u{0085}node2 \u{200b}";
    // (type, operation, lists)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        // Every list empty, as a single space.
        ("pre", "promote", vec![]),
        ("post", "promote", vec![]),
        ("pre", "demote", vec![]),
        ("post", "start", vec![]),
        ("post", "stop", vec![]),
        // Empty strings instead of a space.
        (
            "post",
            "promote",
            vec![
                ("promote_uname", ""),
                ("promoted_uname", ""),
                ("all_uname", ""),
            ],
        ),
        // Lists of different lengths for the same change.
        (
            "post",
            "promote",
            vec![
                ("promote_resource", "stack:0 stack:1 stack:2"),
                ("promote_uname", "node2"),
            ],
        ),
        (
            "pre",
            "promote",
            vec![
                ("promote_resource", " "),
                ("promote_uname", "node1 node2 node2"),
            ],
        ),
        // Odd blanks, control characters, a huge list.
        (
            "post",
            "promote",
            vec![("promote_uname", "\tnode2\n\n"), ("active_uname", junk)],
        ),
        (
            "pre",
            "promote",
            vec![("promote_uname", junk), ("unpromoted_uname", junk)],
        ),
        (
            "post",
            "promote",
            vec![
                ("promote_uname", huge.as_str()),
                ("all_uname", huge.as_str()),
            ],
        ),
        // Unknown or oddly spelt type and operation.
        ("PRE", "promote", vec![("promote_uname", "node2")]),
        ("post", "migrate_to", vec![]),
        ("during", "", vec![]),
        ("", "promote", vec![]),
    ];
    for node in [n1, n2] {
        for (kind, op, lists) in &cases {
            let out = agent(node, n1)
                .meta("timeout", SHORT_TIMEOUT_MS.to_string())
                .notify(kind, op, lists)
                .run("notify");
            out.assert_code(OCF_SUCCESS);
            assert_no_panic(&out);
        }
        // No type at all, and lists that are not UTF-8.
        let a = agent(node, n1).notify("post", "promote", &[]);
        let out = a
            .clone()
            .unset_env("OCF_RESKEY_CRM_meta_notify_type")
            .run("notify");
        out.assert_code(OCF_SUCCESS);
        let out = run_with_raw_param(&a, "CRM_meta_notify_promote_uname", b"node\xff2 ", "notify");
        out.assert_code(OCF_SUCCESS);
        assert_no_panic(&out);
    }
    // Nothing changed roles: node1 is still the primary with a Redis
    // master, node2 its standby and replica.
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    assert!(n1
        .redis_cli(&["info", "replication"])
        .contains("role:master"));
    wait_streaming(n2);
    wait_redis_link(n2);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
}

/// Regression: a post-promote notification whose promote list does not
/// name the primary (empty, as a single space) made the primary's Redis a
/// replica of primary_host, that is of itself; its next monitor failed with
/// "PostgreSQL is primary but Redis is a replica".
#[test]
fn a_post_promote_notify_with_an_empty_promote_list_keeps_the_primarys_redis() {
    let pair = Pair::new("notify_empty");
    let n1 = &pair.nodes[0];
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    n1.redis_cli(&["set", "k", "v"]);
    agent(n1, n1)
        .notify("post", "promote", &[])
        .run("notify")
        .assert_code(OCF_SUCCESS);
    assert!(n1
        .redis_cli(&["info", "replication"])
        .contains("role:master"));
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    n1.redis_cli(&["set", "k", "still writable"]);
}

// ------------------------------------------------------------ Pacemaker's tools

/// A directory of stand-ins for Pacemaker's command-line tools, each
/// printing `stdout` and exiting with `code` (after `sleep` seconds).
fn tool_shims(dir: &Path, stdout: &[u8], code: i32, sleep: u32) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let shims = dir.join(format!("shims-{n}"));
    std::fs::create_dir_all(&shims).unwrap();
    let out = shims.join("stdout");
    std::fs::write(&out, stdout).unwrap();
    for tool in [
        "crm_attribute",
        "attrd_updater",
        "crm_node",
        "cibadmin",
        "crm_mon",
        "crmadmin",
        "crm_resource",
    ] {
        let path = shims.join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nsleep {sleep}\ncat '{}'\necho 'stand-in {tool}' >&2\nexit {code}\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    shims
}

fn with_path_first(a: Agent, dir: &Path) -> Agent {
    let path = a.environment().get("PATH").cloned().unwrap_or_default();
    a.env("PATH", format!("{}:{path}", dir.display()))
}

const CRM_MON_STEADY: &str = include_str!("../lib/src/cluster/fixtures/crm_mon-live-steady.xml");

/// Garbage the tools might print: truncated and unexpected XML, bytes that
/// are not text, lines of the wrong shape, a lot of output.
fn garbage_outputs() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        CRM_MON_STEADY.as_bytes()[..CRM_MON_STEADY.len() / 2].to_vec(),
        b"<pacemaker-result><status code=\"abc\"/>".to_vec(),
        b"<cib/>\n".to_vec(),
        b"name=\"x\" host=\"two words\" value=\"1#0/0\"\nhost=\"node2\" value=\"junk\n".to_vec(),
        b"\xff\xfe\x00garbage\n-INFINITYX\n".to_vec(),
        b"node1 node1\tnode\xff2\n".to_vec(),
        "x".repeat(2_000_000).into_bytes(),
    ]
}

/// The agent's calls to crm_attribute, attrd_updater, crm_node and
/// cibadmin all get garbage back (exit 0, 1, or Pacemaker's "not
/// connected" 102), or no answer before the call's timeout: every action
/// still answers with its usual code, in time.
#[test]
fn garbage_from_pacemakers_tools_never_breaks_an_action() {
    let pair = Pair::new("bad_tools");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let dir = pair.dir.path();
    for (i, junk) in garbage_outputs().iter().enumerate() {
        for code in [0, 1, 102] {
            let shims = tool_shims(dir, junk, code, 0);
            let a1 = || with_path_first(short(n1, n1), &shims);
            let a2 = || with_path_first(short(n2, n1), &shims);
            let what = format!("output {i}, exit {code}");
            let bound = short_bound();
            let t = Instant::now();
            // The primary's monitor sets scores; the standby's reads its own.
            a1().run("monitor").assert_code(OCF_RUNNING_PROMOTED);
            a2().run("monitor").assert_code(OCF_SUCCESS);
            // Pre-promote publishes a position; post-promote clears it.
            for n in [a1(), a2()] {
                let out = n
                    .clone()
                    .notify("pre", "promote", &[("promote_uname", "node2")])
                    .run("notify");
                out.assert_code(OCF_SUCCESS);
                assert_no_panic(&out);
                n.notify("post", "start", &[])
                    .run("notify")
                    .assert_code(OCF_SUCCESS);
            }
            // Without on_node, the node name comes from crm_node.
            a2().unset_env("OCF_RESKEY_CRM_meta_on_node")
                .run("monitor")
                .assert_code(OCF_SUCCESS);
            assert!(t.elapsed() < 7 * bound, "{what}: {:?}", t.elapsed());
        }
    }
    // A tool that hangs is cut at its call timeout, within the action's.
    let shims = tool_shims(dir, b"", 0, 30);
    for (a, code) in [
        (short(n1, n1), OCF_RUNNING_PROMOTED),
        (short(n2, n1), OCF_SUCCESS),
    ] {
        // A probe forgets the scores, so the primary calls crm_attribute.
        let a = with_path_first(a, &shims);
        expect(
            &a.clone().meta("interval", "0"),
            "monitor",
            code,
            &[],
            short_bound(),
        );
        let out = expect(
            &a.notify("pre", "promote", &[("promote_uname", "node2")]),
            "notify",
            OCF_SUCCESS,
            &[],
            short_bound(),
        );
        assert_no_panic(&out);
    }
    agent(n1, n1)
        .run("monitor")
        .assert_code(OCF_RUNNING_PROMOTED);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    // The primary is gone: promote reads the partition (crm_node) and the
    // positions the standbys published (attrd_updater), both garbage, and
    // promotes on this node's own data.
    agent(n1, n1).run("stop").assert_code(OCF_SUCCESS);
    let shims = tool_shims(dir, &garbage_outputs()[4], 0, 0);
    let out = expect(
        &with_path_first(short(n2, n2).meta("timeout", "20000"), &shims),
        "promote",
        OCF_SUCCESS,
        &[],
        Duration::from_secs(20),
    );
    assert!(
        out.stderr.contains("ignoring") || !out.stderr.is_empty(),
        "{out}"
    );
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "f");
}

/// rapidproctl is the one reader of crm_mon's XML: truncated or unexpected
/// output is an error naming crm_mon, never a panic.
#[test]
fn truncated_or_unexpected_crm_mon_xml_is_an_error_of_rapidproctl() {
    let dir = rapidpro_ha_harness::TestDir::new("bad_crm_mon");
    let rapidproctl = env!("CARGO_BIN_EXE_rapidproctl");
    let full = CRM_MON_STEADY.as_bytes();
    let mut outputs: Vec<Vec<u8>> = (1..8)
        .map(|k| full[..full.len() * k / 8].to_vec())
        .collect();
    outputs.extend(garbage_outputs());
    outputs.push(
        b"<pacemaker-result><nodes><node name=\"two words\"/></nodes></pacemaker-result>".to_vec(),
    );
    for (i, junk) in outputs.iter().enumerate() {
        let shims = tool_shims(dir.path(), junk, 0, 0);
        let out = Command::new(rapidproctl)
            .args(["status", "--json"])
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", shims.display()),
            )
            .env_remove("CIB_file")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stderr.contains("panicked"), "output {i}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "output {i}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("crm_mon") || stdout.contains("crm_mon"),
            "output {i}: the error does not name crm_mon\n{stdout}\n{stderr}"
        );
    }
}

// ------------------------------------------------------------ PostgreSQL refusing

/// Puts `line` first in `node`'s pg_hba.conf (or removes it) and reloads.
fn hba_first_line(node: &Node, line: Option<&str>) {
    let path = node.pgdata.join("pg_hba.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let rest: String = text
        .lines()
        .filter(|l| !l.contains("# bad_input"))
        .map(|l| format!("{l}\n"))
        .collect();
    let new = match line {
        Some(l) => format!("{l} # bad_input\n{rest}"),
        None => rest,
    };
    std::fs::write(&path, new).unwrap();
    let pid = node.postmaster_pid().expect("a postmaster");
    signal(pid, "-HUP");
    // The postmaster rereads pg_hba.conf when it gets to it.
    std::thread::sleep(Duration::from_millis(500));
}

/// Runs psql as postgres against `db` (the harness's psql is bound to the
/// postgres database, which these tests close).
fn psql_db(node: &Node, db: &str, sql: &str) {
    let st = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BINDIR).join("psql"))
        .arg("-XAtq")
        .arg("-h")
        .arg(&node.pg_socket_dir)
        .args([
            "-p",
            &node.pgport.to_string(),
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "psql -d {db} -c {sql:?} on {}", node.name);
}

#[test]
fn postgres_refusing_connections_fails_the_monitor_in_time() {
    let pair = Pair::new("pg_refuses");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let bound = short_bound();

    // pg_hba.conf rejects the agent's own user on the local socket.
    for (node, code) in [(n1, OCF_FAILED_PROMOTED), (n2, OCF_ERR_GENERIC)] {
        hba_first_line(node, Some("local all postgres reject"));
        let out = expect(
            &short(node, n1),
            "monitor",
            code,
            &["cannot connect to PostgreSQL"],
            bound,
        );
        assert!(out.stderr.contains("pg_hba.conf rejects"), "{out}");
        // A probe too: the server runs, so this is a failure, not "stopped".
        expect(
            &short(node, n1).meta("interval", "0"),
            "monitor",
            code,
            &[],
            bound,
        );
        hba_first_line(node, None);
    }
    expect(&short(n1, n1), "monitor", OCF_RUNNING_PROMOTED, &[], bound);
    expect(&short(n2, n1), "monitor", OCF_SUCCESS, &[], bound);

    // No socket where pghost says: a directory without it, and no directory.
    let empty = pair.dir.path().join("no-socket-here");
    std::fs::create_dir_all(&empty).unwrap();
    for pghost in [empty.display().to_string(), "/nonexistent/pgsock".into()] {
        for (node, code) in [(n1, OCF_FAILED_PROMOTED), (n2, OCF_ERR_GENERIC)] {
            let a = short(node, n1).param("pghost", pghost.as_str());
            let why = ["cannot connect to PostgreSQL", "no socket", &pghost];
            expect(&a, "monitor", code, &why, bound);
        }
    }

    // The database the agent connects to refuses every connection.
    psql_db(
        n1,
        "template1",
        "alter database postgres allow_connections false",
    );
    poll("node2 replays the change", Duration::from_secs(30), || {
        let out = short(n2, n1).run("monitor");
        (out.code == OCF_ERR_GENERIC).then_some(out)
    })
    .assert_reason_contains("not currently accepting connections");
    expect(
        &short(n1, n1),
        "monitor",
        OCF_FAILED_PROMOTED,
        &["not currently accepting connections"],
        bound,
    );
    // Promote and start cannot check the local server either: failures in
    // time, not hangs.
    expect(
        &short(n2, n1),
        "promote",
        OCF_ERR_GENERIC,
        &["cannot connect"],
        bound,
    );
    expect(
        &short(n2, n1),
        "start",
        OCF_ERR_GENERIC,
        &["cannot connect"],
        bound,
    );
    psql_db(
        n1,
        "template1",
        "alter database postgres allow_connections true",
    );
    expect(&short(n1, n1), "monitor", OCF_RUNNING_PROMOTED, &[], bound);
    poll("node2 answers again", Duration::from_secs(30), || {
        (short(n2, n1).run("monitor").code == OCF_SUCCESS).then_some(())
    });
}

/// A TCP server that accepts connections and never answers (or answers
/// `reply` after `delay`), on its own thread, until the test ends.
fn silent_server(delay: Duration, reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                std::thread::sleep(delay);
                let _ = std::io::Write::write_all(&mut s, reply);
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

#[test]
fn a_primary_host_that_accepts_but_never_answers_is_not_a_hang() {
    let pair = Pair::new("pg_silent");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    agent(n1, n1).run("start").assert_code(OCF_SUCCESS);
    agent(n2, n1).run("start").assert_code(OCF_SUCCESS);
    let silent = silent_server(Duration::from_secs(3600), b"").to_string();
    let a = |n: &Node| {
        short(n, n1)
            .param("primary_port", silent.as_str())
            .param("query_timeout", "2")
    };
    // Whatever accepts TCP at primary_host may be a primary: promotion is
    // refused, within the query timeout.
    expect(
        &a(n2),
        "promote",
        OCF_ERR_GENERIC,
        &["cannot tell whether 127.0.0.1:", "is a primary"],
        short_bound(),
    );
    assert_eq!(n2.psql("select pg_is_in_recovery()"), "t");
    // The standby's monitor asks primary_host only off the steady path; it
    // answers in time.
    expect(&a(n2), "monitor", OCF_SUCCESS, &[], short_bound());
    // With a Pacemaker timeout shorter than query_timeout, the timeout wins.
    let out = expect(
        &a(n2).param("query_timeout", "60").meta("timeout", "3000"),
        "promote",
        OCF_ERR_GENERIC,
        &["cannot tell whether"],
        Duration::from_millis(3000),
    );
    assert_no_panic(&out);
}

// ------------------------------------------------------------ a slow Redis

#[test]
fn a_redis_that_answers_slowly_times_out_below_the_operation_timeout() {
    let pair = Pair::new("redis_slow");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    primary_and_standby(&pair);
    let bound = short_bound();

    // The primary's Redis frozen: failed while promoted (9), in time; the
    // standby's (1) is `a_hung_redis_fails_the_monitor_before_pacemakers_timeout`.
    let pid = n1.redis_pid().expect("node1's redis");
    signal(pid, "-STOP");
    let out = short(n1, n1).run("monitor");
    signal(pid, "-CONT");
    out.assert_code(OCF_FAILED_PROMOTED)
        .assert_reason_contains("timed out");
    assert_no_panic(&out);

    // start and demote on a node whose Redis is frozen: failures in time.
    let pid = n2.redis_pid().expect("node2's redis");
    signal(pid, "-STOP");
    let t = Instant::now();
    let start = short(n2, n1).run("start");
    let demote = short(n2, n1).run("demote");
    let took = t.elapsed();
    // A notification never fails, also when Redis does not answer.
    let notify = short(n2, n1)
        .notify("post", "promote", &[("promote_uname", "node1")])
        .run("notify");
    signal(pid, "-CONT");
    start
        .assert_code(OCF_ERR_GENERIC)
        .assert_reason_contains("timed out");
    demote
        .assert_code(OCF_ERR_GENERIC)
        .assert_reason_contains("timed out");
    notify.assert_code(OCF_SUCCESS);
    assert!(took < 2 * bound, "start and demote took {took:?}");

    // A Redis master at primary_host that accepts and never answers, or
    // answers after the timeout: the replica's monitor, which asks it only
    // when the link is down, answers in time and is not degraded by it.
    for delay in [Duration::from_secs(3600), Duration::from_secs(8)] {
        let port = silent_server(delay, b"+PONG\r\n");
        n2.redis_cli(&["replicaof", "127.0.0.1", &port.to_string()]);
        let a = short(n2, n1)
            .param("redis_primary_port", port.to_string())
            .meta("interval", "1000");
        expect(&a, "monitor", OCF_SUCCESS, &[], bound);
        std::thread::sleep(Duration::from_millis(2100));
        expect(&a, "monitor", OCF_SUCCESS, &[], bound);
    }
    // The post-promote notification points it back at the real master.
    agent(n2, n1)
        .notify("post", "promote", &[("promote_uname", "node1")])
        .run("notify")
        .assert_code(OCF_SUCCESS);
    wait_redis_link(n2);
    agent(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
}

// ------------------------------------------------------------ a full disk

/// A private mount namespace holding a small tmpfs over one directory: the
/// agent runs inside it through `nsenter`, and so do the servers it starts.
/// Nothing outside the namespace sees the tmpfs. Dropping it stops the node
/// inside the namespace, then kills the holder process (by its pid).
struct FullDisk {
    holder: Child,
    dir: PathBuf,
    node: Node,
}

impl FullDisk {
    fn over(dir: &Path, size: &str, node: &Node) -> FullDisk {
        let script = format!(
            "mount -t tmpfs -o size={size},mode=0755 rapidpro-full '{}' && echo mounted && exec sleep 3600",
            dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "mounted", "the tmpfs was not mounted");
        FullDisk {
            holder,
            dir: dir.to_owned(),
            node: node.clone(),
        }
    }

    /// `nsenter` into the namespace: a prefix for [`Agent::run_under`].
    fn prefix(&self) -> Vec<String> {
        ["nsenter", "-t", &self.holder.id().to_string(), "-m", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn run(&self, a: &Agent, action: &str) -> AgentOutput {
        let p = self.prefix();
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        a.run_under(&p, action)
    }

    fn sh(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.holder.id().to_string(),
                "-m",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    }

    /// Fills the tmpfs to the last byte.
    fn fill(&self) {
        let out = self.sh(&format!("cat /dev/zero > '{}/filler'", self.dir.display()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left"), "{err}");
    }

    fn empty(&self) {
        assert!(self
            .sh(&format!("rm -f '{}/filler'", self.dir.display()))
            .status
            .success());
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        self.empty();
        let _ = self.run(&self.node.agent(bin()), "stop");
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_full_state_dir_is_a_failure_naming_the_path_not_a_panic() {
    let pair = Pair::new("full_state");
    let n1 = &pair.nodes[0];
    let disk = FullDisk::over(&n1.state_dir, "256k", n1);
    let a = || agent(n1, n1).meta("timeout", "20000");
    disk.fill();
    // Redis cannot start without its generated configuration.
    let out = disk.run(&a(), "start");
    out.assert_code(OCF_ERR_GENERIC);
    out.assert_reason_contains(&n1.state_dir.join("redis").display().to_string());
    out.assert_reason_contains("No space left on device");
    assert_no_panic(&out);
    // Stop succeeds anyway (a failed stop ends in fencing).
    disk.run(&a(), "stop").assert_code(OCF_SUCCESS);
    assert!(n1.postmaster_pid().is_none());

    // Running with a full state_dir: the state file is a cache, so monitor,
    // promote and demote go on (logging that it cannot be written).
    disk.empty();
    disk.run(&a(), "start").assert_code(OCF_SUCCESS);
    disk.fill();
    disk.run(&a(), "monitor").assert_code(OCF_SUCCESS);
    disk.run(&a(), "promote").assert_code(OCF_SUCCESS);
    // With a CIB to set scores in, the monitor has state to save, and
    // cannot: it reports the role all the same, every time.
    let cib = rapidpro_ha_harness::offline_cib(pair.dir.path(), &["node1"]);
    let with_cib = || a().env("CIB_file", cib.display().to_string());
    for _ in 0..2 {
        disk.run(&with_cib(), "monitor")
            .assert_code(OCF_RUNNING_PROMOTED);
    }
    let state = disk.sh(&format!(
        "cat '{}/stack.state.json'",
        n1.state_dir.display()
    ));
    assert!(
        !state.status.success(),
        "a state file was written on a full disk"
    );
    disk.run(&a(), "demote").assert_code(OCF_SUCCESS);
    disk.run(&a(), "monitor").assert_code(OCF_SUCCESS);
    disk.run(&a(), "stop").assert_code(OCF_SUCCESS);
    disk.run(&a(), "monitor").assert_code(OCF_NOT_RUNNING);
    drop(disk);
    assert!(n1.postmaster_pid().is_none());
}

#[test]
fn a_full_data_directory_fails_the_primary_in_time_and_stop_still_works() {
    let pair = Pair::new("full_pgdata");
    let n1 = &pair.nodes[0];
    // The tmpfs hides the directory's own files in its namespace: copy them in.
    let copy = pair.dir.path().join("pgdata-copy");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&n1.pgdata)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let disk = FullDisk::over(&n1.pgdata, "160m", n1);
    let out = disk.sh(&format!(
        "cp -a '{src}/.' '{dst}/' && chown postgres:postgres '{dst}' && chmod 0700 '{dst}'",
        src = copy.display(),
        dst = n1.pgdata.display()
    ));
    assert!(out.status.success(), "{out:?}");
    let a = || agent(n1, n1).meta("timeout", "20000");
    disk.run(&a(), "start").assert_code(OCF_SUCCESS);
    disk.run(&a(), "promote").assert_code(OCF_SUCCESS);
    disk.run(&a(), "monitor").assert_code(OCF_RUNNING_PROMOTED);

    // Fill the disk, then make PostgreSQL need new WAL segments: each
    // switch ends one, the checkpoint after it writes into the next, and WAL
    // that cannot be written is a PANIC. (A table that cannot grow is only
    // an ERROR for the writer: the server goes on, and so does the monitor.)
    disk.fill();
    for _ in 0..30 {
        let _ = n1.try_psql("select pg_switch_wal()");
        let _ = n1.try_psql("checkpoint");
        if n1.postmaster_pid().is_none() && n1.try_psql("select 1").is_err() {
            break;
        }
    }
    // Every monitor answers in time; once PostgreSQL is down or refusing,
    // the primary has failed (9), with a reason.
    let out = poll(
        "the monitor sees the failure",
        Duration::from_secs(60),
        || {
            let t = Instant::now();
            let out = disk.run(&short(n1, n1), "monitor");
            assert!(
                t.elapsed() < short_bound(),
                "monitor took {:?}\n{out}",
                t.elapsed()
            );
            assert_no_panic(&out);
            (out.code != OCF_RUNNING_PROMOTED).then_some(out)
        },
    );
    out.assert_code(OCF_FAILED_PROMOTED);
    assert!(out.exit_reason().is_some_and(|r| !r.is_empty()), "{out}");
    // Stop succeeds on the full disk (a failed stop ends in fencing).
    disk.run(&short(n1, n1), "stop").assert_code(OCF_SUCCESS);
    // Start may succeed (a standby replays read-only and needs no room) or
    // fail; either in time, and a failure with its reason.
    let timed = |action: &str| {
        let t = Instant::now();
        let out = disk.run(&short(n1, n1), action);
        assert!(
            t.elapsed() < short_bound(),
            "{action} took {:?}\n{out}",
            t.elapsed()
        );
        assert_no_panic(&out);
        out
    };
    let out = timed("start");
    match out.code {
        OCF_SUCCESS => {
            timed("monitor").assert_code(OCF_SUCCESS);
            // Promotion needs WAL written: it fails, in time, with a reason.
            let out = timed("promote");
            eprintln!("promote on a full data directory: {:?}", out.exit_reason());
            out.assert_code(OCF_ERR_GENERIC);
            assert!(out.exit_reason().is_some(), "{out}");
        }
        OCF_ERR_GENERIC => {
            eprintln!("start on a full data directory: {:?}", out.exit_reason());
            assert!(out.exit_reason().is_some(), "{out}");
        }
        other => panic!("start on a full data directory gave {other}\n{out}"),
    }
    disk.run(&short(n1, n1), "stop").assert_code(OCF_SUCCESS);
}
