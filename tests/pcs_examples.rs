//! The cluster configuration examples of `pcs-examples/`: the pcs and crmsh
//! scripts applied to empty CIB files, checked by `crm_verify` and by XPath
//! on the result, and the sandbox fence agent's protocol.
//!
//! pcs and crmsh refuse a resource whose agent they cannot find, and
//! Pacemaker finds OCF agents only under its compiled-in directory
//! (`/usr/lib/ocf/resource.d`; `OCF_ROOT` is ignored) and fence agents only in
//! `/usr/sbin`. So the scripts run inside a private mount namespace (the
//! `unshare` child exits with them) where read-only overlays add
//! `rapidpro/stack` (a copy of the built agent) and `fence_rapidpro_sandbox`
//! to those directories, leaving the host untouched. Needs root, like the
//! rest of the integration tests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every command of these tests runs under `timeout` with this bound.
const TIMEOUT: &str = "60";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pcs-examples")
        .canonicalize()
        .expect("pcs-examples/ beside the agent crate")
}

fn script(name: &str) -> PathBuf {
    examples().join(name)
}

fn fence_agent() -> PathBuf {
    examples().join("sandbox/fence_rapidpro_sandbox")
}

/// A directory under /tmp, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = PathBuf::from(format!(
            "/tmp/rapidpro-pcs-examples-{}-{}-{nanos}-{tag}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` under `timeout`, with `env` added and stdin from `stdin`.
