//! `bench/agents`: the `monitor` action of `ocf:rapidpro:stack` side by side
//! with the agents it replaces (PAF `pgsqlms`, `heartbeat/pgsql` in
//! replication mode, `heartbeat/redis`) and with the floors (one `psql`
//! query, one `redis-cli info replication`, `/bin/true`), on one real
//! PostgreSQL primary + streaming standby and one Redis master + replica,
//! interleaved round-robin in the same run. Prints figures; asserts nothing.
//!
//! Usage: rapidpro-bench-agents <path of rapidpro-agent> [rounds (default 31)]
//!
//! How each figure is taken:
//! - Every timed run goes through a small launcher (this binary, re-executed
//!   as `rapidpro-bench-agents launch …`): it forks, resets the child's
//!   peak-RSS mark (`/proc/self/clear_refs`, 5) so that the child does not
//!   inherit the launcher's, execs the command, and `wait4`s for it. Wall
//!   time is from before the fork to the end of `wait4`; CPU time is
//!   user + system from `wait4`'s rusage, which covers the process and every
//!   descendant it waited for; peak RSS is `ru_maxrss` from the same
//!   rusage: the largest resident set of the process or of any one of those
//!   descendants (not a sum).
//! - The processes an action spawns are counted in a separate, untimed run
//!   under `strace -ff -e trace=execve,clone,clone3,fork,vfork`: successful
//!   `execve`s after the first, and process-creating clones/forks (threads
//!   excluded).
//! - The anchors call Pacemaker's tools. Without a cluster those fail (and
//!   `heartbeat/pgsql` then retries for a day), so each agent gets an offline
//!   CIB (`CIB_file`: 2 online nodes, its promotable clone with notify=true,
//!   and an operation history that makes node1 Promoted and node2
//!   Unpromoted), which `crm_attribute`, `crm_master`, `crm_resource` and
//!   `crm_mon` read and write. What needs a live daemon (`crm_node`) and the
//!   shell library's `uname -n` fallback are answered by small shell shims,
//!   placed first on `PATH` and in `HA_SBIN_DIR` for the anchors only. The
//!   strace census says which tool each anchor called and how it was
//!   answered. A live cluster adds an IPC round trip to every one of those
//!   calls, so the anchors' figures are lower bounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::User;
use rapidpro_ha_harness::bench::{self, Recorder};
use rapidpro_ha_harness::ocf::param;
use rapidpro_ha_harness::{
    offline_cib, poll, run_command, Node, Pair, LOOPBACK, PG_BINDIR, PG_USER, REDIS_CLI,
    REDIS_SERVER, REDIS_USER,
};
use serde_json::{json, Value};

/// `writeln!` into the report, which is printed and stored.
macro_rules! out {
    ($o:expr, $($t:tt)*) => {
        let _ = writeln!($o, $($t)*);
    };
}

/// When set, the servers stay up after the report until Ctrl-C.
const HOLD_ENV: &str = "RAPIDPRO_BENCH_HOLD";
/// Milliseconds of idle time before each timed run (default 0: back to
/// back).
const PAUSE_ENV: &str = "RAPIDPRO_BENCH_PAUSE_MS";
/// The first argument that makes this binary the launcher.
const LAUNCH: &str = "launch";
/// Pacemaker 2.1.5's feature set (`pacemakerd --features`).
const FEATURE_SET: &str = "3.16.1";
/// Monitor timeout passed to every agent, in ms (PAF's suggested 10 s).
const MONITOR_TIMEOUT_MS: &str = "10000";
/// Monitor intervals, ms: promoted and unpromoted need distinct ones.
const INTERVAL_PROMOTED: &str = "15000";
const INTERVAL_UNPROMOTED: &str = "16000";
/// Harness-side deadline for one launched run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Waiting for replication to come up.
const SETTLE: Duration = Duration::from_secs(60);
/// Pacemaker tools that talk to a daemon of a live cluster (an IPC round
/// trip or more per call); here `CIB_file` or a shim answers them.
const DAEMON_TOOLS: &[&str] = &[
    "crm_attribute",
    "crm_resource",
    "crm_mon",
    "crm_node",
    "cibadmin",
    "crm_failcount",
    "crm_standby",
    "attrd_updater",
];
/// What one such call costs in a live cluster on this machine
/// (`../shared/notes/anchors.md`: 22–24 ms).
const IPC_MS: f64 = 22.0;
/// Programs the shims replace.
const SHIMMED: &[&str] = &["crm_node", "uname"];

const CRM_NODE_SHIM: &str = r#"#!/bin/sh
# bench/agents shim: crm_node answers from the live controller, which this
# benchmark does not run. Answers as a 2-node cluster (node1, node2) whose
# local node is the one Pacemaker names in OCF_RESKEY_CRM_meta_on_node.
for a in "$@"; do
  case "$a" in
    -n|--name) echo "$OCF_RESKEY_CRM_meta_on_node"; exit 0 ;;
    -p|--partition) echo "node1 node2"; exit 0 ;;
    -l|--list) printf '1 node1 member\n2 node2 member\n'; exit 0 ;;
    -q|--quorum) echo 1; exit 0 ;;
  esac
done
exec /usr/sbin/crm_node "$@"
"#;

const UNAME_SHIM: &str = r#"#!/bin/sh
# bench/agents shim: resource-agents 4.12's ocf_local_nodename misreads
# `pacemakerd -$` and falls back to `uname -n`; a cluster node's uname is its
# node name, so answer the node Pacemaker names.
if [ "$#" = 1 ] && [ "$1" = "-n" ] && [ -n "$OCF_RESKEY_CRM_meta_on_node" ]; then
  echo "$OCF_RESKEY_CRM_meta_on_node"; exit 0
fi
exec /bin/uname "$@"
"#;

// ---------------------------------------------------------------------------
// The launcher.

/// What one launched run measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    rss_kib: f64,
    code: i32,
}

