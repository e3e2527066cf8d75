//! The cluster configuration examples of `pcs-examples/`: the pcs and crmsh
//! scripts applied to empty CIB files, checked by `crm_verify` and by XPath
//! on the result (the app tier and the alert through one description both
//! tools must match), the scheduler's answer to app failures
//! (`crm_simulate`), the app tier's agents run as configured, the quorum
//! device both scripts write into a copy of corosync.conf (parsed, and the
//! same from both), the ping fallback's rule under `crm_simulate`, and the
//! sandbox fence agent's protocol.
//!
//! The production app tier's systemd units cannot exist where no systemd
//! runs: those runs are forced (pcs `FORCE=1`, `crm -F`).
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
    run_for(TIMEOUT, cmd, env, stdin)
}

/// [`run`] with another bound than [`TIMEOUT`] (seconds).
fn run_for(timeout: &str, cmd: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    // --foreground: plain `timeout` moves itself into a process group of its
    // own, and the harness's reaper (a child subreaper, see
    // tests/harness/src/reaper.rs) then takes it for an orphaned daemon and
    // reaps it before `wait` can ("No child processes").
    let mut c = Command::new("timeout");
    c.arg("--foreground")
        .arg(timeout)
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
/// /usr/sbin (the fence agent and the alert agent).
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
        // The scripts only check that the alert agent is there (pcs and crm
        // take any path): an executable stand-in does.
        let alert = sbin.join("rapidpro-alert");
        fs::write(&alert, "#!/bin/sh\nexit 0\n").unwrap();
        assert_success(
            "chmod",
            &run(&["chmod", "0755", alert.to_str().unwrap()], &[], None),
        );
        Installed { dir }
    }

    /// Runs `cmd` in a private mount namespace with the agents installed.
    fn run(&self, cmd: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_for(TIMEOUT, cmd, env)
    }

    /// [`Installed::run`] with another bound than [`TIMEOUT`] (seconds).
    fn run_for(&self, timeout: &str, cmd: &[&str], env: &[(&str, &str)]) -> Output {
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
        run_for(timeout, &args, env, None)
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
            for (node, address, password_file) in [
                ("sms1", "192.0.2.11", "/etc/pacemaker/ipmi-sms1.password"),
                ("sms2", "192.0.2.12", "/root/bmc/sms2.password"),
            ] {
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
                // The BMC password never in the CIB: fence_ipmilan reads
                // IPMI_<node>_PASSWORD_FILE through password_script.
                assert_one(
                    cib,
                    "password_script reading IPMI_<node>_PASSWORD_FILE",
                    &format!(
                        "{device}/instance_attributes/{}",
                        nv("password_script", &format!("cat {password_file}"))
                    ),
                );
                assert_eq!(
                    xpath(
                        cib,
                        &format!("count({device}//nvpair[@name='password' or @name='passwd'])")
                    ),
                    "0",
                    "no password parameter on fence-{node}"
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

/// The alert agent's options given to every script run: `sms_url` holds the
/// characters that quoting could lose (`?`, `&`, `=`, `{`, `}`).
const ALERT_OPTIONS: &str = "smtp_server=192.0.2.25:25 mail_from=ha@example.org \
     sms_url=http://192.0.2.90:90/send?to={to}&text={text} sms_method=GET \
     send_timeout=5 deadline=20";

/// Two recipients: the first with an email address and a phone number.
const ALERT_RECIPIENTS: &str = "oncall@example.org,+255700000001 +255700000002";

/// The environment of every script run: the defaults, plus stack parameters,
/// (used by production only) IPMI addresses and the files holding the BMC
/// passwords (sms1's at the default path), and the alert.
const ENV: &[(&str, &str)] = &[
    ("STACK_PARAMS", "pgdata=/srv/pg rewind=true"),
    ("IPMI_sms1_ADDR", "192.0.2.11"),
    ("IPMI_sms1_USER", "admin"),
    ("IPMI_sms2_ADDR", "192.0.2.12"),
    ("IPMI_sms2_USER", "admin"),
    ("IPMI_sms2_PASSWORD_FILE", "/root/bmc/sms2.password"),
    ("ALERT_RECIPIENTS", ALERT_RECIPIENTS),
    ("ALERT_OPTIONS", ALERT_OPTIONS),
];

/// The stand-in app as the sandbox variant expects it on a node: `APP_DIR`
/// with `bin/` (the three launchers and `check-tcp`), `STANDIN_ETC` with
/// `standin.env` and `nginx.conf`, and the run and log directories.
///
/// The launchers are stubs that behave as `app/bin/` promises where the
/// agents can tell: each sources `$RAPIDPRO_STANDIN_ENV`, says so on stdout
/// and execs a long-running process; the uwsgi one listens on
/// `STANDIN_UWSGI_SOCKET` only after 2 s, a slow start. nginx.conf is a real
/// configuration answering `GET /` like the stand-in (`rapidpro stand-in`)
/// on 127.0.0.1:80, and 502 on `/bad`.
struct Standin {
    app_dir: PathBuf,
    etc: PathBuf,
    run_dir: PathBuf,
    log_dir: PathBuf,
}

impl Standin {
    fn new(dir: &Path) -> Standin {
        let app_dir = dir.join("standin");
        let etc = dir.join("standin-etc");
        let run_dir = dir.join("standin-run");
        let log_dir = dir.join("standin-log");
        for d in [&app_dir.join("bin"), &etc, &run_dir, &log_dir] {
            fs::create_dir_all(d).unwrap();
        }
        let launcher = |name: &str, exec: &str| {
            format!(
                "#!/bin/sh\n\
                 . \"${{RAPIDPRO_STANDIN_ENV:-/etc/rapidpro-standin/standin.env}}\"\n\
                 echo \"{name} sourced $RAPIDPRO_STANDIN_ENV\"\n\
                 {exec}\n"
            )
        };
        let python_listen = "import socket, sys, time\n\
             host, port = sys.argv[1].rsplit(\":\", 1)\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind((host, int(port)))\n\
             s.listen()\n\
             time.sleep(600)";
        let files = [
            (
                "rapidpro-standin-uwsgi",
                launcher(
                    "uwsgi",
                    &format!(
                        "sleep 2\nexec /usr/bin/python3 -c '{python_listen}' \"$STANDIN_UWSGI_SOCKET\""
                    ),
                ),
            ),
            (
                "rapidpro-standin-celery",
                launcher("celery", "exec sleep 600"),
            ),
            (
                "rapidpro-standin-celerybeat",
                launcher("celerybeat", "exec sleep 600"),
            ),
            (
                "check-tcp",
                "#!/bin/sh\n\
                 exec /usr/bin/python3 -c 'import socket, sys\n\
                 host, port = sys.argv[1].rsplit(\":\", 1)\n\
                 socket.create_connection((host, int(port)), 2).close()' \"$1\" 2>/dev/null\n"
                    .to_owned(),
            ),
        ];
        for (name, body) in files {
            let path = app_dir.join("bin").join(name);
            fs::write(&path, body).unwrap();
            let chmod = run(&["chmod", "0755", path.to_str().unwrap()], &[], None);
            assert_success("chmod", &chmod);
        }
        fs::write(
            etc.join("standin.env"),
            "STANDIN_UWSGI_SOCKET=127.0.0.1:3031\n",
        )
        .unwrap();
        let (run_s, log_s) = (run_dir.display(), log_dir.display());
        fs::write(
            etc.join("nginx.conf"),
            format!(
                "pid {run_s}/nginx.pid;\n\
                 error_log {log_s}/nginx-error.log;\n\
                 events {{}}\n\
                 http {{\n\
                 \x20   access_log off;\n\
                 \x20   client_body_temp_path {run_s}/client_body;\n\
                 \x20   proxy_temp_path {run_s}/proxy;\n\
                 \x20   fastcgi_temp_path {run_s}/fastcgi;\n\
                 \x20   uwsgi_temp_path {run_s}/uwsgi;\n\
                 \x20   scgi_temp_path {run_s}/scgi;\n\
                 \x20   server {{\n\
                 \x20       listen 127.0.0.1:80;\n\
                 \x20       default_type text/plain;\n\
                 \x20       location / {{ return 200 \"rapidpro stand-in (stub)\\n\"; }}\n\
                 \x20       location /bad {{ return 502 \"bad gateway\\n\"; }}\n\
                 \x20   }}\n\
                 }}\n"
            ),
        )
        .unwrap();
        Standin {
            app_dir,
            etc,
            run_dir,
            log_dir,
        }
    }

    /// The script variables pointing at it.
    fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("APP_DIR", self.app_dir.to_str().unwrap()),
            ("STANDIN_ETC", self.etc.to_str().unwrap()),
        ]
    }
}

/// Runs rapidpro-cluster.pcs.sh with the agents installed; production gets
/// FORCE=1: its systemd units cannot be installed on a test machine, where no
/// systemd runs (and pcs asks systemd about them).
fn pcs_script_builds(variant: &str) {
    let installed = Installed::new(&format!("pcs-{variant}"));
    let standin = Standin::new(installed.dir.path());
    let cib = installed.cib("cib.xml");
    let mut env = ENV.to_vec();
    env.extend([("CIB", cib.to_str().unwrap()), ("VARIANT", variant)]);
    match variant {
        "production" => env.push(("FORCE", "1")),
        _ => env.extend(standin.env()),
    }
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("rapidpro-cluster.pcs.sh", &out);
    let stderr = text(&out.stderr);
    match variant {
        "production" => assert!(
            stderr.contains(
                "systemd units missing here: rapidpro.service celery.service \
                 celerybeat.service: creating them with --force (FORCE=1)"
            ) && !stderr.contains("stack is not installed"),
            "only the systemd units forced: {stderr}"
        ),
        _ => assert!(
            !stderr.contains("--force") && !stderr.contains("WARNING"),
            "nothing forced with the agents and the stand-in installed: {stderr}"
        ),
    }
    assert_rapidpro_cluster(&cib, variant);
    assert_eq!(
        describe_app_and_alert(&cib),
        expected_app_and_alert(variant, &standin),
        "the app tier and the alert"
    );
}

/// Runs rapidpro-cluster.crm.sh into crm with the agents installed;
/// production gets `crm -F`: crmsh finds no systemd units on a test machine.
fn crm_script_builds(variant: &str) {
    let installed = Installed::new(&format!("crm-{variant}"));
    let standin = Standin::new(installed.dir.path());
    let cib = installed.cib("cib.xml");
    let mut env = ENV.to_vec();
    env.extend([("CIB_file", cib.to_str().unwrap()), ("VARIANT", variant)]);
    let force = match variant {
        "production" => "-F ",
        _ => {
            env.extend(standin.env());
            ""
        }
    };
    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm {force}-f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = installed.dir.path().display()
    );
    let out = installed.run(&["sh", "-euc", &pipeline], &env);
    assert_success("rapidpro-cluster.crm.sh | crm -f", &out);
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARNING: rapidpro-cluster"))
        .collect();
    match variant {
        // crmsh only misses the systemd units' meta-data.
        "production" => assert!(
            errors.iter().all(|l| l.contains("systemd:")),
            "crm reported errors beyond the systemd units: {stderr}"
        ),
        _ => assert!(errors.is_empty(), "crm reported errors: {stderr}"),
    }
    assert_rapidpro_cluster(&cib, variant);
    assert_eq!(
        describe_app_and_alert(&cib),
        expected_app_and_alert(variant, &standin),
        "the app tier and the alert"
    );
}