fn run(cmd: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    // --foreground: plain `timeout` moves itself into a process group of its
    // own, and the harness's reaper (a child subreaper, see
    // tests/harness/src/reaper.rs) then takes it for an orphaned daemon and
    // reaps it before `wait` can ("No child processes").
    let mut c = Command::new("timeout");
    c.arg("--foreground")
        .arg(TIMEOUT)
        .args(cmd)
        .envs(env.iter().copied());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A machine where the agents are installed, as seen from a private mount
/// namespace: overlays of `ocf/` on /usr/lib/ocf/resource.d and `sbin/` on
/// /usr/sbin.
struct Installed {
    dir: TempDir,
}

impl Installed {
    fn new(tag: &str) -> Installed {
        let dir = TempDir::new(tag);
        let ocf = dir.path().join("ocf/rapidpro");
        fs::create_dir_all(&ocf).unwrap();
        fs::copy(env!("CARGO_BIN_EXE_rapidpro-agent"), ocf.join("stack")).unwrap();
        let sbin = dir.path().join("sbin");
        fs::create_dir(&sbin).unwrap();
        fs::copy(fence_agent(), sbin.join("fence_rapidpro_sandbox")).unwrap();
        Installed { dir }
    }

    /// Runs `cmd` in a private mount namespace with the agents installed.
    fn run(&self, cmd: &[&str], env: &[(&str, &str)]) -> Output {
        let ocf = self.dir.path().join("ocf");
        let sbin = self.dir.path().join("sbin");
        let mut args = vec![
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-euc",
            "mount -t overlay overlay -o \"lowerdir=$1:/usr/lib/ocf/resource.d\" /usr/lib/ocf/resource.d
             mount -t overlay overlay -o \"lowerdir=$2:/usr/sbin\" /usr/sbin
             shift 2
             exec \"$@\"",
            "sh",
            ocf.to_str().unwrap(),
            sbin.to_str().unwrap(),
        ];
        args.extend_from_slice(cmd);
        run(&args, env, None)
    }

    fn cib(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let out = run(&["cibadmin", "--empty"], &[], None);
        assert_success("cibadmin --empty", &out);
        fs::write(&path, &out.stdout).unwrap();
        path
    }
}

/// Evaluates an XPath expression on `file` with xmllint.
fn xpath(file: &Path, expr: &str) -> String {
    let out = run(
        &["xmllint", "--xpath", expr, file.to_str().unwrap()],
        &[],
        None,
    );
    assert_success(&format!("xmllint --xpath {expr}"), &out);
    text(&out.stdout).trim().to_string()
}

fn assert_one(file: &Path, what: &str, path: &str) {
    assert_eq!(
        xpath(file, &format!("count({path})")),
        "1",
        "{what}: expected exactly one {path} in {}",
        fs::read_to_string(file).unwrap()
    );
}

/// `crm_verify` accepts `cib` and it holds the whole rapidpro-ha configuration.
fn assert_rapidpro_cluster(cib: &Path, variant: &str) {
    let verify = run(
        &["crm_verify", "--xml-file", cib.to_str().unwrap(), "-V"],
        &[],
        None,
    );
    assert_success("crm_verify", &verify);

    let nv = |name: &str, value: &str| format!("nvpair[@name='{name}' and @value='{value}']");
    let props = "/cib/configuration/crm_config/cluster_property_set";
    assert_one(
        cib,
        "fencing on",
        &format!("{props}/{}", nv("stonith-enabled", "true")),
    );
    assert_one(
        cib,
        "priority fencing delay",
        &format!("{props}/{}", nv("priority-fencing-delay", "5s")),
    );
    // Two nodes: corosync two_node handles quorum, the default policy stays.
    assert_eq!(
        xpath(
            cib,
            &format!("count({props}/nvpair[@name='no-quorum-policy'])")
        ),
        "0"
    );

    let clone = "/cib/configuration/resources/clone[@id='stack-clone']";
    for (name, value) in [
        ("promotable", "true"),
        ("promoted-max", "1"),
        ("promoted-node-max", "1"),
        ("clone-max", "2"),
        ("notify", "true"),
        ("priority", "10"),
        ("migration-threshold", "2"),
        ("failure-timeout", "90s"),
    ] {
        assert_one(
            cib,
            "stack-clone meta",
            &format!("{clone}/meta_attributes/{}", nv(name, value)),
        );
    }
    let stack = format!(
        "{clone}/primitive[@id='stack' and @class='ocf' and @provider='rapidpro' and @type='stack']"
    );
    assert_one(cib, "the stack primitive in the clone", &stack);
    for (name, value) in [
        ("primary_host", "10.172.20.200"),
        ("pgdata", "/srv/pg"),
        ("rewind", "true"),
    ] {
        assert_one(
            cib,
            "stack parameters",
            &format!("{stack}/instance_attributes/{}", nv(name, value)),
        );
    }
    for (op, timeout) in [
        ("start", "120s"),
        ("stop", "120s"),
        ("promote", "60s"),
        ("demote", "120s"),
        ("notify", "60s"),
    ] {
        assert_one(
            cib,
            "stack operation timeouts",
            &format!("{stack}/operations/op[@name='{op}' and @timeout='{timeout}']"),
        );
    }
    let monitor = |role: &str| {
        xpath(
            cib,
            &format!(
                "string({stack}/operations/op[@name='monitor' and @role='{role}' and @timeout='20s']/@interval)"
            ),
        )
    };
    let (promoted, unpromoted) = (monitor("Promoted"), monitor("Unpromoted"));
    assert_eq!(promoted, "15s", "Promoted monitor");
    assert_eq!(unpromoted, "16s", "Unpromoted monitor");
    assert_ne!(promoted, unpromoted);

    let vip = "/cib/configuration/resources/primitive[@id='vip' and @class='ocf' and @provider='heartbeat' and @type='IPaddr2']";
    for (name, value) in [
        ("ip", "10.172.20.200"),
        ("cidr_netmask", "24"),
        ("nic", "eth0"),
    ] {
        assert_one(
            cib,
            "vip parameters",
            &format!("{vip}/instance_attributes/{}", nv(name, value)),
        );
    }
    for (name, value) in [("migration-threshold", "2"), ("failure-timeout", "90s")] {
        assert_one(
            cib,
            "vip meta",
            &format!("{vip}/meta_attributes/{}", nv(name, value)),
        );
        assert_one(
            cib,
            "resource defaults",
            &format!(
                "/cib/configuration/rsc_defaults/meta_attributes/{}",
                nv(name, value)
            ),
        );
    }
    assert_one(
        cib,
        "vip monitor",
        &format!("{vip}/operations/op[@name='monitor' and @interval='10s']"),
    );

    let constraints = "/cib/configuration/constraints";
    assert_one(
        cib,
        "vip with the Promoted instance",
        &format!(
            "{constraints}/rsc_colocation[@rsc='vip' and @with-rsc='stack-clone' \
             and @with-rsc-role='Promoted' and @score='INFINITY']"
        ),
    );
    assert_one(
        cib,
        "promote, then start the vip (one way)",
        &format!(
            "{constraints}/rsc_order[@first='stack-clone' and @first-action='promote' \
             and @then='vip' and @then-action='start' and @kind='Mandatory' \
             and @symmetrical='false']"
        ),
    );
    assert_one(
        cib,
        "demote, then stop the vip (one way), so standbys get the shutdown checkpoint",
        &format!(
            "{constraints}/rsc_order[@first='stack-clone' and @first-action='demote' \
             and @then='vip' and @then-action='stop' and @kind='Mandatory' \
             and @symmetrical='false']"
        ),
    );

    let stonith = "/cib/configuration/resources/primitive[@class='stonith']";
    match variant {
        "production" => {
            for (node, address) in [("sms1", "192.0.2.11"), ("sms2", "192.0.2.12")] {
                let device = format!(
                    "{stonith}[@id='fence-{node}' and @type='fence_ipmilan']\
                     [instance_attributes/{}]",
                    nv("pcmk_host_list", node)
                );
                assert_one(cib, "one fence_ipmilan device per node", &device);
                assert_one(
                    cib,
                    "fence device address from IPMI_<node>_ADDR",
                    &format!("{device}/instance_attributes/{}", nv("ip", address)),
                );
            }
            assert_eq!(xpath(cib, &format!("count({stonith})")), "2");
        }
        "sandbox" => {
            assert_one(
                cib,
                "the sandbox fence device",
                &format!(
                    "{stonith}[@id='fence-sandbox' and @type='fence_rapidpro_sandbox']\
                     [instance_attributes/{}]",
                    nv("pcmk_host_list", "sms1 sms2")
                ),
            );
            assert_eq!(xpath(cib, &format!("count({stonith})")), "1");
        }
        _ => unreachable!(),
    }
}

/// The environment of every script run: the defaults, plus stack parameters
/// and (used by production only) IPMI addresses.
const ENV: &[(&str, &str)] = &[
    ("STACK_PARAMS", "pgdata=/srv/pg rewind=true"),
    ("IPMI_sms1_ADDR", "192.0.2.11"),
    ("IPMI_sms1_USER", "admin"),
    ("IPMI_sms1_PASSWORD", "secret"),
    ("IPMI_sms2_ADDR", "192.0.2.12"),
    ("IPMI_sms2_USER", "admin"),
    ("IPMI_sms2_PASSWORD", "secret"),
];

fn pcs_script_builds(variant: &str) {
    let installed = Installed::new(&format!("pcs-{variant}"));
    let cib = installed.cib("cib.xml");
    let mut env = ENV.to_vec();
    env.extend([("CIB", cib.to_str().unwrap()), ("VARIANT", variant)]);
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("rapidpro-cluster.pcs.sh", &out);
    assert!(
        !text(&out.stderr).contains("--force"),
        "nothing forced with the agents installed: {}",
        text(&out.stderr)
    );
    assert_rapidpro_cluster(&cib, variant);
}

fn crm_script_builds(variant: &str) {
    let installed = Installed::new(&format!("crm-{variant}"));
    let cib = installed.cib("cib.xml");
    let mut env = ENV.to_vec();
    env.extend([("CIB_file", cib.to_str().unwrap()), ("VARIANT", variant)]);
    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm -f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = installed.dir.path().display()
    );
    let out = installed.run(&["sh", "-euc", &pipeline], &env);
    assert_success("rapidpro-cluster.crm.sh | crm -f", &out);
    assert!(
        !text(&out.stderr).contains("ERROR"),
        "crm reported errors: {}",
        text(&out.stderr)
    );
    assert_rapidpro_cluster(&cib, variant);
}