/// `launch <log> <uid> <gid> <program> <args…>`: runs the program with this
/// process's environment and working directory, stdout and stderr to
/// `<log>`, as `uid:gid` unless they are `-`; prints
/// `<wall ns> <user µs> <sys µs> <maxrss KiB> <exit code or 128+signal>`.
fn launcher(args: &[String]) -> i32 {
    let [log, uid, gid, program, rest @ ..] = args else {
        eprintln!("usage: rapidpro-bench-agents launch <log> <uid|-> <gid|-> <program> [args…]");
        return 2;
    };
    let log = match fs::File::create(log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("launch: {log}: {e}");
            return 2;
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(rest).stdin(Stdio::null());
    match log.try_clone() {
        Ok(l) => cmd.stdout(l).stderr(log),
        Err(e) => {
            eprintln!("launch: {e}");
            return 2;
        }
    };
    if let (Ok(u), Ok(g)) = (uid.parse::<u32>(), gid.parse::<u32>()) {
        cmd.uid(u).gid(g);
    }
    // SAFETY: the closure runs in the forked child before exec. The
    // launcher is single-threaded (it never starts a thread), so no lock
    // can be held by another thread at fork time, and the allocation and
    // the write below are safe there.
    unsafe {
        cmd.pre_exec(|| {
            // The forked child starts with the launcher's peak RSS; reset
            // it to the child's current (small) RSS. Best effort.
            let _ = fs::write("/proc/self/clear_refs", "5");
            Ok(())
        });
    }
    let start = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("launch: cannot run {program}: {e}");
            return 2;
        }
    };
    let (status, usage) = match wait4(child.id() as i32) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("launch: wait4: {e}");
            return 2;
        }
    };
    let wall = start.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => -1,
    };
    let us = |t: nix::libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    println!(
        "{} {} {} {} {code}",
        wall.as_nanos(),
        us(usage.ru_utime),
        us(usage.ru_stime),
        usage.ru_maxrss
    );
    0
}

/// `wait4(pid, &status, 0, &rusage)`, retried on EINTR: the exit status and
/// the resource usage of the child and of the descendants it waited for.
fn wait4(pid: i32) -> io::Result<(i32, nix::libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all zero
    // bytes is a valid value.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers point to live, writable locals of the types
        // wait4(2) expects, for the duration of the call.
        let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

// ---------------------------------------------------------------------------
// Cases.

/// One thing to run, with everything it needs.
#[derive(Debug, Clone)]
struct Case {
    /// Short label for the tables.
    label: String,
    /// What the ratio column compares it with.
    kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
    /// Run as this user (uid, gid) instead of root.
    user: Option<(u32, u32)>,
    /// The exit code of a healthy steady state.
    expected: i32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Ours, on the primary or the standby.
    Ours(Side),
    /// An anchor, on the primary (master) or the standby (replica).
    Anchor(Side),
    /// A floor.
    Floor,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Primary,
    Standby,
}

/// Everything a timed or traced run produced for a case.
#[derive(Debug, Default)]
struct Results {
    samples: Vec<Sample>,
    /// Unexpected exit codes with the run's output, first few only.
    unexpected: Vec<String>,
    census: Option<Census>,
}

impl Case {
    fn launch_command(&self, me: &Path, log: &Path) -> Command {
        let mut cmd = Command::new(me);
        let (u, g) = match self.user {
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => ("-".into(), "-".into()),
        };
        cmd.arg(LAUNCH)
            .arg(log)
            .arg(u)
            .arg(g)
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd);
        cmd
    }

    /// One timed run through the launcher.
    fn measure(&self, me: &Path, log: &Path) -> (Sample, String) {
        let out = run_command(self.launch_command(me, log), RUN_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {e}", self.label));
        let f: Vec<f64> = out
            .stdout
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if !out.success() || f.len() != 5 {
            panic!("{}: launcher failed\n{}", self.label, out.failure_message());
        }
        let sample = Sample {
            wall_ms: f[0] / 1e6,
            cpu_ms: (f[1] + f[2]) / 1e3,
            rss_kib: f[3],
            code: f[4] as i32,
        };
        let output = fs::read_to_string(log).unwrap_or_default();
        (sample, output)
    }

    /// One untimed run under strace, in `dir`.
    fn trace(&self, dir: &Path, shims: &Path) -> Census {
        fs::create_dir_all(dir).expect("census dir");
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).expect("chmod census dir");
        let prefix = dir.join("t");
        let mut cmd = Command::new("strace");
        cmd.args(["-ff", "-qq", "-s", "300", "-e", "signal=none", "-e"])
            .arg("trace=execve,clone,clone3,fork,vfork")
            .arg("-o")
            .arg(&prefix)
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd);
        if let Some((u, g)) = self.user {
            cmd.uid(u).gid(g);
        }
        let out = run_command(cmd, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{}: {e}", self.label));
        let code = out.status.code().unwrap_or(-1);
        let mut c = census(dir, shims);
        c.code = code;
        c
    }
}

// ---------------------------------------------------------------------------
// The strace census.

#[derive(Debug, Default)]
struct Census {
    /// Successful execve after the first (the action's own).
    execs: usize,
    /// Process-creating clone/clone3/fork/vfork (threads excluded).
    forks: usize,
    /// Program base name -> how many times it was executed.
    programs: BTreeMap<String, usize>,
    /// Pacemaker tool calls: (tool with its options, how answered) -> count.
    cluster_calls: BTreeMap<(String, &'static str), usize>,
    /// Calls that would each talk to a daemon of a live cluster.
    daemon_calls: usize,
    code: i32,
}

fn census(dir: &Path, shims: &Path) -> Census {
    let mut c = Census::default();
    let mut execs_total: usize = 0;
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("census dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines() {
            let ok = !line.contains(" = -1 ") && !line.ends_with("= ?");
            if line.starts_with("execve(") && ok {
                execs_total += 1;
                let (path, argv) = parse_execve(line);
                let base = Path::new(&path)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or(path.clone());
                *c.programs.entry(base.clone()).or_default() += 1;
                if DAEMON_TOOLS.contains(&base.as_str()) {
                    c.daemon_calls += 1;
                }
                if let Some(how) = how_answered(&base, Path::new(&path), shims) {
                    let opts: Vec<&str> = argv
                        .iter()
                        .skip(1)
                        .map(String::as_str)
                        .filter(|a| a.starts_with('-'))
                        .collect();
                    let call = format!("{base} {}", opts.join(" "));
                    *c.cluster_calls
                        .entry((call.trim_end().to_string(), how))
                        .or_default() += 1;
                }
            } else if (line.starts_with("clone(")
                || line.starts_with("clone3(")
                || line.starts_with("fork(")
                || line.starts_with("vfork("))
                && ok
                && !line.contains("CLONE_THREAD")
            {
                c.forks += 1;
            }
        }
    }
    c.execs = execs_total.saturating_sub(1);
    c
}