/// Every `attr` of the nodes `nodes` selects, in document order.
fn strings(file: &Path, nodes: &str, attr: &str) -> Vec<String> {
    let count: usize = xpath(file, &format!("count({nodes})")).parse().unwrap();
    (1..=count)
        .map(|i| xpath(file, &format!("string(({nodes})[{i}]/{attr})")))
        .collect()
}

/// `name=value` of each nvpair under `parent`.
fn nvpairs(file: &Path, parent: &str) -> Vec<String> {
    let nodes = format!("{parent}/nvpair");
    let names = strings(file, &nodes, "@name");
    let values = strings(file, &nodes, "@value");
    names
        .iter()
        .zip(&values)
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

/// The app group, its constraints and the alerts of `cib`, one fact a line,
/// sorted, without the ids each tool makes up and with Pacemaker's defaults
/// spelled out (interval `0s` = `0`, no `rsc-role` = Started, no
/// `symmetrical` = true). pcs and crm results are compared through it.
fn describe_app_and_alert(cib: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let group = "/cib/configuration/resources/group[@id='app']";
    let members = strings(cib, &format!("{group}/primitive"), "@id");
    lines.push(format!("group app: {}", members.join(" ")));
    for m in &members {
        let p = format!("{group}/primitive[@id='{m}']");
        let attr = |a: &str| xpath(cib, &format!("string({p}/@{a})"));
        lines.push(format!(
            "{m}: {}:{}:{}",
            attr("class"),
            attr("provider"),
            attr("type")
        ));
        for nv in nvpairs(cib, &format!("{p}/instance_attributes")) {
            lines.push(format!("{m} param {nv}"));
        }
        for nv in nvpairs(cib, &format!("{p}/meta_attributes")) {
            lines.push(format!("{m} meta {nv}"));
        }
        let ops = format!("{p}/operations/op");
        let count: usize = xpath(cib, &format!("count({ops})")).parse().unwrap();
        for i in 1..=count {
            let op = format!("({ops})[{i}]");
            let attr = |a: &str| xpath(cib, &format!("string({op}/@{a})"));
            let interval = match attr("interval").as_str() {
                "0s" => "0".to_owned(),
                other => other.to_owned(),
            };
            let mut line = format!(
                "{m} op {} interval={interval} timeout={}",
                attr("name"),
                attr("timeout")
            );
            let role = attr("role");
            if !role.is_empty() {
                line.push_str(&format!(" role={role}"));
            }
            for nv in nvpairs(cib, &format!("{op}/instance_attributes")) {
                line.push_str(&format!(" {nv}"));
            }
            lines.push(line);
        }
    }

    let constraints = "/cib/configuration/constraints";
    let colocations = format!("{constraints}/rsc_colocation[@rsc='app' or @with-rsc='app']");
    let count: usize = xpath(cib, &format!("count({colocations})"))
        .parse()
        .unwrap();
    for i in 1..=count {
        let c = format!("({colocations})[{i}]");
        let attr = |a: &str| xpath(cib, &format!("string({c}/@{a})"));
        let role = |a: &str| match attr(a).as_str() {
            "" => "Started".to_owned(),
            r => r.to_owned(),
        };
        lines.push(format!(
            "colocation {}:{} with {}:{} {}",
            attr("rsc"),
            role("rsc-role"),
            attr("with-rsc"),
            role("with-rsc-role"),
            attr("score")
        ));
    }
    let orders = format!("{constraints}/rsc_order[@first='app' or @then='app']");
    let count: usize = xpath(cib, &format!("count({orders})")).parse().unwrap();
    for i in 1..=count {
        let o = format!("({orders})[{i}]");
        let attr = |a: &str| xpath(cib, &format!("string({o}/@{a})"));
        let symmetrical = match attr("symmetrical").as_str() {
            "" => "true".to_owned(),
            s => s.to_owned(),
        };
        lines.push(format!(
            "order {}:{} then {}:{} {} symmetrical={symmetrical}",
            attr("first"),
            attr("first-action"),
            attr("then"),
            attr("then-action"),
            attr("kind")
        ));
    }

    let alerts = "/cib/configuration/alerts/alert";
    for id in strings(cib, alerts, "@id") {
        let a = format!("{alerts}[@id='{id}']");
        lines.push(format!(
            "alert {id} {}",
            xpath(cib, &format!("string({a}/@path)"))
        ));
        for nv in nvpairs(cib, &format!("{a}/meta_attributes")) {
            lines.push(format!("alert {id} meta {nv}"));
        }
        for nv in nvpairs(cib, &format!("{a}/instance_attributes")) {
            lines.push(format!("alert {id} option {nv}"));
        }
        let recipients = format!("{a}/recipient");
        let ids = strings(cib, &recipients, "@id");
        let values = strings(cib, &recipients, "@value");
        for (rid, value) in ids.iter().zip(&values) {
            lines.push(format!("alert {id} recipient {rid} {value}"));
        }
    }
    lines.sort();
    lines
}

/// What [`describe_app_and_alert`] must read in a CIB built with [`ENV`]
/// (and, for the sandbox, `standin`'s directories).
fn expected_app_and_alert(variant: &str, standin: &Standin) -> Vec<String> {
    let mut lines = vec!["group app: uwsgi celery celerybeat nginx".to_owned()];
    let members = [
        ("uwsgi", "rapidpro"),
        ("celery", "celery"),
        ("celerybeat", "celerybeat"),
    ];
    let app_dir = standin.app_dir.display();
    let etc = standin.etc.display();
    for (m, unit) in members {
        match variant {
            "production" => lines.push(format!("{m}: systemd::{unit}")),
            _ => {
                lines.push(format!("{m}: ocf:heartbeat:anything"));
                lines.extend([
                    format!("{m} param binfile=/usr/bin/env"),
                    format!(
                        "{m} param cmdline_options=RAPIDPRO_STANDIN_ENV={etc}/standin.env \
                         {app_dir}/bin/rapidpro-standin-{m}"
                    ),
                    format!("{m} param pidfile=/run/rapidpro-standin/pcmk-{m}.pid"),
                    format!("{m} param logfile=/var/log/rapidpro-standin/{m}.stdout"),
                    format!("{m} param errlogfile=/var/log/rapidpro-standin/{m}.stderr"),
                ]);
            }
        }
        lines.extend([
            format!("{m} op start interval=0 timeout=60s"),
            format!("{m} op stop interval=0 timeout=120s"),
            format!("{m} op monitor interval=10s timeout=20s"),
        ]);
    }
    if variant == "sandbox" {
        let check = format!("{app_dir}/bin/check-tcp 127.0.0.1:3031");
        lines.push(format!(
            "uwsgi param monitor_hook={check} || {{ test \"$__OCF_ACTION\" = start \
             && for n in 1 2 3 4 5 6 7 8 9 10; do sleep 1; {check} && break; done; }}"
        ));
    }
    let (configfile, url, regex) = match variant {
        "production" => (
            "/etc/nginx/nginx.conf".to_owned(),
            "http://localhost/",
            "rapidpro",
        ),
        _ => (
            format!("{etc}/nginx.conf"),
            "http://127.0.0.1/",
            "^rapidpro stand-in",
        ),
    };
    lines.extend([
        "nginx: ocf:heartbeat:nginx".to_owned(),
        format!("nginx param configfile={configfile}"),
        format!("nginx param status10url={url}"),
        format!("nginx param status10regex={regex}"),
        "nginx op start interval=0 timeout=60s".to_owned(),
        "nginx op stop interval=0 timeout=60s".to_owned(),
        "nginx op monitor interval=10s timeout=30s OCF_CHECK_LEVEL=10".to_owned(),
    ]);
    for m in ["uwsgi", "celery", "celerybeat", "nginx"] {
        lines.extend([
            format!("{m} meta migration-threshold=2"),
            format!("{m} meta failure-timeout=90s"),
        ]);
    }
    lines.extend([
        "colocation app:Started with stack-clone:Promoted INFINITY".to_owned(),
        "order stack-clone:promote then app:start Mandatory symmetrical=true".to_owned(),
        "alert rapidpro-alert /usr/sbin/rapidpro-alert".to_owned(),
        "alert rapidpro-alert meta timeout=30s".to_owned(),
        "alert rapidpro-alert recipient rapidpro-alert-recipient-1 \
         oncall@example.org,+255700000001"
            .to_owned(),
        "alert rapidpro-alert recipient rapidpro-alert-recipient-2 +255700000002".to_owned(),
    ]);
    for option in ALERT_OPTIONS.split_whitespace() {
        lines.push(format!("alert rapidpro-alert option {option}"));
    }
    lines.sort();
    lines
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

/// No app resource, constraint or alert: `app` appears nowhere.
fn assert_no_app_tier_and_no_alert(cib: &Path) {
    for (what, path) in [
        ("the app group", "//group"),
        (
            "app primitives",
            "//primitive[@id='uwsgi' or @id='celery' or @id='celerybeat' or @id='nginx']",
        ),
        (
            "app constraints",
            "//constraints/*[@rsc='app' or @with-rsc='app' or @first='app' or @then='app']",
        ),
        ("alerts", "//alerts/alert"),
    ] {
        assert_eq!(xpath(cib, &format!("count({path})")), "0", "{what}");
    }
}

#[test]
fn app_no_and_no_alert_recipients_leave_the_app_tier_and_alerts_out() {
    let installed = Installed::new("app-no");
    // Nor is APP_DIR looked at: the stand-in is not installed here.
    let common = [
        ("VARIANT", "sandbox"),
        ("APP", "no"),
        ("APP_DIR", "/nonexistent"),
        ("STACK_PARAMS", "pgdata=/srv/pg rewind=true"),
    ];

    let cib = installed.cib("pcs.xml");
    let mut env = common.to_vec();
    env.push(("CIB", cib.to_str().unwrap()));
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("APP=no rapidpro-cluster.pcs.sh", &out);
    assert_rapidpro_cluster(&cib, "sandbox");
    assert_no_app_tier_and_no_alert(&cib);

    let cib = installed.cib("crm.xml");
    let mut env = common.to_vec();
    env.push(("CIB_file", cib.to_str().unwrap()));
    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm -f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = installed.dir.path().display()
    );
    let out = installed.run(&["sh", "-euc", &pipeline], &env);
    assert_success("APP=no rapidpro-cluster.crm.sh | crm -f", &out);
    assert_rapidpro_cluster(&cib, "sandbox");
    assert_no_app_tier_and_no_alert(&cib);
}

#[test]
fn scripts_refuse_bad_app_and_alert_values_naming_the_variable() {
    let dir = TempDir::new("bad-values");
    let standin = Standin::new(dir.path());
    let cib = dir.path().join("cib.xml");
    let empty = run(&["cibadmin", "--empty"], &[], None);
    assert_success("cibadmin --empty", &empty);
    fs::write(&cib, &empty.stdout).unwrap();

    let cases: &[(&str, &str, &str)] = &[
        ("APP", "maybe", "APP must be yes or no, not 'maybe'"),
        ("APP_DIR", "opt/standin", "APP_DIR must be an absolute path"),
        (
            "APP_DIR",
            "/opt/rapid pro",
            "APP_DIR may hold only letters, digits",
        ),
        (
            "STANDIN_ETC",
            "/etc/$(true)",
            "STANDIN_ETC may hold only letters, digits",
        ),
        (
            "STANDIN_UWSGI_SOCKET",
            "/run/uwsgi.sock",
            "STANDIN_UWSGI_SOCKET must be HOST:PORT",
        ),
        (
            "NGINX_STATUS_URL",
            "https://localhost/",
            "NGINX_STATUS_URL must be an http:// URL",
        ),
        (
            "ALERT_OPTIONS",
            "smtp_server",
            "ALERT_OPTIONS must be name=value words, not 'smtp_server'",
        ),
        (
            "ALERT_OPTIONS",
            "smtp_sever=mail:25",
            "ALERT_OPTIONS: unknown option 'smtp_sever'",
        ),
        (
            "ALERT_OPTIONS",
            "deadline=45",
            "ALERT_OPTIONS: deadline=45 must stay below the alert timeout",
        ),
        (
            "ALERT_OPTIONS",
            "sms_method=PUT",
            "ALERT_OPTIONS: sms_method must be GET or POST",
        ),
        (
            "ALERT_RECIPIENTS",
            "oncall@example.org;true",
            "ALERT_RECIPIENTS: 'oncall@example.org;true' is not a comma-separated list",
        ),
        (
            "ALERT_RECIPIENTS",
            "+255700000001 +255700000001",
            "ALERT_RECIPIENTS names '+255700000001' twice",
        ),
    ];
    for &(name, value, message) in cases {
        let mut env = standin.env();
        env.extend([
            ("VARIANT", "sandbox"),
            ("ALERT_RECIPIENTS", "oncall@example.org"),
        ]);
        env.retain(|(n, _)| *n != name);
        env.push((name, value));

        let mut pcs_env = env.clone();
        pcs_env.push(("CIB", cib.to_str().unwrap()));
        let out = run(
            &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
            &pcs_env,
            None,
        );
        assert!(!out.status.success(), "pcs script refuses {name}={value}");
        assert!(
            text(&out.stderr).contains(message),
            "pcs script, {name}={value}: expected '{message}' in: {}",
            text(&out.stderr)
        );
        assert_eq!(fs::read(&cib).unwrap(), empty.stdout, "CIB untouched");

        let out = run(
            &["sh", script("rapidpro-cluster.crm.sh").to_str().unwrap()],
            &env,
            None,
        );
        assert!(!out.status.success(), "crm script refuses {name}={value}");
        assert!(
            text(&out.stderr).contains(message),
            "crm script, {name}={value}: expected '{message}' in: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "no half crm script printed");
    }
}

#[test]
fn pcs_script_refuses_an_app_tier_that_is_not_installed_unless_forced() {
    let installed = Installed::new("pcs-app-missing");
    let script = script("rapidpro-cluster.pcs.sh");
    for (variant, missing) in [
        (
            "production",
            "the systemd units of the app tier are not installed on this machine: \
             rapidpro.service celery.service celerybeat.service",
        ),
        ("sandbox", "the stand-in app is not installed here"),
    ] {
        let cib = installed.cib(&format!("{variant}.xml"));
        let before = fs::read(&cib).unwrap();
        let env = [
            ("CIB", cib.to_str().unwrap()),
            ("VARIANT", variant),
            ("APP_DIR", "/nonexistent/standin"),
        ];
        let out = installed.run(&["sh", script.to_str().unwrap()], &env);
        assert!(!out.status.success(), "{variant}: refused: {out:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(missing) && stderr.contains("APP=no") && stderr.contains("FORCE=1"),
            "{variant}: a clear message: {stderr}"
        );
        assert_eq!(fs::read(&cib).unwrap(), before, "{variant}: CIB untouched");

        let mut forced = env.to_vec();
        forced.push(("FORCE", "1"));
        let out = installed.run(&["sh", script.to_str().unwrap()], &forced);
        assert_success(&format!("{variant}: FORCE=1"), &out);
        assert_eq!(
            strings(&cib, "//group[@id='app']/primitive", "@id"),
            ["uwsgi", "celery", "celerybeat", "nginx"],
            "{variant}: forced app group"
        );
    }
}

/// `'value'` for sh.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[test]
fn sandbox_app_agents_run_the_stand_in_as_the_script_configures_them() {
    // The script's resources, run by the real heartbeat agents (as
    // pacemaker-execd would: OCF_RESKEY_<param> from the CIB) in a private
    // network namespace, where 127.0.0.1:3031 and :80 are free.
    let installed = Installed::new("live-app");
    let standin = Standin::new(installed.dir.path());
    let cib = installed.cib("cib.xml");
    let mut env = standin.env();
    env.extend([
        ("CIB", cib.to_str().unwrap()),
        ("VARIANT", "sandbox"),
        ("STANDIN_RUN_DIR", standin.run_dir.to_str().unwrap()),
        ("STANDIN_LOG_DIR", standin.log_dir.to_str().unwrap()),
    ]);
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("rapidpro-cluster.pcs.sh", &out);

    let agent = |m: &str, action: &str, check_level: &str| {
        let p = format!("//group[@id='app']/primitive[@id='{m}']");
        let kind = xpath(&cib, &format!("string({p}/@type)"));
        let mut line = format!(
            "env OCF_ROOT=/usr/lib/ocf OCF_RESOURCE_INSTANCE={m} \
             OCF_RESKEY_CRM_meta_timeout=60000 OCF_RESKEY_OCF_CHECK_LEVEL={check_level}"
        );
        for nv in nvpairs(&cib, &format!("{p}/instance_attributes")) {
            line.push_str(&format!(" {}", sh_quote(&format!("OCF_RESKEY_{nv}"))));
        }
        format!(
            "{line} /usr/lib/ocf/resource.d/heartbeat/{kind} {action} >>{log}/agents.log 2>&1; \
             echo \"{m} {action} $?\"\n",
            log = standin.log_dir.display()
        )
    };
    let level = xpath(
        &cib,
        "string(//primitive[@id='nginx']/operations/op[@name='monitor']\
         /instance_attributes/nvpair[@name='OCF_CHECK_LEVEL']/@value)",
    );
    let mut steps = String::from("ip link set lo up\n");
    let mut stops = String::new();
    for m in ["uwsgi", "celery", "celerybeat", "nginx"] {
        steps.push_str(&agent(m, "start", "0"));
        let check_level = if m == "nginx" { level.as_str() } else { "0" };
        steps.push_str(&agent(m, "monitor", check_level));
        stops.insert_str(0, &agent(m, "stop", "0"));
    }
    // The nginx monitor fails when GET / does not answer like the app.
    let bad = agent("nginx", "monitor", &level).replace(
        "OCF_RESKEY_status10url=http://127.0.0.1/",
        "OCF_RESKEY_status10url=http://127.0.0.1/bad",
    );
    steps.push_str(&bad.replace("echo \"nginx monitor $?\"", "echo \"nginx monitor-bad $?\""));
    // Whatever happens, the stand-in's processes are stopped on the way out.
    let all = format!("stop_all() {{\n{stops}}}\ntrap stop_all EXIT\n{steps}");
    // In a session of its own: the processes the agents background are
    // orphans, and the harness's reaper (a child subreaper once any cluster
    // test ran in this process) reaps only those outside the test's process
    // group; in it, a killed stub would stay a zombie and its stop time out.
    let out = run(
        &["setsid", "-w", "unshare", "--net", "sh", "-c", &all],
        &[],
        None,
    );
    let report = text(&out.stdout);
    let logs = [
        "agents.log",
        "uwsgi.stdout",
        "uwsgi.stderr",
        "nginx-error.log",
    ]
    .map(|f| {
        let body = fs::read_to_string(standin.log_dir.join(f)).unwrap_or_default();
        format!("--- {f}\n{body}")
    })
    .join("\n");
    let expected = "uwsgi start 0\nuwsgi monitor 0\ncelery start 0\ncelery monitor 0\n\
                    celerybeat start 0\ncelerybeat monitor 0\nnginx start 0\nnginx monitor 0\n\
                    nginx monitor-bad 1\nnginx stop 0\ncelerybeat stop 0\ncelery stop 0\n\
                    uwsgi stop 0\n";
    assert_eq!(report, expected, "{}\n{logs}", text(&out.stderr));
    for m in ["uwsgi", "celery", "celerybeat"] {
        let stdout = fs::read_to_string(standin.log_dir.join(format!("{m}.stdout"))).unwrap();
        assert_eq!(
            stdout,
            format!("{m} sourced {}/standin.env\n", standin.etc.display()),
            "{m} got its env file through su -"
        );
        assert!(
            !standin.run_dir.join(format!("pcmk-{m}.pid")).exists(),
            "{m} stopped"
        );
    }
}

#[test]
fn pcs_script_sets_no_quorum_policy_and_clone_max_for_three_nodes() {
    let installed = Installed::new("pcs-three");
    let cib = installed.cib("cib.xml");
    let env = [
        ("CIB", cib.to_str().unwrap()),
        ("VARIANT", "sandbox"),
        ("NODES", "n1 n2 n3"),
        ("APP", "no"),
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

/// A 2-node corosync.conf as `pcs cluster setup` and the cluster test
/// harness write it: `two_node: 1` in the quorum section, and a comment the
/// crm script's edit must keep.
const COROSYNC_TWO_NODES: &str = "totem {
    version: 2
    cluster_name: rapidpro
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}

nodelist {
    node {
        name: sms1
        nodeid: 1
        ring0_addr: 192.0.2.11
    }
    node {
        name: sms2
        nodeid: 2
        ring0_addr: 192.0.2.12
    }
}

quorum {
    # votequorum, two nodes
    provider: corosync_votequorum
    two_node: 1
}

logging {
    to_logfile: yes
    logfile: /var/log/corosync/corosync.log
    to_syslog: no
    timestamp: on
}
";

/// The quorum device of the runs below: qnetd at 192.0.2.50, the gateway
/// 192.0.2.1 and the SMS gateway 192.0.2.90 pinged by the heuristics.
const QDEVICE_ENV: &[(&str, &str)] = &[
    ("QNETD_HOST", "192.0.2.50"),
    ("QNETD_GATEWAY", "192.0.2.1"),
    ("QNETD_PING_HOSTS", "192.0.2.90"),
];

/// corosync.conf as `section.subsection.key` and value pairs, in file order
/// (comments and blank lines left out; a repeated section, such as
/// `nodelist.node`, repeats its keys). Panics on a line that is neither a
/// section, its end, nor `key: value`, and on unbalanced braces.
fn corosync_keys(text: &str) -> Vec<(String, String)> {
    let mut path: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_suffix('{') {
            path.push(name.trim().to_owned());
        } else if line == "}" {
            path.pop()
                .unwrap_or_else(|| panic!("a }} closes no section in:\n{text}"));
        } else {
            let (key, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not `key: value`: {line:?} in:\n{text}"));
            let mut full = path.clone();
            full.push(key.trim().to_owned());
            keys.push((full.join("."), value.trim().to_owned()));
        }
    }
    assert!(path.is_empty(), "unclosed sections {path:?} in:\n{text}");
    keys
}

/// The keys of `keys` whose path starts with `prefix`.
fn keys_under<'a>(keys: &'a [(String, String)], prefix: &str) -> Vec<(&'a str, &'a str)> {
    keys.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// What a script with [`QDEVICE_ENV`] must make of [`COROSYNC_TWO_NODES`]:
/// the quorum section holds the device (and no more `two_node`), every
/// other section is unchanged.
fn assert_quorum_device(conf: &Path, what: &str) {
    let text = fs::read_to_string(conf).unwrap();
    let keys = corosync_keys(&text);
    assert_eq!(
        keys_under(&keys, "quorum."),
        [
            ("quorum.provider", "corosync_votequorum"),
            ("quorum.device.sync_timeout", "5000"),
            ("quorum.device.timeout", "2000"),
            ("quorum.device.model", "net"),
            ("quorum.device.votes", "1"),
            ("quorum.device.net.algorithm", "ffsplit"),
            ("quorum.device.net.host", "192.0.2.50"),
            (
                "quorum.device.heuristics.exec_gateway",
                "/bin/ping -q -n -c 1 -W 1 192.0.2.1"
            ),
            (
                "quorum.device.heuristics.exec_ping1",
                "/bin/ping -q -n -c 1 -W 1 192.0.2.90"
            ),
            ("quorum.device.heuristics.mode", "sync"),
        ],
        "{what}: the quorum section, in:\n{text}"
    );
    let before = corosync_keys(COROSYNC_TWO_NODES);
    let others = |keys: &[(String, String)]| -> Vec<(String, String)> {
        keys.iter()
            .filter(|(k, _)| !k.starts_with("quorum."))
            .cloned()
            .collect()
    };
    assert_eq!(others(&keys), others(&before), "{what}: the other sections");
}

/// The cluster properties a quorum device implies: fencing on, no fence
/// delay, a partition without quorum stops.
fn assert_qdevice_properties(cib: &Path, fence_delay: &str) {
    let verify = run(
        &["crm_verify", "--xml-file", cib.to_str().unwrap(), "-V"],
        &[],
        None,
    );
    assert_success("crm_verify", &verify);
    let props = "/cib/configuration/crm_config/cluster_property_set";
    for (name, value) in [
        ("stonith-enabled", "true"),
        ("priority-fencing-delay", fence_delay),
        ("no-quorum-policy", "stop"),
    ] {
        assert_one(
            cib,
            "cluster property",
            &format!("{props}/nvpair[@name='{name}' and @value='{value}']"),
        );
    }
}

#[test]
fn both_scripts_with_qnetd_host_write_the_same_quorum_device_and_stop_without_quorum() {
    let installed = Installed::new("qdevice");
    let dir = installed.dir.path().to_owned();
    let common = [("VARIANT", "sandbox"), ("APP", "no")];

    let pcs_conf = dir.join("pcs-corosync.conf");
    fs::write(&pcs_conf, COROSYNC_TWO_NODES).unwrap();
    let cib = installed.cib("pcs.xml");
    let mut env = [&common[..], QDEVICE_ENV].concat();
    env.extend([
        ("CIB", cib.to_str().unwrap()),
        ("COROSYNC_CONF", pcs_conf.to_str().unwrap()),
    ]);
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("QNETD_HOST=... rapidpro-cluster.pcs.sh", &out);
    assert_quorum_device(&pcs_conf, "pcs script");
    assert_qdevice_properties(&cib, "0s");
    // What the admin runs next on the live cluster: the same device, live.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "pcs quorum device add sync_timeout=5000 timeout=2000 model net host=192.0.2.50 \
             algorithm=ffsplit heuristics mode=sync \
             exec_gateway=\"/bin/ping -q -n -c 1 -W 1 192.0.2.1\" \
             exec_ping1=\"/bin/ping -q -n -c 1 -W 1 192.0.2.90\""
        ) && stderr.contains("pcs qdevice setup model net --enable --start"),
        "the pcs script names the live commands: {stderr}"
    );

    let crm_conf = dir.join("crm-corosync.conf");
    fs::write(&crm_conf, COROSYNC_TWO_NODES).unwrap();
    let cib = installed.cib("crm.xml");
    let mut env = [&common[..], QDEVICE_ENV].concat();
    env.extend([
        ("CIB_file", cib.to_str().unwrap()),
        ("COROSYNC_CONF", crm_conf.to_str().unwrap()),
    ]);
    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm -f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = dir.display()
    );
    let out = installed.run(&["sh", "-euc", &pipeline], &env);
    assert_success("QNETD_HOST=... rapidpro-cluster.crm.sh | crm -f", &out);
    assert_quorum_device(&crm_conf, "crm script");
    assert_qdevice_properties(&cib, "0s");
    let crm_text = fs::read_to_string(&crm_conf).unwrap();
    assert!(
        crm_text.contains("# votequorum, two nodes"),
        "the crm script's edit keeps comments:\n{crm_text}"
    );
    // Without pcsd: the certificates by hand, the reload, qdevice started.
    let stderr = text(&out.stderr);
    for step in [
        "corosync-qnetd-certutil -i",
        "corosync-qdevice-net-certutil -i -c qnetd-cacert.crt",
        "corosync-qdevice-net-certutil -r -n rapidpro",
        "corosync-qnetd-certutil -s -c qdevice-net-node.crq -n rapidpro",
        "corosync-qdevice-net-certutil -M -c cluster-rapidpro.crt",
        "corosync-qdevice-net-certutil -m -c qdevice-net-node.p12",
        "corosync-cfgtool -R",
        "systemctl enable --now corosync-qdevice",
    ] {
        assert!(
            stderr.contains(step),
            "the crm script names `{step}`: {stderr}"
        );
    }

    // pcs wrote the file, the crm script edited it: the same configuration.
    assert_eq!(
        corosync_keys(&fs::read_to_string(&pcs_conf).unwrap()),
        corosync_keys(&crm_text),
        "pcs and crm scripts, the same corosync.conf"
    );
}