#[test]
fn pcs_script_builds_a_valid_production_cluster_in_a_cib_file() {
    pcs_script_builds("production");
}

#[test]
fn pcs_script_builds_a_valid_sandbox_cluster_in_a_cib_file() {
    pcs_script_builds("sandbox");
}

#[test]
fn crm_script_builds_a_valid_production_cluster_in_a_cib_file() {
    crm_script_builds("production");
}

#[test]
fn crm_script_builds_a_valid_sandbox_cluster_in_a_cib_file() {
    crm_script_builds("sandbox");
}

#[test]
fn pcs_script_sets_no_quorum_policy_and_clone_max_for_three_nodes() {
    let installed = Installed::new("pcs-three");
    let cib = installed.cib("cib.xml");
    let env = [
        ("CIB", cib.to_str().unwrap()),
        ("VARIANT", "sandbox"),
        ("NODES", "n1 n2 n3"),
    ];
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("rapidpro-cluster.pcs.sh", &out);
    assert_one(
        &cib,
        "no-quorum-policy",
        "//cluster_property_set/nvpair[@name='no-quorum-policy' and @value='stop']",
    );
    assert_one(
        &cib,
        "clone-max",
        "//clone[@id='stack-clone']/meta_attributes/nvpair[@name='clone-max' and @value='3']",
    );
    assert_one(
        &cib,
        "fence device",
        "//primitive[@id='fence-sandbox']/instance_attributes/nvpair[@name='pcmk_host_list' and @value='n1 n2 n3']",
    );
}