/// Path and argv of an strace `execve("path", ["a", "b"], …) = 0` line.
fn parse_execve(line: &str) -> (String, Vec<String>) {
    let mut strings = Vec::new();
    let mut depth_closed = false;
    let mut cur: Option<String> = None;
    let mut escaped = false;
    for ch in line.chars() {
        match (&mut cur, ch) {
            (Some(s), _) if escaped => {
                s.push(ch);
                escaped = false;
            }
            (Some(_), '\\') => escaped = true,
            (Some(_), '"') => strings.push(cur.take().unwrap_or_default()),
            (Some(s), _) => s.push(ch),
            (None, '"') if !depth_closed => cur = Some(String::new()),
            (None, ']') => depth_closed = true,
            _ => {}
        }
    }
    let path = strings.first().cloned().unwrap_or_default();
    (path, strings.into_iter().skip(1).collect())
}

/// How a Pacemaker tool call was answered, if `base` is one.
fn how_answered(base: &str, path: &Path, shims: &Path) -> Option<&'static str> {
    if path.parent() == Some(shims) {
        let is_link = fs::symlink_metadata(path)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            return Some("shim");
        }
    }
    match base {
        "crm_master" => Some("wrapper script, runs crm_attribute (counted there)"),
        "pacemakerd" => Some("`-$` prints the version, no daemon"),
        "crm_node" => Some("real tool without its daemon"),
        _ if DAEMON_TOOLS.contains(&base) => Some("real tool on CIB_file"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Setting up.

/// The environment Pacemaker 2.1.5's execd gives an OCF agent of a
/// promotable clone (clone-max=2, promoted-max=1, notify=true) for a
/// recurring monitor. The logging variables (HA_LOGFACILITY, HA_debug, …)
/// are left unset: log lines go to stderr, and no `logger` process is
/// spawned for them, which favours the anchors.
fn pacemaker_env(
    instance: &str,
    provider: &str,
    kind: &str,
    node: &Node,
    side: Side,
    path: &str,
    cib: &Path,
) -> BTreeMap<String, String> {
    let (clone, uuid) = if node.name == "node1" {
        ("0", "1")
    } else {
        ("1", "2")
    };
    let interval = match side {
        Side::Primary => INTERVAL_PROMOTED,
        Side::Standby => INTERVAL_UNPROMOTED,
    };
    let mut e: BTreeMap<String, String> = [
        ("PATH", path),
        ("OCF_ROOT", "/usr/lib/ocf"),
        ("OCF_RA_VERSION_MAJOR", "1"),
        ("OCF_RA_VERSION_MINOR", "1"),
        ("OCF_RESOURCE_INSTANCE", instance),
        ("OCF_RESOURCE_TYPE", kind),
        ("OCF_RESOURCE_PROVIDER", provider),
        ("OCF_RESKEY_crm_feature_set", FEATURE_SET),
        ("OCF_RESKEY_CRM_meta_clone", clone),
        ("OCF_RESKEY_CRM_meta_clone_max", "2"),
        ("OCF_RESKEY_CRM_meta_clone_node_max", "1"),
        ("OCF_RESKEY_CRM_meta_globally_unique", "false"),
        ("OCF_RESKEY_CRM_meta_interval", interval),
        ("OCF_RESKEY_CRM_meta_timeout", MONITOR_TIMEOUT_MS),
        ("OCF_RESKEY_CRM_meta_master_max", "1"),
        ("OCF_RESKEY_CRM_meta_master_node_max", "1"),
        ("OCF_RESKEY_CRM_meta_promoted_max", "1"),
        ("OCF_RESKEY_CRM_meta_promoted_node_max", "1"),
        ("OCF_RESKEY_CRM_meta_promotable", "true"),
        ("OCF_RESKEY_CRM_meta_notify", "true"),
        ("OCF_RESKEY_CRM_meta_on_node", node.name.as_str()),
        ("OCF_RESKEY_CRM_meta_on_node_uuid", uuid),
        ("OCF_RESKEY_CRM_meta_name", "monitor"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    e.insert("CIB_file".into(), cib.display().to_string());
    e
}

fn reskeys(env: &mut BTreeMap<String, String>, params: &[(&str, String)]) {
    for (k, v) in params {
        env.insert(format!("OCF_RESKEY_{k}"), v.clone());
    }
}

/// An offline CIB in `dir` for the promotable clone of `rsc`
/// (`ocf:<provider>:<kind>`), with an operation history that shows it
/// Promoted on node1 and Unpromoted on node2, as `crm_mon` would show a
/// healthy cluster.
fn cib_for(dir: &Path, rsc: &str, provider: &str, kind: &str) -> PathBuf {
    fs::create_dir_all(dir).expect("cib dir");
    let cib = offline_cib(dir, &["node1", "node2"]);
    let clone = format!(
        r#"<clone id="{rsc}-clone"><meta_attributes id="{rsc}-clone-meta"><nvpair id="{rsc}-clone-promotable" name="promotable" value="true"/><nvpair id="{rsc}-clone-notify" name="notify" value="true"/><nvpair id="{rsc}-clone-promoted-max" name="promoted-max" value="1"/><nvpair id="{rsc}-clone-max" name="clone-max" value="2"/></meta_attributes><primitive id="{rsc}" class="ocf" provider="{provider}" type="{kind}"/></clone>"#
    );
    cibadmin(&cib, &["-C", "-o", "resources", "-X", &clone]);
    for (id, node, op) in [("1", "node1", "promote"), ("2", "node2", "start")] {
        let history = format!(
            r#"<node_state id="{id}" uname="{node}"><lrm id="{id}"><lrm_resources><lrm_resource id="{rsc}" class="ocf" provider="{provider}" type="{kind}"><lrm_rsc_op id="{rsc}_last_0" operation_key="{rsc}_{op}_0" operation="{op}" crm-debug-origin="do_update_resource" crm_feature_set="{FEATURE_SET}" transition-key="1:1:0:00000000-0000-0000-0000-000000000000" transition-magic="0:0;1:1:0:00000000-0000-0000-0000-000000000000" exit-reason="" on_node="{node}" call-id="5" rc-code="0" op-status="0" interval="0" last-rc-change="1700000000" exec-time="10" queue-time="0"/></lrm_resource></lrm_resources></lrm></node_state>"#
        );
        cibadmin(&cib, &["-M", "-o", "status", "-X", &history]);
    }
    cib
}

fn cibadmin(cib: &Path, args: &[&str]) {
    let mut c = Command::new("/usr/sbin/cibadmin");
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CIB_file", cib)
        .args(args);
    let out = run_command(c, RUN_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    if !out.success() {
        panic!("{}", out.failure_message());
    }
}

/// The shim directory: `crm_node` and `uname` shims, and links to the real
/// Pacemaker tools (so that `HA_SBIN_DIR` can point here).
fn make_shims(dir: &Path) {
    fs::create_dir_all(dir).expect("shim dir");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod shims");
    for (name, text) in [("crm_node", CRM_NODE_SHIM), ("uname", UNAME_SHIM)] {
        let p = dir.join(name);
        fs::write(&p, text).expect("write shim");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod shim");
    }
    for e in fs::read_dir("/usr/sbin").expect("/usr/sbin").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let wanted = (name.starts_with("crm_") || name == "attrd_updater" || name == "cibadmin")
            && !SHIMMED.contains(&name.as_str());
        if wanted {
            symlink(e.path(), dir.join(&name)).expect("link tool");
        }
    }
}

fn wait_replicating(standby: &Node) {
    poll("standby streaming", SETTLE, || {
        let s = standby
            .try_psql("select status from pg_stat_wal_receiver")
            .ok()?;
        (s == "streaming").then_some(())
    });
    poll("Redis replica link up", SETTLE, || {
        let s = standby.try_redis_cli(&["info", "replication"]).ok()?;
        s.contains("master_link_status:up").then_some(())
    });
}

fn user_ids(name: &str) -> (u32, u32) {
    let u = User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {name}"));
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Starts the pair with our agent: node1 primary, node2 standby of it,
/// PostgreSQL streaming and Redis replicating.
fn start_pair(pair: &Pair, agent_bin: &str, cib: &Path) {
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let ours = |n: &Node| {
        n.agent(agent_bin)
            .primary(n1)
            .param(param::SYNC_REPLICATION, "off")
            .env("CIB_file", cib.display().to_string())
    };
    for (n, action) in [(n1, "start"), (n2, "start"), (n1, "promote")] {
        ours(n).run(action).assert_code(0);
    }
    for n in [n1, n2] {
        ours(n)
            .notify("post", "promote", &[("promote_uname", "node1")])
            .run("notify")
            .assert_code(0);
    }
    wait_replicating(n2);
}

fn ours_case(agent_bin: &str, n1: &Node, node: &Node, side: Side, cib: &Path) -> Case {
    let agent = node
        .agent(agent_bin)
        .primary(n1)
        .param(param::SYNC_REPLICATION, "off");
    let mut env = pacemaker_env(
        &node.instance,
        "rapidpro",
        "stack",
        node,
        side,
        &agent.environment()["PATH"],
        cib,
    );
    for (k, v) in agent.environment() {
        if k.starts_with("OCF_RESKEY_") && !k.starts_with("OCF_RESKEY_CRM_meta_") {
            env.insert(k.clone(), v.clone());
        }
    }
    Case {
        label: format!("rapidpro stack, {}", side_name(side, false)),
        kind: Kind::Ours(side),
        program: PathBuf::from(agent_bin),
        args: vec!["monitor".into()],
        env,
        cwd: node.dir.clone(),
        user: None,
        expected: expected(side),
    }
}

/// Standby-side cases, and the floors that do not touch the primary.
fn is_standby_side(c: &Case) -> bool {
    match c.kind {
        Kind::Ours(side) | Kind::Anchor(side) => side == Side::Standby,
        Kind::Floor => !c.label.starts_with("floor: psql"),
    }
}

fn side_name(side: Side, redis: bool) -> &'static str {
    match (side, redis) {
        (Side::Primary, false) => "primary",
        (Side::Standby, false) => "standby",
        (Side::Primary, true) => "master",
        (Side::Standby, true) => "replica",
    }
}

fn expected(side: Side) -> i32 {
    match side {
        Side::Primary => 8,
        Side::Standby => 0,
    }
}

struct Anchors<'a> {
    shims: &'a Path,
    path: String,
    root: &'a Path,
}

impl Anchors<'_> {
    fn env(
        &self,
        instance: &str,
        kind: &str,
        node: &Node,
        side: Side,
        cib: &Path,
    ) -> BTreeMap<String, String> {
        let mut e = pacemaker_env(instance, "heartbeat", kind, node, side, &self.path, cib);
        e.insert("HA_SBIN_DIR".into(), self.shims.display().to_string());
        e
    }

    fn case(&self, label: String, kind: &str, env: BTreeMap<String, String>, side: Side) -> Case {
        Case {
            label,
            kind: Kind::Anchor(side),
            program: Path::new("/usr/lib/ocf/resource.d/heartbeat").join(kind),
            args: vec!["monitor".into()],
            env,
            cwd: self.root.to_path_buf(),
            user: None,
            expected: expected(side),
        }
    }

    fn paf(&self, node: &Node, side: Side, cib: &Path) -> Case {
        let mut env = self.env("pgsqld", "pgsqlms", node, side, cib);
        reskeys(
            &mut env,
            &[
                ("bindir", PG_BINDIR.into()),
                ("pgdata", node.pgdata.display().to_string()),
                ("pghost", node.pg_socket_dir.display().to_string()),
                ("pgport", node.pgport.to_string()),
                ("system_user", PG_USER.into()),
                // PAF's validation wants `application_name=<node>` unquoted
                // in primary_conninfo (its regex); our agent writes the
                // equally valid `application_name='<node>'`. PAF passes
                // start_opts to `postgres -C primary_conninfo`, so this
                // shows it the form it expects; a monitor uses start_opts
                // for nothing else.
                (
                    "start_opts",
                    format!("-c primary_conninfo=application_name={}", node.name),
                ),
            ],
        );
        let label = format!("PAF pgsqlms, {}", side_name(side, false));
        self.case(label, "pgsqlms", env, side)
    }

    fn pgsql(&self, node: &Node, side: Side, cib: &Path) -> Case {
        // heartbeat/pgsql appends `include` lines to its `config` at every
        // validation; it gets a copy of postgresql.conf so that our
        // server's own file stays as the agent under test wrote it.
        let own = node.dir.join("pgsql-ra");
        let tmp = own.join("tmp");
        let mut env = self.env("pgsql", "pgsql", node, side, cib);
        reskeys(
            &mut env,
            &[
                ("pgctl", format!("{PG_BINDIR}/pg_ctl")),
                ("psql", format!("{PG_BINDIR}/psql")),
                ("pgdata", node.pgdata.display().to_string()),
                ("config", own.join("postgresql.conf").display().to_string()),
                ("pgdba", PG_USER.into()),
                ("pgport", node.pgport.to_string()),
                ("socketdir", node.pg_socket_dir.display().to_string()),
                ("rep_mode", "async".into()),
                ("node_list", "node1 node2".into()),
                ("master_ip", LOOPBACK.into()),
                ("repuser", "replicator".into()),
                ("tmpdir", tmp.display().to_string()),
            ],
        );
        let label = format!("heartbeat/pgsql, {}", side_name(side, false));
        self.case(label, "pgsql", env, side)
    }

    fn redis(&self, node: &Node, side: Side, cib: &Path) -> Case {
        let mut env = self.env("redis", "redis", node, side, cib);
        let rel = |p: &Path| {
            p.strip_prefix(&node.dir)
                .expect("inside the node dir")
                .display()
                .to_string()
        };
        reskeys(
            &mut env,
            &[
                ("bin", REDIS_SERVER.into()),
                ("client_bin", REDIS_CLI.into()),
                ("config", node.redis_config.display().to_string()),
                ("user", REDIS_USER.into()),
                ("rundir", node.dir.display().to_string()),
                ("pidfile_name", rel(&node.redis_pidfile())),
                ("socket_name", rel(&node.redis_socket)),
                ("port", node.redis_port.to_string()),
            ],
        );
        let label = format!("heartbeat/redis, {}", side_name(side, true));
        self.case(label, "redis", env, side)
    }
}

fn floor(label: &str, program: &str, args: &[&str], cwd: &Path, user: Option<(u32, u32)>) -> Case {
    let env = [("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Case {
        label: label.into(),
        kind: Kind::Floor,
        program: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env,
        cwd: cwd.to_path_buf(),
        user,
        expected: 0,
    }
}

// ---------------------------------------------------------------------------
// Teardown on a panic (release builds abort, so Drop does not run) and on
// SIGINT, SIGTERM or SIGHUP.

static TEARDOWN: Mutex<Option<(Vec<Node>, PathBuf)>> = Mutex::new(None);

fn teardown_now() {
    let taken = TEARDOWN.lock().map(|mut g| g.take()).unwrap_or(None);
    if let Some((nodes, dir)) = taken {
        eprintln!("bench: stopping the servers");
        for n in &nodes {
            for line in n.stop_everything() {
                eprintln!("bench: {line}");
            }
        }
        kill_descendants();
        let _ = fs::remove_dir_all(&dir);
    }
}

/// SIGKILL to every process below this one (a running agent or launcher).
fn kill_descendants() {
    let me = std::process::id() as i32;
    let mut parents = vec![me];
    let mut found = Vec::new();
    let all: Vec<(i32, i32)> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|pid| {
                    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let ppid = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    while let Some(p) = parents.pop() {
        for &(pid, ppid) in &all {
            if ppid == p && !found.contains(&pid) {
                found.push(pid);
                parents.push(pid);
            }
        }
    }
    for pid in found {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The signal that asked for a teardown, 0 while none did.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

fn install_teardown() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        teardown_now();
    }));
    // A handler, not a blocked mask and sigwait: children inherit a blocked
    // mask (std does not reset it), and a redis-server with SIGTERM blocked
    // never stops. A caught signal reverts to its default on exec.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe, and no other code in this process installs a
        // handler for these signals.
        unsafe { sigaction(s, &action) }.expect("install a signal handler");
    }
    std::thread::spawn(|| loop {
        std::thread::sleep(Duration::from_millis(100));
        let sig = SIGNALLED.load(Ordering::SeqCst);
        if sig != 0 {
            eprintln!("bench: signal {sig}, tearing down");
            teardown_now();
            std::process::exit(128 + sig);
        }
    });
}

// ---------------------------------------------------------------------------
// Statistics and printing.

fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut s: Vec<f64> = v.collect();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn median(s: &[f64]) -> f64 {
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted `s`.
fn pct(s: &[f64], p: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn fmt_ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

struct Stat {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
}

impl Stat {
    fn of(r: &Results) -> Stat {
        Stat {
            wall: sorted(r.samples.iter().map(|s| s.wall_ms)),
            cpu: sorted(r.samples.iter().map(|s| s.cpu_ms)),
            rss: sorted(r.samples.iter().map(|s| s.rss_kib / 1024.0)),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(LAUNCH) {
        std::process::exit(launcher(&args[2..]));
    }
    let agent_bin = args
        .get(1)
        .cloned()
        .expect("usage: rapidpro-bench-agents <rapidpro-agent> [rounds]");
    let agent_bin = fs::canonicalize(&agent_bin)
        .unwrap_or_else(|e| panic!("{agent_bin}: {e}"))
        .display()
        .to_string();
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(31);
    let me = std::env::current_exe().expect("own path");
    install_teardown();

    // Before anything runs: the load average is the machine's.
    let recorder = Recorder::start(bench::Kind::Agents, &args);
    let machine = recorder.describe();
    eprintln!("bench: starting PostgreSQL primary + standby and Redis master + replica");
    let pair = Pair::new("bench_agents");
    if let Ok(mut g) = TEARDOWN.lock() {
        *g = Some((pair.nodes.clone(), pair.dir.path().to_path_buf()));
    }
    let root = pair.dir.path().to_path_buf();
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    let cib_ours = cib_for(&root.join("cib-stack"), "stack", "rapidpro", "stack");
    start_pair(&pair, &agent_bin, &cib_ours);

    let shims = root.join("shims");
    make_shims(&shims);
    for n in [n1, n2] {
        let own = n.dir.join("pgsql-ra");
        fs::create_dir_all(&own).expect("pgsql-ra dir");
        fs::copy(
            n.pgdata.join("postgresql.conf"),
            own.join("postgresql.conf"),
        )
        .expect("copy postgresql.conf");
    }
    let anchors = Anchors {
        shims: &shims,
        path: format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", shims.display()),
        root: &root,
    };
    let cib_paf = cib_for(&root.join("cib-paf"), "pgsqld", "heartbeat", "pgsqlms");
    let cib_pgsql = cib_for(&root.join("cib-pgsql"), "pgsql", "heartbeat", "pgsql");
    let cib_redis = cib_for(&root.join("cib-redis"), "redis", "heartbeat", "redis");
    let pg = user_ids(PG_USER);
    let psql = format!("{PG_BINDIR}/psql");
    let sock = n1.pg_socket_dir.display().to_string();
    let port = n1.pgport.to_string();
    let rsock = n1.redis_socket.display().to_string();

    let cases = vec![
        ours_case(&agent_bin, n1, n1, Side::Primary, &cib_ours),
        ours_case(&agent_bin, n1, n2, Side::Standby, &cib_ours),
        anchors.paf(n1, Side::Primary, &cib_paf),
        anchors.paf(n2, Side::Standby, &cib_paf),
        anchors.pgsql(n1, Side::Primary, &cib_pgsql),
        anchors.pgsql(n2, Side::Standby, &cib_pgsql),
        anchors.redis(n1, Side::Primary, &cib_redis),
        anchors.redis(n2, Side::Standby, &cib_redis),
        floor(
            "floor: psql -Atc 'select pg_is_in_recovery()'",
            &psql,
            &[
                "-X",
                "-Atc",
                "select pg_is_in_recovery()",
                "-h",
                &sock,
                "-p",
                &port,
                "-d",
                "postgres",
            ],
            Path::new("/"),
            Some(pg),
        ),
        floor(
            "floor: redis-cli info replication",
            REDIS_CLI,
            &["-s", &rsock, "info", "replication"],
            &root,
            None,
        ),
        floor("floor: /bin/true", "/bin/true", &[], &root, None),
    ];
    let log = root.join("last-run.log");
    let mut results: Vec<Results> = cases.iter().map(|_| Results::default()).collect();

    // Warm-up: one monitor each, primaries first, so that every score and
    // node attribute an agent sets is set, as in a running cluster.
    eprintln!("bench: warm-up monitors");
    for _ in 0..2 {
        for c in &cases {
            c.measure(&me, &log);
        }
    }
    eprintln!("bench: strace census (untimed)");
    for (i, c) in cases.iter().enumerate() {
        results[i].census = Some(c.trace(&root.join(format!("census-{i}")), &shims));
    }
    eprintln!(
        "bench: {rounds} rounds of {} cases, interleaved",
        cases.len()
    );
    // The order within a round: the primary-side cases, then the standby
    // side, so that no case directly follows another run of its own program
    // (which would find it warm in the CPU caches).
    let order: Vec<usize> = (0..cases.len())
        .filter(|&i| !is_standby_side(&cases[i]))
        .chain((0..cases.len()).filter(|&i| is_standby_side(&cases[i])))
        .collect();
    let pause = std::env::var(PAUSE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default();
    for round in 1..=rounds {
        for &i in &order {
            let c = &cases[i];
            std::thread::sleep(pause);
            let (s, output) = c.measure(&me, &log);
            if s.code != c.expected && results[i].unexpected.len() < 3 {
                results[i].unexpected.push(format!(
                    "round {round}: exit {} (expected {})\n{}",
                    s.code,
                    c.expected,
                    output.trim_end()
                ));
            }
            results[i].samples.push(s);
        }
        if round % 10 == 0 {
            eprintln!("bench: round {round}/{rounds}");
        }
    }

    // meta-data of our agent, and of the anchors for comparison.
    let md_runs = rounds.max(30);
    let mut md: Vec<(String, Results)> = Vec::new();
    for c in &cases[..8] {
        if matches!(
            c.kind,
            Kind::Anchor(Side::Standby) | Kind::Ours(Side::Standby)
        ) {
            continue;
        }
        let mut mc = c.clone();
        mc.args = vec!["meta-data".into()];
        mc.expected = 0;
        let name = c.label.split(',').next().unwrap_or(&c.label).to_string();
        md.push((name, Results::default()));
        let runs = if matches!(c.kind, Kind::Ours(_)) {
            md_runs
        } else {
            rounds
        };
        let idx = md.len() - 1;
        for _ in 0..runs {
            let (s, _) = mc.measure(&me, &log);
            md[idx].1.samples.push(s);
        }
    }

    let shown_bin = std::env::current_dir()
        .ok()
        .and_then(|d| {
            Path::new(&agent_bin)
                .strip_prefix(d)
                .ok()
                .map(Path::to_path_buf)
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| agent_bin.clone());
    let tables = report(&machine, rounds, &cases, &results, &md, &shown_bin);
    println!();
    print!("{tables}");
    match recorder.finish(raw(rounds, &cases, &results, &md), &tables) {
        Ok(Some((json, md))) => {
            eprintln!("bench: stored {} and {}", json.display(), md.display())
        }
        Ok(None) => eprintln!("bench: not stored ({} unset)", bench::RESULTS_ENV),
        Err(e) => eprintln!("bench: could not store the run: {e}"),
    }
    if std::env::var_os(HOLD_ENV).is_some() {
        // For profiling by hand: each case's environment is in case-<i>.env.
        for (i, c) in cases.iter().enumerate() {
            let mut text = String::new();
            for (k, v) in &c.env {
                let _ = writeln!(text, "{k}={v}");
            }
            let _ = fs::write(root.join(format!("case-{i}.env")), text);
        }
        eprintln!(
            "bench: {HOLD_ENV} set: servers left running in {}; Ctrl-C tears down",
            root.display()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    drop(pair);
    if let Ok(mut g) = TEARDOWN.lock() {
        *g = None;
    }
}

/// Every measured sample and the census of every case, for the stored run.
fn raw(rounds: usize, cases: &[Case], results: &[Results], md: &[(String, Results)]) -> Value {
    let samples = |r: &Results| -> Vec<Value> {
        r.samples
            .iter()
            .map(|s| json!({"wall_ms": s.wall_ms, "cpu_ms": s.cpu_ms, "rss_kib": s.rss_kib, "exit": s.code}))
            .collect()
    };
    let monitor: Vec<Value> = cases
        .iter()
        .zip(results)
        .map(|(c, r)| {
            let census = r.census.as_ref().map(|c| {
                json!({
                    "exit": c.code,
                    "execs": c.execs,
                    "forks": c.forks,
                    "daemon_calls": c.daemon_calls,
                    "programs": c.programs,
                    "cluster_calls": c.cluster_calls.iter()
                        .map(|((call, how), n)| json!({"call": call, "answered": how, "count": n}))
                        .collect::<Vec<_>>(),
                })
            });
            json!({
                "label": c.label,
                "kind": format!("{:?}", c.kind),
                "program": c.program,
                "args": c.args,
                "expected_exit": c.expected,
                "samples": samples(r),
                "census": census,
                "unexpected": r.unexpected,
            })
        })
        .collect();
    let meta_data: Vec<Value> = md
        .iter()
        .map(|(name, r)| json!({"label": name, "samples": samples(r)}))
        .collect();
    json!({
        "rounds": rounds,
        "run_order": run_order_note(),
        "ipc_ms_per_daemon_call": IPC_MS,
        "monitor": monitor,
        "meta_data": meta_data,
    })
}

fn run_order_note() -> String {
    let pause = std::env::var(PAUSE_ENV).unwrap_or_default();
    format!(
        "run order in each round: the primary-side cases, then the standby side; runs back to back{}",
        if pause.is_empty() || pause == "0" {
            String::new()
        } else {
            format!(", each after {pause} ms idle ({PAUSE_ENV})")
        }
    )
}

fn report(
    machine: &str,
    rounds: usize,
    cases: &[Case],
    results: &[Results],
    md: &[(String, Results)],
    agent_bin: &str,
) -> String {
    let mut o = String::new();
    let stats: Vec<Stat> = results.iter().map(Stat::of).collect();
    let ours = |side: Side| {
        cases
            .iter()
            .position(|c| c.kind == Kind::Ours(side))
            .expect("our case")
    };
    let (op, os) = (ours(Side::Primary), ours(Side::Standby));
    let psql_i = cases
        .iter()
        .position(|c| c.label.starts_with("floor: psql"))
        .expect("psql floor");

    out!(
        o,
        "#### bench/agents: monitor, {rounds} rounds, interleaved round-robin"
    );
    out!(o, "{machine}");
    out!(o, "agent under test: {agent_bin}");
    out!(o, "{}", run_order_note());
    out!(o,
        "\nmedian (p10–p90); peak RSS = ru_maxrss from wait4: the largest process of the tree (median, max); \
         processes = per monitor, from one strace run: execve / process-creating fork or clone"
    );
    out!(o,
        "| monitor | wall ms | CPU ms (user+sys, tree) | peak RSS MiB | processes (execve / forks) | exit codes | wall: this / ours | CPU: this / ours |"
    );
    out!(o, "|---|---|---|---|---|---|---|---|");
    for (i, c) in cases.iter().enumerate() {
        let s = &stats[i];
        let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
        for x in &results[i].samples {
            *codes.entry(x.code).or_default() += 1;
        }
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        let procs = results[i]
            .census
            .as_ref()
            .map(|c| format!("{} / {}", c.execs, c.forks))
            .unwrap_or_default();
        let (rw, rc) = match c.kind {
            Kind::Anchor(side) => {
                let o = if side == Side::Primary { op } else { os };
                (
                    format!("{:.1}×", median(&s.wall) / median(&stats[o].wall)),
                    format!("{:.1}×", median(&s.cpu) / median(&stats[o].cpu)),
                )
            }
            Kind::Floor => (
                format!("ours {:.2}×", median(&stats[op].wall) / median(&s.wall)),
                String::new(),
            ),
            Kind::Ours(_) => ("1".into(), "1".into()),
        };
        out!(
            o,
            "| {} | {} ({}–{}) | {} ({}–{}) | {:.1} (max {:.1}) | {procs} | {} | {rw} | {rc} |",
            c.label,
            fmt_ms(median(&s.wall)),
            fmt_ms(pct(&s.wall, 10.0)),
            fmt_ms(pct(&s.wall, 90.0)),
            fmt_ms(median(&s.cpu)),
            fmt_ms(pct(&s.cpu, 10.0)),
            fmt_ms(pct(&s.cpu, 90.0)),
            median(&s.rss),
            s.rss.last().copied().unwrap_or(f64::NAN),
            codes.join(" ")
        );
    }
    // Our one monitor covers PostgreSQL and Redis; the anchors need two.
    let idx = |label: &str| cases.iter().position(|c| c.label == label);
    for (side, paf, redis) in [
        (
            Side::Primary,
            "PAF pgsqlms, primary",
            "heartbeat/redis, master",
        ),
        (
            Side::Standby,
            "PAF pgsqlms, standby",
            "heartbeat/redis, replica",
        ),
    ] {
        if let (Some(a), Some(b)) = (idx(paf), idx(redis)) {
            let ours = if side == Side::Primary { op } else { os };
            let w = median(&stats[a].wall) + median(&stats[b].wall);
            let cpu = median(&stats[a].cpu) + median(&stats[b].cpu);
            out!(o,
                "| PAF + heartbeat/redis, {} (sum of medians: what our one monitor replaces) | {} | {} | | | | {:.1}× | {:.1}× |",
                side_name(side, false),
                fmt_ms(w),
                fmt_ms(cpu),
                w / median(&stats[ours].wall),
                cpu / median(&stats[ours].cpu)
            );
        }
    }

    out!(o, "\n#### How each action's tool calls were satisfied (strace census of one steady-state monitor)");
    out!(o,
        "| monitor | exit | daemon calls | wall ms with a live cluster, estimated (median + calls × {IPC_MS:.0} ms) | programs executed (count) | Pacemaker tool calls: how answered (count) |"
    );
    out!(o, "|---|---|---|---|---|---|");
    for (i, c) in cases.iter().enumerate() {
        let Some(cen) = &results[i].census else {
            continue;
        };
        let progs: Vec<String> = cen
            .programs
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let calls: Vec<String> = cen
            .cluster_calls
            .iter()
            .map(|((call, how), n)| format!("`{call}`: {how} ({n})"))
            .collect();
        let live = median(&stats[i].wall) + cen.daemon_calls as f64 * IPC_MS;
        out!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            c.label,
            cen.code,
            cen.daemon_calls,
            if cen.daemon_calls > 0 {
                fmt_ms(live)
            } else {
                String::new()
            },
            progs.join(", "),
            if calls.is_empty() {
                "none".to_string()
            } else {
                calls.join("; ")
            }
        );
    }
    out!(o,
        "\nThe programs include the action itself. Daemon calls: Pacemaker tool calls that talk to a daemon in a \
         live cluster (crm_attribute, crm_resource, crm_mon, crm_node, attrd_updater, ...; crm_master is a shell \
         wrapper whose crm_attribute is counted). Shims: `crm_node` (-n, --partition, -l, -q answered for a \
         2-node cluster node1/node2) and `uname -n` (answers OCF_RESKEY_CRM_meta_on_node), placed first on PATH \
         and in HA_SBIN_DIR for the anchors only; every other Pacemaker tool is the real one, reading and \
         writing the offline CIB named by CIB_file. A live cluster adds an IPC round trip to each daemon call \
         (about {IPC_MS:.0} ms each on this machine), so the anchors' measured figures are lower bounds."
    );

    out!(o, "\n#### meta-data");
    out!(
        o,
        "| agent | runs | wall ms median (p10–p90) | CPU ms | peak RSS MiB |"
    );
    out!(o, "|---|---|---|---|---|");
    for (name, r) in md {
        let s = Stat::of(r);
        out!(
            o,
            "| {name} | {} | {} ({}–{}) | {} | {:.1} |",
            r.samples.len(),
            fmt_ms(median(&s.wall)),
            fmt_ms(pct(&s.wall, 10.0)),
            fmt_ms(pct(&s.wall, 90.0)),
            fmt_ms(median(&s.cpu)),
            median(&s.rss)
        );
    }

    // Goals of issue 5.
    let paf_p = idx("PAF pgsqlms, primary").expect("PAF case");
    let worst = |f: &dyn Fn(&Stat) -> f64| f(&stats[op]).max(f(&stats[os]));
    let children = [op, os]
        .iter()
        .map(|&i| {
            results[i]
                .census
                .as_ref()
                .map(|c| c.execs + c.forks)
                .unwrap_or(usize::MAX)
        })
        .max()
        .unwrap_or(usize::MAX);
    let speedup = median(&stats[paf_p].wall) / median(&stats[op].wall);
    let vs_psql = worst(&|s| median(&s.wall)) / median(&stats[psql_i].wall);
    let cpu = worst(&|s| median(&s.cpu));
    let rss = worst(&|s| s.rss.last().copied().unwrap_or(f64::NAN));
    let md_ours = md
        .first()
        .map(|(_, r)| median(&Stat::of(r).wall))
        .unwrap_or(f64::NAN);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    out!(
        o,
        "\n#### Goals (issue 5), ours = the worse of primary and standby unless said"
    );
    out!(o, "| goal | measured | |");
    out!(o, "|---|---|---|");
    out!(o,
        "| monitor: no child process in steady state | {children} processes (execve + forks) | {} |",
        met(children == 0)
    );
    let paf_calls = results[paf_p]
        .census
        .as_ref()
        .map(|c| c.daemon_calls)
        .unwrap_or(0);
    let paf_live = median(&stats[paf_p].wall) + paf_calls as f64 * IPC_MS;
    out!(o,
        "| monitor: median wall ≥ 20× lower than pgsqlms on the primary | {speedup:.1}× ({} ms vs {} ms); \
         pgsqlms / psql floor: {:.1}×; with a live cluster, estimated: {:.1}× ({} ms: + {paf_calls} daemon calls × {IPC_MS:.0} ms) | {} |",
        fmt_ms(median(&stats[paf_p].wall)),
        fmt_ms(median(&stats[op].wall)),
        median(&stats[paf_p].wall) / median(&stats[psql_i].wall),
        paf_live / median(&stats[op].wall),
        fmt_ms(paf_live),
        met(speedup >= 20.0)
    );
    out!(
        o,
        "| monitor: median wall within 1.5× one psql query | {vs_psql:.2}× ({} ms vs {} ms) | {} |",
        fmt_ms(worst(&|s| median(&s.wall))),
        fmt_ms(median(&stats[psql_i].wall)),
        met(vs_psql <= 1.5)
    );
    out!(
        o,
        "| monitor: CPU < 5 ms (median) | {} ms | {} |",
        fmt_ms(cpu),
        met(cpu < 5.0)
    );
    out!(
        o,
        "| monitor: peak RSS < 10 MiB (largest of all runs) | {rss:.1} MiB | {} |",
        met(rss < 10.0)
    );
    out!(
        o,
        "| meta-data < 2 ms (median) | {} ms | {} |",
        fmt_ms(md_ours),
        met(md_ours < 2.0)
    );

    let mut any = false;
    for (i, c) in cases.iter().enumerate() {
        for u in &results[i].unexpected {
            if !any {
                out!(
                    o,
                    "\n#### Unexpected exit codes (first 3 per case, with the output)"
                );
                any = true;
            }
            out!(o, "--- {}: {u}", c.label);
        }
    }
    if !any {
        out!(
            o,
            "\nEvery run exited with the expected code (8 on the primary/master, 0 elsewhere)."
        );
    }
    o
}