#[test]
fn fence_delay_given_explicitly_wins_over_the_quorum_device_default() {
    let installed = Installed::new("qdevice-delay");
    let conf = installed.dir.path().join("corosync.conf");
    fs::write(&conf, COROSYNC_TWO_NODES).unwrap();
    let cib = installed.cib("cib.xml");
    let mut env = QDEVICE_ENV.to_vec();
    env.extend([
        ("VARIANT", "sandbox"),
        ("APP", "no"),
        ("FENCE_DELAY", "2s"),
        ("CIB", cib.to_str().unwrap()),
        ("COROSYNC_CONF", conf.to_str().unwrap()),
    ]);
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success(
        "FENCE_DELAY=2s QNETD_HOST=... rapidpro-cluster.pcs.sh",
        &out,
    );
    assert_qdevice_properties(&cib, "2s");

    fs::write(&conf, COROSYNC_TWO_NODES).unwrap();
    let out = run(
        &["sh", script("rapidpro-cluster.crm.sh").to_str().unwrap()],
        &env,
        None,
    );
    assert_success(
        "FENCE_DELAY=2s QNETD_HOST=... rapidpro-cluster.crm.sh",
        &out,
    );
    assert!(
        text(&out.stdout).contains(
            "property cib-bootstrap-options: stonith-enabled=true \
             priority-fencing-delay=\"2s\" no-quorum-policy=stop"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn scripts_refuse_a_bad_quorum_device_or_ping_setting_naming_the_variable() {
    let dir = TempDir::new("qdevice-bad");
    let cib = dir.path().join("cib.xml");
    let empty = run(&["cibadmin", "--empty"], &[], None);
    assert_success("cibadmin --empty", &empty);
    fs::write(&cib, &empty.stdout).unwrap();
    let conf = dir.path().join("corosync.conf");
    fs::write(&conf, COROSYNC_TWO_NODES).unwrap();
    let missing = dir.path().join("no-such-corosync.conf");

    // (variable, value or None to unset it, message)
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "QNETD_GATEWAY",
            None,
            "QNETD_GATEWAY is not set: with QNETD_HOST, give the address",
        ),
        (
            "QNETD_GATEWAY",
            Some("192.0.2.1 192.0.2.2"),
            "QNETD_GATEWAY must hold plain IP addresses or host names",
        ),
        (
            "QNETD_GATEWAY",
            Some("-f"),
            "QNETD_GATEWAY must hold plain IP addresses or host names",
        ),
        (
            "COROSYNC_CONF",
            None,
            "COROSYNC_CONF is not set: with QNETD_HOST, give a copy of /etc/corosync/corosync.conf",
        ),
        (
            "COROSYNC_CONF",
            Some(missing.to_str().unwrap()),
            "COROSYNC_CONF file",
        ),
        (
            "QNETD_HOST",
            Some("qnetd;reboot"),
            "QNETD_HOST must hold plain IP addresses or host names",
        ),
        (
            "QNETD_PING_HOSTS",
            Some("192.0.2.90 $(true)"),
            "QNETD_PING_HOSTS must hold plain IP addresses or host names",
        ),
        (
            "PING_HOSTS",
            Some("192.0.2.1 \"gw\""),
            "PING_HOSTS must hold plain IP addresses or host names",
        ),
        (
            "QDEVICE_TIMEOUT_MS",
            Some("1000"),
            "QDEVICE_TIMEOUT_MS must be between 2000 and 120000 ms",
        ),
        (
            "QDEVICE_SYNC_TIMEOUT_MS",
            Some("5s"),
            "QDEVICE_SYNC_TIMEOUT_MS must be a whole number of milliseconds",
        ),
        (
            "NODES",
            Some("n1 n2 n3"),
            "QNETD_HOST with 3 nodes: the ffsplit algorithm is for an even number of nodes",
        ),
    ];
    for &(name, value, message) in cases {
        let mut env = QDEVICE_ENV.to_vec();
        env.extend([
            ("VARIANT", "sandbox"),
            ("APP", "no"),
            ("COROSYNC_CONF", conf.to_str().unwrap()),
        ]);
        env.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            env.push((name, v));
        }
        let shown = format!("{name}={value:?}");

        let mut pcs_env = env.clone();
        pcs_env.push(("CIB", cib.to_str().unwrap()));
        let out = run(
            &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
            &pcs_env,
            None,
        );
        assert!(!out.status.success(), "pcs script refuses {shown}");
        assert!(
            text(&out.stderr).contains(message),
            "pcs script, {shown}: expected '{message}' in: {}",
            text(&out.stderr)
        );
        assert_eq!(fs::read(&cib).unwrap(), empty.stdout, "CIB untouched");

        let out = run(
            &["sh", script("rapidpro-cluster.crm.sh").to_str().unwrap()],
            &env,
            None,
        );
        assert!(!out.status.success(), "crm script refuses {shown}");
        assert!(
            text(&out.stderr).contains(message),
            "crm script, {shown}: expected '{message}' in: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "no crm script printed");
        assert_eq!(
            fs::read_to_string(&conf).unwrap(),
            COROSYNC_TWO_NODES,
            "{shown}: corosync.conf untouched"
        );
    }
}

#[test]
fn crm_script_refuses_a_corosync_conf_that_has_a_quorum_device_already() {
    let dir = TempDir::new("qdevice-twice");
    let conf = dir.path().join("corosync.conf");
    let with_device = COROSYNC_TWO_NODES.replace(
        "    two_node: 1\n",
        "    device {\n        model: net\n        net {\n            host: 192.0.2.51\n        }\n    }\n",
    );
    fs::write(&conf, &with_device).unwrap();
    let mut env = QDEVICE_ENV.to_vec();
    env.extend([
        ("VARIANT", "sandbox"),
        ("APP", "no"),
        ("COROSYNC_CONF", conf.to_str().unwrap()),
    ]);
    let out = run(
        &["sh", script("rapidpro-cluster.crm.sh").to_str().unwrap()],
        &env,
        None,
    );
    assert!(!out.status.success(), "refused: {out:?}");
    assert!(
        text(&out.stderr).contains("the quorum section has a device already"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no crm script printed");
    assert_eq!(fs::read_to_string(&conf).unwrap(), with_device, "untouched");
}

/// The ping clone and its rule, as both scripts must write them.
fn assert_ping_fallback(cib: &Path) {
    let verify = run(
        &["crm_verify", "--xml-file", cib.to_str().unwrap(), "-V"],
        &[],
        None,
    );
    assert_success("crm_verify", &verify);
    let ping = "/cib/configuration/resources/clone[@id='ping-clone']\
                /primitive[@id='ping' and @class='ocf' and @provider='pacemaker' and @type='ping']";
    assert_one(cib, "the ping clone", ping);
    let mut params = nvpairs(cib, &format!("{ping}/instance_attributes"));
    params.sort();
    assert_eq!(
        params,
        [
            "dampen=5s",
            "host_list=192.0.2.1 192.0.2.90",
            "multiplier=1000"
        ],
        "ping parameters (blanks of PING_HOSTS squeezed)"
    );
    assert_one(
        cib,
        "ping monitor",
        &format!("{ping}/operations/op[@name='monitor' and @interval='10s' and @timeout='60s']"),
    );
    let rule = "/cib/configuration/constraints/rsc_location[@id='stack-promoted-needs-ping' \
                and @rsc='stack-clone']/rule[@role='Promoted' and @score='-INFINITY' \
                and @boolean-op='or']";
    assert_one(cib, "the rule on the Promoted role", rule);
    assert_eq!(xpath(cib, &format!("count({rule}/expression)")), "2");
    assert_one(
        cib,
        "pingd not defined",
        &format!("{rule}/expression[@attribute='pingd' and @operation='not_defined']"),
    );
    assert_one(
        cib,
        "pingd 0 or less",
        &format!(
            "{rule}/expression[@attribute='pingd' and @operation='lte' \
             and @type='number' and @value='0']"
        ),
    );
}

/// Sets the transient node attribute `name` of `node` in the CIB file.
fn set_node_attribute(installed: &Installed, cib: &Path, node: &str, name: &str, value: &str) {
    let out = installed.run(
        &[
            "crm_attribute",
            "-N",
            node,
            "-n",
            name,
            "-v",
            value,
            "-l",
            "reboot",
        ],
        &[("CIB_file", cib.to_str().unwrap())],
    );
    assert_success(&format!("crm_attribute {name} on {node}"), &out);
}

#[test]
fn ping_hosts_add_a_ping_clone_that_keeps_promoted_off_a_node_reaching_none() {
    let installed = Installed::new("ping");
    let common = [
        ("VARIANT", "sandbox"),
        ("APP", "no"),
        ("PING_HOSTS", " 192.0.2.1   192.0.2.90 "),
        ("STACK_PARAMS", "pgdata=/srv/pg rewind=true"),
    ];

    let cib = installed.cib("pcs.xml");
    let mut env = common.to_vec();
    env.push(("CIB", cib.to_str().unwrap()));
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("PING_HOSTS=... rapidpro-cluster.pcs.sh", &out);
    assert_ping_fallback(&cib);
    // Two nodes without a quorum device: two_node's quorum, as before.
    assert_rapidpro_cluster(&cib, "sandbox");
    let pcs_cib = cib;

    let cib = installed.cib("crm.xml");
    let mut env = common.to_vec();
    env.push(("CIB_file", cib.to_str().unwrap()));
    let pipeline = format!(
        "sh {} > {dir}/rapidpro.crm && crm -f {dir}/rapidpro.crm",
        script("rapidpro-cluster.crm.sh").display(),
        dir = installed.dir.path().display()
    );
    let out = installed.run(&["sh", "-euc", &pipeline], &env);
    assert_success("PING_HOSTS=... rapidpro-cluster.crm.sh | crm -f", &out);
    assert_ping_fallback(&cib);
    assert_rapidpro_cluster(&cib, "sandbox");

    // The scheduler's answer (crm_simulate, no agent runs): sms1 preferred
    // by the stack agent's scores and both nodes reaching the gateway, sms1
    // is Promoted; once sms1 reaches nothing (pingd 0), the Promoted role
    // and the VIP move to sms2.
    let cib = pcs_cib;
    let xml = fs::read_to_string(&cib).unwrap();
    fs::write(&cib, xml.replacen("<cib ", "<cib have-quorum=\"1\" ", 1)).unwrap();
    settle(&installed, &cib, &["-u", "sms1", "-u", "sms2"]);
    for (node, score) in [("sms1", "100"), ("sms2", "50")] {
        set_node_attribute(&installed, &cib, node, "master-stack", score);
        set_node_attribute(&installed, &cib, node, "pingd", "2000");
    }
    settle(&installed, &cib, &[]);
    assert_eq!(placed(&installed, &cib, "stack", "Promoted"), "sms1");
    assert_eq!(placed(&installed, &cib, "vip", "Started"), "sms1");

    set_node_attribute(&installed, &cib, "sms1", "pingd", "0");
    settle(&installed, &cib, &[]);
    assert_eq!(placed(&installed, &cib, "stack", "Promoted"), "sms2");
    assert_eq!(placed(&installed, &cib, "vip", "Started"), "sms2");
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

/// The Transition Summary lines of a `crm_simulate` output.
fn transition_summary(out: &str) -> Vec<&str> {
    out.lines()
        .skip_while(|l| !l.starts_with("Transition Summary:"))
        .skip(1)
        .take_while(|l| !l.starts_with("Executing Cluster Transition:"))
        .filter(|l| l.trim_start().starts_with('*'))
        .collect()
}

/// Runs `crm_simulate` on `cib` (with `extra` options the first time) until
/// the scheduler has nothing left to do; returns the first run's output.
fn settle(installed: &Installed, cib: &Path, extra: &[&str]) -> String {
    let next = cib.with_extension("next.xml");
    let mut first = None;
    for round in 0..10 {
        let mut cmd = vec![
            "crm_simulate",
            "-x",
            cib.to_str().unwrap(),
            "-S",
            "-O",
            next.to_str().unwrap(),
        ];
        if round == 0 {
            cmd.extend_from_slice(extra);
        }
        let out = installed.run(&cmd, &[]);
        assert_success("crm_simulate", &out);
        fs::rename(&next, cib).unwrap();
        let stdout = text(&out.stdout);
        let idle = transition_summary(&stdout).is_empty();
        first.get_or_insert(stdout);
        if idle && round > 0 {
            return first.unwrap();
        }
    }
    panic!("the scheduler never settled on {}", cib.display());
}

/// Where `crm_mon` on the CIB file places resource `id` (in `role`).
fn placed(installed: &Installed, cib: &Path, id: &str, role: &str) -> String {
    let out = installed.run(
        &["crm_mon", "-1", "--output-as=xml"],
        &[("CIB_file", cib.to_str().unwrap())],
    );
    assert_success("crm_mon", &out);
    let file = cib.with_extension("mon.xml");
    fs::write(&file, &out.stdout).unwrap();
    xpath(
        &file,
        &format!("string(//resource[@id='{id}' and @role='{role}']/node/@name)"),
    )
}

/// The positions of `actions` (e.g. `uwsgi           stop on sms1`, blanks
/// squeezed) among the executed actions of a `crm_simulate` output.
fn positions(out: &str, actions: &[&str]) -> Vec<usize> {
    let executed: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with("Executing Cluster Transition:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    actions
        .iter()
        .map(|a| {
            executed
                .iter()
                .position(|l| l.ends_with(&format!("action: {a}")))
                .unwrap_or_else(|| panic!("no '{a}' in:\n{out}"))
        })
        .collect()
}

#[test]
fn two_celery_failures_move_the_app_group_with_the_promoted_role_stopping_it_first() {
    // The scheduler's answer to the configuration, offline: crm_simulate
    // plays the transitions on the CIB file (no agent runs), with promotion
    // scores set by hand as the stack agent would (sms1 preferred).
    let installed = Installed::new("simulate");
    let standin = Standin::new(installed.dir.path());
    let cib = installed.cib("cib.xml");
    let mut env = standin.env();
    env.extend([("CIB", cib.to_str().unwrap()), ("VARIANT", "sandbox")]);
    let out = installed.run(
        &["sh", script("rapidpro-cluster.pcs.sh").to_str().unwrap()],
        &env,
    );
    assert_success("rapidpro-cluster.pcs.sh", &out);
    // A CIB file has no quorum; a two-node cluster has.
    let xml = fs::read_to_string(&cib).unwrap();
    fs::write(&cib, xml.replacen("<cib ", "<cib have-quorum=\"1\" ", 1)).unwrap();

    settle(&installed, &cib, &["-u", "sms1", "-u", "sms2"]);
    for (node, score) in [("sms1", "100"), ("sms2", "50")] {
        let out = installed.run(
            &[
                "crm_attribute",
                "-N",
                node,
                "-n",
                "master-stack",
                "-v",
                score,
                "-l",
                "reboot",
            ],
            &[("CIB_file", cib.to_str().unwrap())],
        );
        assert_success("crm_attribute master-stack", &out);
    }
    settle(&installed, &cib, &[]);
    assert_eq!(placed(&installed, &cib, "stack", "Promoted"), "sms1");
    for id in ["vip", "uwsgi", "celery", "celerybeat", "nginx"] {
        assert_eq!(placed(&installed, &cib, id, "Started"), "sms1", "{id}");
    }

    // The first failure: celery is recovered in place, the members after it
    // restarted, nothing moves.
    let first = settle(&installed, &cib, &["-i", "celery_monitor_10000@sms1=1"]);
    assert_eq!(placed(&installed, &cib, "stack", "Promoted"), "sms1");
    assert_eq!(placed(&installed, &cib, "celery", "Started"), "sms1");
    assert!(
        transition_summary(&first)
            .iter()
            .any(|l| l.contains("Recover") && l.contains("celery")),
        "{first}"
    );

    // The second: migration-threshold=2 reached, the whole stack moves.
    let second = settle(&installed, &cib, &["-i", "celery_monitor_10000@sms1=1"]);
    assert_eq!(placed(&installed, &cib, "stack", "Promoted"), "sms2");
    for id in ["vip", "uwsgi", "celery", "celerybeat", "nginx"] {
        assert_eq!(placed(&installed, &cib, id, "Started"), "sms2", "{id}");
    }
    // In this order: the group stops in reverse, then the demote, then the
    // VIP goes (after the demote), the promotion, the VIP, and the group
    // starts in order. celery never runs on both nodes.
    let order = positions(
        &second,
        &[
            "nginx stop on sms1",
            "celerybeat stop on sms1",
            "celery stop on sms1",
            "uwsgi stop on sms1",
            "stack demote on sms1",
            "vip stop on sms1",
            "stack promote on sms2",
            "vip start on sms2",
            "uwsgi start on sms2",
            "celery start on sms2",
            "celerybeat start on sms2",
            "nginx start on sms2",
        ],
    );
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "actions out of order {order:?}:\n{second}"
    );
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

/// Secrets of the tests below, each found nowhere else.
const REPL_SECRET: &str = "repl-pw-Hs8kQ";
const REDIS_SECRET: &str = "redis-pw-Lm2qW";
const BMC_SECRET: &str = "bmc-pw-Zr5cT";

/// Runs the shell `body` with the agents installed, under `strace -f`
/// tracing every `execve`: returns its output and the trace, which holds the
/// arguments of every program started (what `ps` shows every user).
fn traced(installed: &Installed, tag: &str, body: &str, env: &[(&str, &str)]) -> (Output, String) {
    let log = installed.dir.path().join(format!("{tag}.strace"));
    // --seccomp-bpf: only execve stops the traced processes (pcs is slow
    // enough already); the bound is longer than TIMEOUT for the same reason.
    let out = installed.run_for(
        "300",
        &[
            "strace",
            "--seccomp-bpf",
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-s",
            "65536",
            "-o",
            log.to_str().unwrap(),
            "sh",
            "-euc",
            body,
        ],
        env,
    );
    let trace = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    (out, trace)
}

/// No program's arguments in `trace` hold a secret; the trace saw `program`
/// start (so it traced what matters).
fn assert_no_secret_in_argv(what: &str, trace: &str, program: &str) {
    assert!(
        trace.contains(&format!("[\"{program}\"")),
        "{what}: the trace never saw {program} start:\n{trace}"
    );
    for secret in [REPL_SECRET, REDIS_SECRET, BMC_SECRET] {
        let leaks: Vec<&str> = trace.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "{what}: a password on a command line:\n{}",
            leaks.join("\n")
        );
    }
}

fn assert_no_secret_in(what: &str, content: &str) {
    for secret in [REPL_SECRET, REDIS_SECRET, BMC_SECRET] {
        assert!(
            !content.contains(secret),
            "{what} holds a password:\n{}",
            content.replace(secret, "<HERE>")
        );
    }
}

/// The operator's files holding the passwords: repl, redis and sms1's BMC.
fn secret_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let files = (
        dir.join("repl.password"),
        dir.join("redis.password"),
        dir.join("bmc-sms1.password"),
    );
    fs::write(&files.0, format!("{REPL_SECRET}\n")).unwrap();
    fs::write(&files.1, format!("{REDIS_SECRET}\n")).unwrap();
    fs::write(&files.2, format!("{BMC_SECRET}\n")).unwrap();
    files
}

#[test]
fn example_scripts_keep_passwords_off_command_lines_and_out_of_the_cib() {
    let installed = Installed::new("secrets");
    let dir = installed.dir.path();
    let (repl, redis, bmc) = secret_files(dir);
    let stored = dir.join("lrm");

    // 1. rapidpro-secret.sh on a node (here a private /var/lib/pacemaker),
    // each value on stdin, as pcs-examples/README.md shows.
    let helper = script("rapidpro-secret.sh");
    let body = format!(
        "mount -t tmpfs tmpfs /var/lib/pacemaker
         sh {helper} stack repl_password < {repl}
         sh {helper} stack redis_password < {redis}
         cp -a /var/lib/pacemaker/lrm {stored}",
        helper = helper.display(),
        repl = repl.display(),
        redis = redis.display(),
        stored = stored.display()
    );
    let (out, trace) = traced(&installed, "secret", &body, &[]);
    assert_success("rapidpro-secret.sh", &out);
    assert_no_secret_in_argv("rapidpro-secret.sh", &trace, "md5sum");
    // cibsecret's layout: the value's line, and its MD5 (of the value
    // without the newline) in .sign, root only.
    for (param, secret) in [
        ("repl_password", REPL_SECRET),
        ("redis_password", REDIS_SECRET),
    ] {
        let file = stored.join("secrets/stack").join(param);
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("{secret}\n"));
        let md5 = run(&["md5sum"], &[], Some(secret));
        assert_success("md5sum", &md5);
        let md5 = text(&md5.stdout);
        let md5 = md5.split_whitespace().next().unwrap();
        let sign = file.with_file_name(format!("{param}.sign"));
        assert_eq!(fs::read_to_string(&sign).unwrap(), format!("{md5}\n"));
        for f in [&file, &sign] {
            let stat = run(&["stat", "-c", "%a %U", f.to_str().unwrap()], &[], None);
            assert_eq!(text(&stat.stdout).trim(), "600 root", "{}", f.display());
        }
    }
    let stat = run(
        &[
            "stat",
            "-c",
            "%a",
            stored.join("secrets/stack").to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_eq!(text(&stat.stdout).trim(), "700");

    // 2. The pcs script with the passwords as secrets (STACK_SECRETS) and
    // the BMC password in a file (IPMI_<node>_PASSWORD_FILE).
    let env = [
        ("VARIANT", "production"),
        ("FORCE", "1"),
        ("APP", "no"),
        ("STACK_PARAMS", "pgdata=/srv/pg rewind=true"),
        ("STACK_SECRETS", "repl_password redis_password"),
        ("IPMI_sms1_ADDR", "192.0.2.11"),
        ("IPMI_sms1_USER", "admin"),
        ("IPMI_sms1_PASSWORD_FILE", bmc.to_str().unwrap()),
        ("IPMI_sms2_ADDR", "192.0.2.12"),
        ("IPMI_sms2_USER", "admin"),
        ("IPMI_sms2_PASSWORD_FILE", "/root/bmc/sms2.password"),
    ];
    let check_cib = |what: &str, cib: &Path| {
        let stack = "//primitive[@id='stack']/instance_attributes";
        for param in ["repl_password", "redis_password"] {
            assert_one(
                cib,
                what,
                &format!("{stack}/nvpair[@name='{param}' and @value='lrm://']"),
            );
        }
        assert_one(
            cib,
            what,
            &format!(
                "//primitive[@id='fence-sms1']/instance_attributes/nvpair[@name='password_script' \
                 and @value='cat {}']",
                bmc.display()
            ),
        );
        assert_no_secret_in(what, &fs::read_to_string(cib).unwrap());
    };
    let cib = installed.cib("pcs.xml");
    let mut pcs_env = env.to_vec();
    pcs_env.push(("CIB", cib.to_str().unwrap()));
    let body = format!("sh {}", script("rapidpro-cluster.pcs.sh").display());
    let (out, trace) = traced(&installed, "pcs", &body, &pcs_env);
    assert_success("rapidpro-cluster.pcs.sh", &out);
    assert_no_secret_in_argv("rapidpro-cluster.pcs.sh", &trace, "pcs");
    check_cib("the CIB written by pcs", &cib);
    // What pcs resource config and crm configure show print from it.
    let shown = installed.run(
        &[
            "pcs",
            "-f",
            cib.to_str().unwrap(),
            "resource",
            "config",
            "stack-clone",
        ],
        &[],
    );
    assert_success("pcs resource config", &shown);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("repl_password=lrm://") && shown.contains("redis_password=lrm://"),
        "{shown}"
    );
    assert_no_secret_in("pcs resource config", &shown);

    // 3. The crm script, generated then applied.
    let cib = installed.cib("crm.xml");
    let mut crm_env = env.to_vec();
    crm_env.push(("CIB_file", cib.to_str().unwrap()));
    let crm_file = dir.join("rapidpro.crm");
    let body = format!(
        "sh {} > {crm} && crm -F -f {crm}",
        script("rapidpro-cluster.crm.sh").display(),
        crm = crm_file.display()
    );
    let (out, trace) = traced(&installed, "crm", &body, &crm_env);
    assert_success("rapidpro-cluster.crm.sh | crm -f", &out);
    assert_no_secret_in_argv("rapidpro-cluster.crm.sh and crm", &trace, "crm");
    assert_no_secret_in("the crm script", &fs::read_to_string(&crm_file).unwrap());
    check_cib("the CIB written by crm", &cib);
}

#[test]
fn example_scripts_refuse_passwords_in_stack_params_or_ipmi_password() {
    let installed = Installed::new("secrets-refused");
    let refusals = [
        (
            (
                "STACK_PARAMS",
                format!("pgdata=/srv/pg repl_password={REPL_SECRET}"),
            ),
            [
                "STACK_PARAMS must not hold repl_password",
                ".pgpass",
                "STACK_SECRETS",
            ],
        ),
        (
            ("STACK_PARAMS", format!("redis_password={REDIS_SECRET}")),
            [
                "STACK_PARAMS must not hold redis_password",
                "rapidpro-secret.sh",
                "STACK_SECRETS",
            ],
        ),
        (
            ("IPMI_sms1_PASSWORD", BMC_SECRET.to_owned()),
            [
                "IPMI_sms1_PASSWORD is no longer taken",
                "IPMI_sms1_PASSWORD_FILE",
                "root-only file",
            ],
        ),
    ];
    for ((name, value), reasons) in &refusals {
        for example in ["rapidpro-cluster.pcs.sh", "rapidpro-cluster.crm.sh"] {
            let cib = installed.cib("cib.xml");
            let before = fs::read(&cib).unwrap();
            let output = installed.dir.path().join("out.crm");
            let env = [
                ("CIB", cib.to_str().unwrap()),
                ("VARIANT", "sandbox"),
                ("APP", "no"),
                (*name, value.as_str()),
            ];
            let body = format!("sh {} > {}", script(example).display(), output.display());
            let (out, trace) = traced(&installed, "refused", &body, &env);
            assert!(
                !out.status.success(),
                "{example} with {name}: refused: {out:?}"
            );
            let stderr = text(&out.stderr);
            for reason in reasons {
                assert!(stderr.contains(reason), "{example} with {name}: {stderr}");
            }
            assert_no_secret_in(&format!("{example}'s message"), &stderr);
            assert_no_secret_in(
                &format!("{example}'s output"),
                &fs::read_to_string(&output).unwrap(),
            );
            assert!(
                !trace.contains("[\"pcs\""),
                "{example} with {name}: refused before pcs runs:\n{trace}"
            );
            assert_no_secret_in_argv(example, &trace, "sh");
            assert_eq!(
                fs::read(&cib).unwrap(),
                before,
                "{example}: the CIB file untouched"
            );
        }
    }
}