/// Runs `cmd` in a private mount namespace where /usr/lib/ocf/resource.d
/// holds only the heartbeat and pacemaker providers (bind-mounted into the
/// empty directory `dir`/ocf): ocf:rapidpro:stack is not installed, whatever
/// the host has.
fn without_stack_agent(dir: &Path, cmd: &[&str], env: &[(&str, &str)]) -> Output {
    let ocf = dir.join("ocf");
    for provider in ["heartbeat", "pacemaker"] {
        fs::create_dir_all(ocf.join(provider)).unwrap();
    }
    let mut args = vec![
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-euc",
        "for p in heartbeat pacemaker; do
                 mount --bind \"/usr/lib/ocf/resource.d/$p\" \"$1/$p\"
             done
             mount --rbind \"$1\" /usr/lib/ocf/resource.d
             shift
             exec \"$@\"",
        "sh",
        ocf.to_str().unwrap(),
    ];
    args.extend_from_slice(cmd);
    run(&args, env, None)
}

#[test]
fn pcs_script_refuses_when_the_stack_agent_is_not_installed() {
    let dir = TempDir::new("pcs-refuses");
    let cib = dir.path().join("cib.xml");
    let empty = run(&["cibadmin", "--empty"], &[], None);
    assert_success("cibadmin --empty", &empty);
    fs::write(&cib, &empty.stdout).unwrap();

    let out = without_stack_agent(
        dir.path(),
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &[("CIB", cib.to_str().unwrap())],
    );
    assert!(!out.status.success(), "refused: {out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ocf:rapidpro:stack is not installed")
            && stderr.contains("/usr/lib/ocf/resource.d/rapidpro/stack")
            && stderr.contains("FORCE=1"),
        "a clear message: {stderr}"
    );
    assert_eq!(
        fs::read(&cib).unwrap(),
        empty.stdout,
        "the CIB file is left untouched"
    );

    // FORCE=1 writes the configuration anyway (pcs --force).
    let forced = without_stack_agent(
        dir.path(),
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &[("CIB", cib.to_str().unwrap()), ("FORCE", "1")],
    );
    assert_success("FORCE=1 rapidpro-cluster.pcs.sh", &forced);
    assert_one(
        &cib,
        "forced stack-clone",
        "//clone[@id='stack-clone']/primitive[@id='stack']",
    );
}

#[test]
fn crmsh_refuses_the_crm_script_when_the_stack_agent_is_not_installed() {
    let dir = TempDir::new("crm-refuses");
    let cib = dir.path().join("cib.xml");
    let empty = run(&["cibadmin", "--empty"], &[], None);
    assert_success("cibadmin --empty", &empty);
    fs::write(&cib, &empty.stdout).unwrap();

    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm -f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = dir.path().display()
    );
    let out = without_stack_agent(
        dir.path(),
        &["sh", "-euc", &pipeline],
        &[("CIB_file", cib.to_str().unwrap())],
    );
    assert!(!out.status.success(), "refused: {out:?}");
    assert!(
        text(&out.stderr).contains("ocf:rapidpro:stack"),
        "crmsh names the missing agent: {}",
        text(&out.stderr)
    );
    assert_eq!(fs::read(&cib).unwrap(), empty.stdout, "nothing committed");
}

fn fence(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let agent = fence_agent();
    let mut cmd = vec![agent.to_str().unwrap()];
    cmd.extend_from_slice(args);
    run(&cmd, env, stdin)
}

#[test]
fn fence_agent_metadata_is_valid_xml_listing_the_fencing_actions() {
    let dir = TempDir::new("fence-metadata");
    let out = fence(&["-o", "metadata"], &[], None);
    assert_success("fence_rapidpro_sandbox -o metadata", &out);
    let file = dir.path().join("metadata.xml");
    fs::write(&file, &out.stdout).unwrap();
    let lint = run(&["xmllint", "--noout", file.to_str().unwrap()], &[], None);
    assert_success("xmllint --noout", &lint);
    assert_eq!(
        xpath(&file, "string(/resource-agent/@name)"),
        "fence_rapidpro_sandbox"
    );
    for action in [
        "on", "off", "reboot", "status", "monitor", "list", "metadata",
    ] {
        assert_one(
            &file,
            "actions",
            &format!("/resource-agent/actions/action[@name='{action}']"),
        );
    }
    assert_one(
        &file,
        "the target parameter",
        "/resource-agent/parameters/parameter[@name='plug']",
    );
    // The same on stdin, as pacemaker-fenced asks.
    let stdin = fence(&[], &[], Some("action=metadata\n"));
    assert_success("metadata on stdin", &stdin);
    assert_eq!(stdin.stdout, out.stdout);
}

/// Plays the test harness: waits for `<node>.request` in `dir`, then
/// writes `<node>.done`.
fn harness_confirms(dir: &Path, node: &str) -> thread::JoinHandle<()> {
    let request = dir.join(format!("{node}.request"));
    let done = dir.join(format!("{node}.done"));
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !request.exists() {
            assert!(
                Instant::now() < deadline,
                "no {} appeared",
                request.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        fs::write(&done, "").unwrap();
    })
}

#[test]
fn fence_agent_off_returns_once_the_harness_confirms_the_kill() {
    let dir = TempDir::new("fence-off");
    let fence_dir = dir.path().to_str().unwrap();
    let env = [("FENCE_DIR", fence_dir), ("FENCE_TIMEOUT", "20")];

    // As pacemaker-fenced calls it: options on stdin.
    let harness = harness_confirms(dir.path(), "sms2");
    let out = fence(&[], &env, Some("action=off\nport=sms2\nnodename=sms2\n"));
    harness.join().unwrap();
    assert_success("off on stdin", &out);

    // As an admin calls it: command-line flags.
    let harness = harness_confirms(dir.path(), "sms1");
    let out = fence(&["-o", "reboot", "-n", "sms1"], &env, None);
    harness.join().unwrap();
    assert_success("-o reboot -n sms1", &out);

    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "request and done files removed"
    );
}

#[test]
fn fence_agent_off_fails_when_the_harness_never_confirms() {
    let dir = TempDir::new("fence-timeout");
    let env = [
        ("FENCE_DIR", dir.path().to_str().unwrap()),
        ("FENCE_TIMEOUT", "1"),
    ];
    let start = Instant::now();
    let out = fence(&["-o", "off", "-n", "sms2"], &env, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "bounded by FENCE_TIMEOUT"
    );
    assert!(
        text(&out.stderr).contains("sms2 not fenced"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("sms2.request").exists(),
        "no stale request left for the harness"
    );
}

#[test]
fn fence_agent_monitors_the_fence_dir_and_lists_its_hosts() {
    let dir = TempDir::new("fence-monitor");
    let fence_dir = dir.path().to_str().unwrap();
    let input = format!("action=list\nfence_dir={fence_dir}\npcmk_host_list=\"sms1 sms2\"\n");
    let list = fence(&[], &[], Some(&input));
    assert_success("list", &list);
    assert_eq!(text(&list.stdout), "sms1\nsms2\n");

    let ok = fence(&["-o", "monitor"], &[("FENCE_DIR", fence_dir)], None);
    assert_success("monitor", &ok);
    let missing = dir.path().join("missing");
    let gone = fence(
        &["-o", "status"],
        &[("FENCE_DIR", missing.to_str().unwrap())],
        None,
    );
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}
