//! A real Pacemaker 2.1 + Corosync 3 cluster on this one machine: each node
//! in namespaces of its own, connected by a private bridge, running
//! `ocf:rapidpro:stack` (the freshly built agent) over PostgreSQL 15 and
//! Redis 7, with a virtual IP and sandbox fencing.
//!
//! ```no_run
//! use rapidpro_ha_harness::NsCluster;
//! use std::time::Duration;
//!
//! let c = NsCluster::builder("bootstrap").nodes(2).agent("/path/to/rapidpro-agent").build();
//! c.wait_settled("node1", Duration::from_secs(90));
//! let primary = c.promoted_node().expect("a promoted node");
//! assert!(c.node(&primary).has_address(c.vip()));
//! ```
//!
//! How (facts in `shared/notes/cluster-sandbox.md`):
//! - a node is `setsid unshare --mount --uts --ipc --net --pid --fork
//!   --mount-proc --propagation private tini -- sh node-init.sh`; the script
//!   (`sh/node-init.sh`) builds the node's filesystem view with mounts that
//!   exist only in the node's mount namespace, and tini, its PID 1, reaps
//!   every orphan at once. Commands run inside with `timeout nsenter`;
//! - `ocf:rapidpro:stack` and the fence agent are added with read-only
//!   overlays over `/usr/lib/ocf/resource.d` and `/usr/sbin` inside the nodes:
//!   nothing of the host's changes (except the empty mountpoint
//!   `/var/lib/rapidpro-fence`);
//! - the cluster is configured with the project's own
//!   `pcs-examples/rapidpro-cluster.pcs.sh` (`VARIANT=sandbox`), run in node1
//!   on a dump of the live CIB, then pushed with `cibadmin --replace`;
//! - fencing: the sandbox fence agent asks a watcher thread of the harness
//!   (module `fence`) to SIGKILL the victim's PID 1;
//! - teardown, by PID, also after a panic: SIGTERM to every pacemakerd and a
//!   bounded wait, `corosync-cfgtool -H --force`, SIGKILL to every PID 1 (which
//!   ends its namespaces, mounts and veth), SIGKILL to the bridge holder, then
//!   the test directory goes.

mod app;
mod crm;
mod fence;
mod net;
mod node;
mod qnetd;
mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crm::{CrmNode, CrmResource, CrmStatus};
pub use fence::FenceEvent;
pub use node::{
    NsNode, PACEMAKER_LOG, PGDATA, PGHOST, PG_CA_FILE, PG_LOGFILE, REDIS_CONFIG, REDIS_SOCKET,
    REDIS_TLS_CA, REDIS_TLS_CERT, REDIS_TLS_KEY, STATE_DIR, TLS_PARAMS,
};
pub use watch::{
    mono_now, mono_of, report, NodeWatcher, Overlap, Overlaps, Sample, Service, ServiceStats,
    State, WatchReport, Writable, MAX_GAP, PERIOD, SAMPLE_BUDGET, WATCHER_ENV,
};

use crate::cmd::{clean_command, must, CmdOutput};
use crate::dir::{make_dir, set_mode, write_file};
use crate::sinks::{HttpSink, SmtpSink};
use crate::{poll, template, TestDir, REPL_PASSWORD};

use fence::FenceWatcher;
use net::Bridge;
use node::{BootFiles, NS_TIMEOUT, TINI};
use qnetd::{QnetdHost, QNETD_HOST_PART, QNETD_PORT};

/// The agent's resource type as crm_mon shows it.
pub const STACK_AGENT: &str = "ocf:rapidpro:stack";
/// The virtual IP's resource type.
pub const VIP_AGENT: &str = "ocf:heartbeat:IPaddr2";
/// The node init script, written into every test directory.
const NODE_INIT: &str = include_str!("../../sh/node-init.sh");
/// Where the project's files are, from the harness crate.
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The cluster configuration script, relative to [`WORKSPACE`].
const PCS_SCRIPT: &str = "pcs-examples/rapidpro-cluster.pcs.sh";
/// The same configuration for crmsh, relative to [`WORKSPACE`].
const CRM_SCRIPT: &str = "pcs-examples/rapidpro-cluster.crm.sh";
/// Stores a secret parameter on a node as cibsecret does, relative to
/// [`WORKSPACE`].
const SECRET_SCRIPT: &str = "pcs-examples/rapidpro-secret.sh";
/// The stack parameters the configuration scripts keep out of the CIB
/// (`STACK_SECRETS`): the harness stores them with [`SECRET_SCRIPT`].
const SECRET_PARAMS: [&str; 2] = ["repl_password", "redis_password"];
/// The sandbox fence agent, relative to [`WORKSPACE`].
const FENCE_AGENT: &str = "pcs-examples/sandbox/fence_rapidpro_sandbox";
const FENCE_AGENT_NAME: &str = "fence_rapidpro_sandbox";
/// Prefix length of the cluster network.
const PREFIX: u8 = 24;
/// Host part of the clients' address on the bridge.
const CLIENT_HOST: u8 = 254;
/// Graceful part of the teardown.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Distinguishes the subnets of the clusters of one test process (only
/// for readable logs: each cluster's network is private anyway).
static NEXT_NET: AtomicUsize = AtomicUsize::new(0);

/// Builds an [`NsCluster`]; see [`NsCluster::builder`].
#[derive(Debug, Clone)]
pub struct NsClusterBuilder {
    name: String,
    nodes: usize,
    agent: Option<PathBuf>,
    params: Vec<(String, String)>,
    fence_delay: String,
    token_ms: u32,
    configure: bool,
    stack_agent: String,
    sbin: Vec<PathBuf>,
    script_env: Vec<(String, String)>,
    app: bool,
    alert_recipients: Vec<String>,
    crmsh: bool,
    pg_disk_mb: Option<u32>,
    deb: Option<PathBuf>,
    by_the_book: bool,
    redis_password: Option<String>,
    tls: bool,
    qdevice: bool,
    ping_gateway: bool,
}

impl NsClusterBuilder {
    /// Whether the cluster has a quorum device (default false): a qnetd
    /// host on the bridge (not a node), and the configuration script run
    /// with `QNETD_HOST` (its heuristics ping the clients' address, the
    /// nodes' gateway); then the certificates, `corosync-cfgtool -R` and
    /// `corosync-qdevice` on every node, as `pcs quorum device add` does.
    pub fn qdevice(mut self, yes: bool) -> Self {
        self.qdevice = yes;
        self
    }

    /// Whether the configuration script gets `PING_HOSTS` set to the
    /// clients' address (the nodes' gateway): the ping fallback of a
    /// 2-node cluster without a third host (default false).
    pub fn ping_gateway(mut self, yes: bool) -> Self {
        self.ping_gateway = yes;
        self
    }

    /// Number of nodes, 2 or 3 (default 2).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }

    /// The agent binary to install as `ocf:rapidpro:stack` in the nodes
    /// (required, unless [`NsClusterBuilder::from_deb`]).
    pub fn agent(mut self, bin: impl AsRef<Path>) -> Self {
        self.agent = Some(bin.as_ref().to_owned());
        self
    }

    /// Sets an extra `ocf:rapidpro:stack` parameter, e.g.
    /// `("sync_replication", "off")` (no spaces in the value).
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The agent of the promotable clone: [`STACK_AGENT`] (the default), or
    /// `ocf:pacemaker:Stateful` for a baseline measuring Pacemaker and
    /// Corosync alone (no PostgreSQL or Redis is involved then).
    pub fn stack_agent(mut self, agent: &str) -> Self {
        self.stack_agent = agent.to_owned();
        self
    }

    /// `priority-fencing-delay` (default `3s`).
    pub fn fence_delay(mut self, delay: &str) -> Self {
        self.fence_delay = delay.to_owned();
        self
    }

    /// Corosync `token` in ms (default 1000).
    pub fn token_ms(mut self, ms: u32) -> Self {
        self.token_ms = ms;
        self
    }

    /// Whether to apply the cluster configuration script once the nodes are
    /// members (default true); without it the CIB has no resources.
    pub fn configure(mut self, yes: bool) -> Self {
        self.configure = yes;
        self
    }

    /// Adds the executable `bin` to every node's `/usr/sbin` (under its own
    /// file name), e.g. `rapidproctl` and `rapidpro-alert`.
    pub fn sbin(mut self, bin: impl AsRef<Path>) -> Self {
        self.sbin.push(bin.as_ref().to_owned());
        self
    }

    /// Passes `name=value` to the configuration script, e.g.
    /// `ALERT_RECIPIENTS` (see `pcs-examples/README.md`).
    pub fn script_env(mut self, name: &str, value: &str) -> Self {
        self.script_env.retain(|(k, _)| k != name);
        self.script_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Whether the cluster runs the application tier (default false): the
    /// stand-in RapidPro app of `app/` (uwsgi, celery, celerybeat, nginx)
    /// configured in every node, the script run with `APP=yes`, and an SMS
    /// gateway sink in the clients' network namespace
    /// ([`NsCluster::gateway`]).
    pub fn app(mut self, yes: bool) -> Self {
        self.app = yes;
        self
    }

    /// Configures Pacemaker alerts through the configuration script
    /// (`ALERT_RECIPIENTS`, `ALERT_OPTIONS`) to these recipient values,
    /// sending email to an SMTP sink and SMS to an HTTP sink that the
    /// harness starts in the clients' network namespace
    /// ([`NsCluster::alert_smtp`], [`NsCluster::alert_sms`]). The alert
    /// agent itself must be added with [`NsClusterBuilder::sbin`].
    pub fn alerts(mut self, recipients: &[&str]) -> Self {
        self.alert_recipients = recipients.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Installs `ocf:rapidpro:stack`, `rapidproctl` and `rapidpro-alert` in
    /// the nodes from the Debian package `deb` (built by `scripts/build-deb`)
    /// instead of [`NsClusterBuilder::agent`]: the package is extracted with
    /// `dpkg-deb -x` into the test directory (`deb-root/`), and the agent
    /// from its `/usr/lib/ocf/resource.d/rapidpro/stack`, the two tools from
    /// its `/usr/sbin` go into the nodes' overlays, where a node sees them
    /// at those same paths.
    pub fn from_deb(mut self, deb: impl AsRef<Path>) -> Self {
        self.deb = Some(deb.as_ref().to_owned());
        self
    }

    /// Lays the nodes out as Debian's packages ship them instead of copying
    /// the harness's template (default false): no PostgreSQL cluster yet
    /// (empty `/etc/postgresql` and `/var/lib/postgresql`), Debian's own
    /// `/etc/redis/redis.conf` (the host's, checked unchanged from the
    /// package), and per-node copies of `/etc/systemd/system` and the SysV
    /// `/etc/rc?.d` link directories so that `systemctl disable` in a node
    /// leaves the host's alone; `/root` is per node too. The test then sets
    /// PostgreSQL and Redis up itself (the README's "From two fresh
    /// servers"), and normally also applies the cluster configuration
    /// itself: combine with `configure(false)`.
    pub fn by_the_book(mut self, yes: bool) -> Self {
        self.by_the_book = yes;
        self
    }

    /// The Redis password (`requirepass`) of the nodes' Redis, which the
    /// harness's own Redis clients then use ([`NsNode::redis_cli`], the
    /// watcher through [`NsCluster::redis_password`]). Without
    /// [`NsClusterBuilder::by_the_book`], the harness also appends
    /// `requirepass` to every node's Redis configuration and gives the agent
    /// `redis_password` (a CIB secret, as `repl_password`).
    pub fn redis_password(mut self, password: &str) -> Self {
        self.redis_password = Some(password.to_owned());
        self
    }

    /// Verified TLS everywhere (default false): a CA made by the test
    /// ([`crate::TestCa`]) issues each node a certificate for its own
    /// address, the VIP, `localhost` and `127.0.0.1`; PostgreSQL runs with
    /// `ssl = on` and a `pg_hba.conf` of `hostssl` lines only (plus `local`),
    /// and Redis with TLS on its port and for replication. The agent gets
    /// `sslmode=verify-full`, `sslrootcert` and `redis_tls*` (see
    /// [`TLS_PARAMS`]). For the Template layout only.
    pub fn tls(mut self, yes: bool) -> Self {
        self.tls = yes;
        self
    }

    /// Configures the cluster with `pcs-examples/rapidpro-cluster.crm.sh`
    /// and crmsh (`crm -f`) instead of the pcs script (default false).
    pub fn crmsh(mut self, yes: bool) -> Self {
        self.crmsh = yes;
        self
    }

    /// Puts every node's `/var/lib/postgresql` on an ext4 file system of
    /// its own, `mb` MiB (default: the host's file system), so that a test
    /// can fill it ([`NsCluster::fill_disk`]).
    pub fn pg_disk_mb(mut self, mb: u32) -> Self {
        self.pg_disk_mb = Some(mb);
        self
    }

    /// Lays out, boots and (unless told not to) configures the cluster.
    /// Returns once every node is an online member and the configuration
    /// is pushed; it does not wait for the resources (see
    /// [`NsCluster::wait_settled`]). Panics with the story on failure, after
    /// tearing down what it started.
    #[track_caller]
    pub fn build(self) -> NsCluster {
        preflight();
        if self.app {
            app::preflight();
        }
        assert!(
            (2..=3).contains(&self.nodes),
            "a namespaced cluster has 2 or 3 nodes"
        );
        let layout = if self.by_the_book {
            node::Layout::Debian
        } else {
            node::Layout::Template(template::pgdata())
        };
        let dir = TestDir::new(&self.name);
        let (agent, package_sbin, doc_extra) = match (&self.deb, &self.agent) {
            (Some(deb), None) => extract_deb(deb, &dir.join("deb-root")),
            (None, Some(agent)) => (agent.clone(), Vec::new(), None),
            (Some(_), Some(_)) => panic!("NsClusterBuilder: agent() and from_deb() exclude each other"),
            (None, None) => panic!(
                "NsClusterBuilder::agent(<path of rapidpro-agent>) or from_deb(<package>) is required"
            ),
        };
        let net = 200 - (NEXT_NET.fetch_add(1, Ordering::SeqCst) % 100) as u8;
        let subnet = format!("10.200.{net}");
        let addr = |i: usize| format!("{subnet}.{}", 10 + i);
        let vip = format!("{subnet}.100");

        let files = BootFiles {
            init_script: dir.join("node-init.sh"),
            fence_dir: dir.join("fence"),
            ocf_extra: dir.join("ocf"),
            sbin_extra: dir.join("sbin"),
            doc_extra,
        };
        write_file(&files.init_script, NODE_INIT, None, 0o755);
        make_dir(&files.fence_dir, 0o755);
        make_dir(&files.ocf_extra.join("rapidpro"), 0o755);
        make_dir(&files.sbin_extra, 0o755);
        copy_executable(&agent, &files.ocf_extra.join("rapidpro/stack"));
        copy_executable(
            &Path::new(WORKSPACE).join(FENCE_AGENT),
            &files.sbin_extra.join(FENCE_AGENT_NAME),
        );
        for bin in package_sbin.iter().chain(&self.sbin) {
            let name = bin
                .file_name()
                .unwrap_or_else(|| panic!("sbin({}): no file name", bin.display()));
            copy_executable(bin, &files.sbin_extra.join(name));
        }

        let names: Vec<String> = (1..=self.nodes).map(|i| format!("node{i}")).collect();
        let corosync = corosync_conf(&names, &addr, self.token_ms);
        let cib = seed_cib(dir.path());
        let nodes: Vec<NsNode> = (1..=self.nodes)
            .map(|i| {
                let mut n = NsNode::create(
                    dir.path(),
                    i,
                    addr(i),
                    &corosync,
                    &cib,
                    layout,
                    &format!("{subnet}.0/{PREFIX}"),
                );
                n.redis_password = self.redis_password.clone();
                if let (Some(pw), false) = (&self.redis_password, self.by_the_book) {
                    let conf = n.host_path("etc-redis/redis.conf");
                    let old = fs::read_to_string(&conf)
                        .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
                    fs::write(&conf, format!("{old}requirepass {pw}\n"))
                        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
                }
                n
            })
            .collect();
        if self.tls {
            assert!(
                !self.by_the_book,
                "NsClusterBuilder::tls is for the template layout"
            );
            let ca = crate::TestCa::new(dir.path(), "cluster");
            for n in &nodes {
                n.use_tls(&ca, &vip, &format!("{subnet}.0/{PREFIX}"));
            }
        }
        if let Some(mb) = self.pg_disk_mb {
            for n in &nodes {
                n.move_postgres_to_image(mb);
            }
        }
        let fence = FenceWatcher::start(
            files.fence_dir.clone(),
            nodes
                .iter()
                .map(|n| (n.name.clone(), n.procs.clone()))
                .collect::<BTreeMap<_, _>>(),
        );
        let bridge = Bridge::new(&dir.join("bridge.out"));
        let client_ip = format!("{subnet}.{CLIENT_HOST}");
        bridge.add_address(&format!("{client_ip}/{PREFIX}"));
        let qnetd = self.qdevice.then(|| {
            let q = QnetdHost::create(dir.path(), format!("{subnet}.{QNETD_HOST_PART}"));
            q.power_on();
            bridge.attach(QNETD_PORT, q.init_pid().expect("the qnetd host is up"));
            q.start_daemon(PREFIX);
            q
        });
        let gateway = self.app.then(|| {
            let sink = HttpSink::start(Some(bridge.holder()), &client_ip);
            for n in &nodes {
                app::configure_node(n, &format!("{}/send", sink.url()));
            }
            sink
        });
        let alert_sinks = (!self.alert_recipients.is_empty()).then(|| {
            (
                SmtpSink::start(Some(bridge.holder()), &client_ip),
                HttpSink::start(Some(bridge.holder()), &client_ip),
            )
        });
        // Watching from before the first node boots: every moment of the
        // cluster's life is sampled, bootstrap included.
        let watcher = NodeWatcher::start(
            dir.path(),
            &nodes
                .iter()
                .map(|n| (n.name.clone(), n.procs.clone()))
                .collect::<Vec<_>>(),
            self.redis_password.clone(),
        );
        let mut c = NsCluster {
            watcher,
            nodes,
            files,
            vip,
            fence,
            bridge,
            qnetd,
            gateway,
            alert_sinks,
            client_ip,
            pacemaker_started: Instant::now(),
            builder: self,
            dir,
        };
        c.start_all();
        if c.builder.configure {
            c.apply_configuration();
            if c.qnetd.is_some() {
                c.install_qdevice();
            }
        }
        c
    }
}

/// A running namespaced cluster; torn down on drop (see the module docs).
#[derive(Debug)]
pub struct NsCluster {
    /// The in-node watcher (see [`NsCluster::watch_report`]); stopped
    /// first at teardown.
    watcher: NodeWatcher,
    nodes: Vec<NsNode>,
    files: BootFiles,
    vip: String,
    fence: FenceWatcher,
    bridge: Bridge,
    /// The quorum device's host ([`NsClusterBuilder::qdevice`]).
    qnetd: Option<QnetdHost>,
    gateway: Option<HttpSink>,
    alert_sinks: Option<(SmtpSink, HttpSink)>,
    client_ip: String,
    pacemaker_started: Instant,
    builder: NsClusterBuilder,
    /// The test directory; dropped last.
    pub dir: TestDir,
}

impl NsCluster {
    /// Waits until `primary` commits synchronously: `synchronous_standby_names`
    /// is `ANY 1 (*)` and a standby is in quorum (with sync_replication=on
    /// the agent turns this on at the primary's first monitor after a
    /// standby streams). The premise of "no acknowledged write lost".
    pub fn wait_synchronous(&self, primary: &str, timeout: Duration) {
        crate::poll(
            &format!("{primary} committing synchronously (a quorum standby)"),
            timeout,
            || {
                let n = self.node(primary);
                let names = n.psql("show synchronous_standby_names").ok()?;
                let quorum = n
                    .psql("select count(*) from pg_stat_replication where sync_state = 'quorum'")
                    .ok()?;
                (names == "ANY 1 (*)" && quorum != "0").then_some(())
            },
        );
    }

    /// Moves the Promoted role away from `node` (`crm_resource --ban
    /// --promoted`, run on that node), as an administrator's switchover does.
    #[track_caller]
    pub fn ban_promoted(&self, node: &str) {
        let clone = self.stack_clone_id();
        let out = self.crm(
            node,
            &[
                "crm_resource",
                "--ban",
                "--promoted",
                "--resource",
                &clone,
                "--node",
                node,
            ],
        );
        assert!(out.success(), "{}", out.failure_message());
    }

    /// Clears the bans of the clone (`crm_resource --clear`, run on `node`).
    #[track_caller]
    pub fn clear_bans(&self, node: &str) {
        let clone = self.stack_clone_id();
        let out = self.crm(node, &["crm_resource", "--clear", "--resource", &clone]);
        assert!(out.success(), "{}", out.failure_message());
    }

    /// Host pid of a process in the clients' network namespace (the bridge's,
    /// which has an address on the cluster subnet): give it to
    /// [`crate::workload::Writer::start`].
    pub fn client_netns_pid(&self) -> i32 {
        self.bridge.holder()
    }

    /// A builder for the test `name` (2 nodes, token 1000 ms,
    /// `priority-fencing-delay=3s`, configured).
    pub fn builder(name: &str) -> NsClusterBuilder {
        NsClusterBuilder {
            name: name.to_owned(),
            nodes: 2,
            agent: None,
            params: Vec::new(),
            fence_delay: "3s".to_owned(),
            stack_agent: STACK_AGENT.to_owned(),
            token_ms: 1000,
            configure: true,
            sbin: Vec::new(),
            script_env: Vec::new(),
            app: false,
            alert_recipients: Vec::new(),
            crmsh: false,
            pg_disk_mb: None,
            deb: None,
            by_the_book: false,
            redis_password: None,
            tls: false,
            qdevice: false,
            ping_gateway: false,
        }
    }

    /// The nodes' Redis password, if the cluster was built with one
    /// ([`NsClusterBuilder::redis_password`]).
    pub fn redis_password(&self) -> Option<&str> {
        self.builder.redis_password.as_deref()
    }

    /// The cluster network, e.g. `10.200.199.0/24`.
    pub fn subnet(&self) -> String {
        let first = &self.nodes[0].addr;
        let prefix = first.rsplit_once('.').map_or(first.as_str(), |(p, _)| p);
        format!("{prefix}.0/{PREFIX}")
    }

    /// Every node.
    pub fn nodes(&self) -> &[NsNode] {
        &self.nodes
    }

    /// The node called `name`; panics if there is none.
    #[track_caller]
    pub fn node(&self, name: &str) -> &NsNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name:?} in this cluster"))
    }

    /// The virtual IP.
    pub fn vip(&self) -> &str {
        &self.vip
    }

    /// Turns fencing off (`stonith-enabled=false`), asking through `node`:
    /// then nothing powers a cut-off node off, and what it does by itself
    /// is all there is.
    pub fn disable_fencing(&self, node: &str) {
        self.crm(
            node,
            &[
                "crm_attribute",
                "--type",
                "crm_config",
                "--name",
                "stonith-enabled",
                "--update",
                "false",
            ],
        );
    }

    /// After `node` was cut off: waits until its corosync says the
    /// partition lost quorum, asking as fast as the node answers (no sleep:
    /// the loss must not be seen late), then until the node released the
    /// primary's role ([`NsNode::released_primary`]). Returns both moments;
    /// each wait is bounded by `timeout`.
    pub fn quorum_lost_then_released(&self, node: &str, timeout: Duration) -> (Instant, Instant) {
        let n = self.node(node);
        let start = Instant::now();
        let lost = loop {
            if n.quorate() == Some(false) {
                break Instant::now();
            }
            assert!(
                start.elapsed() < timeout,
                "{node} did not lose quorum within {timeout:?}\n{}",
                self.diagnostics()
            );
        };
        let released = crate::poll(
            &format!(
                "{node}: Redis no master, PostgreSQL read-only, the VIP {} released",
                self.vip
            ),
            timeout,
            || n.released_primary(&self.vip).then(Instant::now),
        );
        (lost, released)
    }

    /// When the last `pacemakerd` of the first boot was started.
    pub fn pacemaker_started(&self) -> Instant {
        self.pacemaker_started
    }

    /// The SMS gateway sink the stand-in app's celery sends to (clusters
    /// built with [`NsClusterBuilder::app`]); panics otherwise.
    #[track_caller]
    pub fn gateway(&self) -> &HttpSink {
        self.gateway
            .as_ref()
            .expect("the cluster was built without the app tier (NsClusterBuilder::app)")
    }

    /// The SMTP sink of the alerts (clusters built with
    /// [`NsClusterBuilder::alerts`]); panics otherwise.
    #[track_caller]
    pub fn alert_smtp(&self) -> &SmtpSink {
        &self
            .alert_sinks
            .as_ref()
            .expect("the cluster was built without alerts (NsClusterBuilder::alerts)")
            .0
    }

    /// The SMS gateway sink of the alerts; see [`NsCluster::alert_smtp`].
    #[track_caller]
    pub fn alert_sms(&self) -> &HttpSink {
        &self
            .alert_sinks
            .as_ref()
            .expect("the cluster was built without alerts (NsClusterBuilder::alerts)")
            .1
    }

    /// The clients' address on the cluster network (where the writer, the
    /// watcher and the sinks are).
    pub fn client_ip(&self) -> &str {
        &self.client_ip
    }

    /// What the in-node watcher saw over `[since, until]` (`CLOCK_MONOTONIC`
    /// ns: [`mono_now`], [`mono_of`]). See the module `watch`.
    pub fn watch_report(&self, since: u64, until: u64) -> WatchReport {
        self.watcher.report(since, until)
    }

    /// Whether the in-node watcher samples (`RAPIDPRO_TEST_WATCHER` is not
    /// `off`).
    pub fn watching(&self) -> bool {
        self.watcher.enabled()
    }

    /// Whether the cluster runs the application tier.
    pub fn has_app(&self) -> bool {
        self.builder.app
    }

    /// The nodes' PID 1s as they are now, for the watcher's per-node
    /// process checks ([`crate::workload::CeleryWatcher::start`]).
    pub fn node_inits(&self) -> NodeInits {
        NodeInits(
            self.nodes
                .iter()
                .map(|n| (n.name.clone(), n.procs.clone()))
                .collect(),
        )
    }

    /// Every fencing the harness carried out so far.
    pub fn fence_events(&self) -> Vec<FenceEvent> {
        self.fence.events()
    }

    /// The `ocf:rapidpro:stack` parameters every node gets (also passed to
    /// the configuration script), without `primary_host` (the VIP).
    pub fn stack_params(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("pgdata", PGDATA),
            ("datadir", PGDATA),
            ("pghost", PGHOST),
            ("pg_logfile", PG_LOGFILE),
            ("repl_password", REPL_PASSWORD),
            ("redis_config", REDIS_CONFIG),
            ("redis_socket", REDIS_SOCKET),
            ("state_dir", STATE_DIR),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if self.builder.tls {
            p.extend(
                TLS_PARAMS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        }
        if let (Some(pw), false) = (&self.builder.redis_password, self.builder.by_the_book) {
            p.push(("redis_password".to_owned(), pw.clone()));
        }
        for (k, v) in &self.builder.params {
            p.retain(|(name, _)| name != k);
            p.push((k.clone(), v.clone()));
        }
        p
    }

    /// Stores `value` as the CIB secret `param` of resource `stack` in every
    /// node, with `pcs-examples/rapidpro-secret.sh` (the value on its stdin,
    /// from the environment of the node's shell: never in an argument).
    fn store_secret(&self, param: &str, value: &str) {
        let script = Path::new(WORKSPACE).join(SECRET_SCRIPT);
        let sh = format!(
            "printf '%s\\n' \"$RAPIDPRO_SECRET\" | sh '{}' stack '{param}'",
            script.display()
        );
        for n in &self.nodes {
            let out = n
                .exec_env(
                    &["/bin/sh", "-c", &sh],
                    &[("RAPIDPRO_SECRET", value)],
                    Duration::from_secs(30),
                )
                .unwrap_or_else(|e| panic!("{e}"));
            if !out.success() {
                panic!(
                    "storing the secret {param} on {}: {}",
                    n.name,
                    out.failure_message()
                );
            }
        }
    }

    fn start_all(&mut self) {
        for n in &self.nodes {
            n.power_on(&self.files);
        }
        for n in &self.nodes {
            self.connect(n);
        }
        for n in &self.nodes {
            n.start_corosync();
        }
        for n in &self.nodes {
            n.start_pacemaker();
        }
        self.pacemaker_started = Instant::now();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.wait_members(&names, Duration::from_secs(60));
    }

    fn connect(&self, n: &NsNode) {
        let init = n
            .init_pid()
            .unwrap_or_else(|| panic!("{} is powered off", n.name));
        self.bridge.attach(n.id, init);
        n.configure_eth0(PREFIX).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until crm_mon on the first node of `names` shows every node of
    /// `names` online and a DC elected.
    #[track_caller]
    pub fn wait_members(&self, names: &[String], timeout: Duration) {
        let first = &names[0];
        poll(
            &format!("{names:?} online members with a DC, seen from {first}"),
            timeout,
            || {
                let st = self.status(first).ok()?;
                let online = st.online();
                let all = names.iter().all(|n| online.contains(n));
                (all && st.nodes.iter().any(|n| n.is_dc)).then_some(())
            },
        );
    }

    /// Applies `pcs-examples/rapidpro-cluster.pcs.sh` (`VARIANT=sandbox`), or
    /// the crmsh script, in node1 to a dump of the live CIB, then pushes its
    /// configuration section.
    fn apply_configuration(&self) {
        let n1 = &self.nodes[0];
        let cib = self.dir.join("cib-config.xml");
        let cib_s = cib.display().to_string();
        n1.sh(&format!("cibadmin --query > '{cib_s}'"))
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        // The passwords go as the scripts require: stored in every node
        // (cibsecret's layout), named in STACK_SECRETS, never in STACK_PARAMS.
        let (secrets, params): (Vec<_>, Vec<_>) = self
            .stack_params()
            .into_iter()
            .partition(|(k, _)| SECRET_PARAMS.contains(&k.as_str()));
        for (k, v) in &secrets {
            self.store_secret(k, v);
        }
        let secrets: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
        let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let script = Path::new(WORKSPACE).join(if self.builder.crmsh {
            CRM_SCRIPT
        } else {
            PCS_SCRIPT
        });
        let env = [
            format!("CIB={cib_s}"),
            "VARIANT=sandbox".to_owned(),
            format!("NODES={}", names.join(" ")),
            format!("VIP={}", self.vip),
            format!("VIP_CIDR={PREFIX}"),
            "VIP_NIC=eth0".to_owned(),
            format!("STACK_PARAMS={}", params.join(" ")),
            format!("STACK_SECRETS={}", secrets.join(" ")),
            format!("STACK_AGENT={}", self.builder.stack_agent),
            format!("APP={}", if self.builder.app { "yes" } else { "no" }),
            format!("APP_DIR={}", app::app_dir().display()),
            format!("STANDIN_ETC={}", app::STANDIN_ETC),
        ];
        // The quorum device: the script edits a copy of corosync.conf as it
        // edits a dump of the CIB; install_qdevice then does what an
        // administrator (or pcs, through pcsd) does with it.
        let qdevice = self.qnetd.as_ref().map(|q| {
            let conf = self.qdevice_conf();
            fs::copy(n1.host_path("etc-corosync/corosync.conf"), &conf)
                .unwrap_or_else(|e| panic!("cannot copy node1's corosync.conf: {e}"));
            [
                format!("QNETD_HOST={}", q.addr),
                format!("QNETD_GATEWAY={}", self.client_ip),
                format!("COROSYNC_CONF={}", conf.display()),
            ]
        });
        let alerts = self.alert_sinks.as_ref().map(|(smtp, sms)| {
            [
                format!(
                    "ALERT_RECIPIENTS={}",
                    self.builder.alert_recipients.join(" ")
                ),
                format!(
                    "ALERT_OPTIONS=smtp_server={} sms_url={}/sms?to={{to}}&text={{text}} \
                     send_timeout=5 deadline=20",
                    smtp.addr(),
                    sms.url()
                ),
            ]
        });
        // With a quorum device the script's own default applies (no fence
        // race is left to win).
        let fence_delay =
            (self.qnetd.is_none()).then(|| format!("FENCE_DELAY={}", self.builder.fence_delay));
        let ping = self
            .builder
            .ping_gateway
            .then(|| format!("PING_HOSTS={}", self.client_ip));
        let env: Vec<String> = env
            .into_iter()
            .chain(fence_delay)
            .chain(ping)
            .chain(alerts.into_iter().flatten())
            .chain(qdevice.into_iter().flatten())
            .chain(
                self.builder
                    .script_env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}")),
            )
            .collect();
        let mut args: Vec<&str> = vec!["env"];
        args.extend(env.iter().map(String::as_str));
        let script_s = script.display().to_string();
        // The crm script prints a crm shell script; crmsh edits the CIB
        // file named by CIB_file, as the script's header explains.
        let crm = format!(
            "set -e; sh '{script_s}' > '{cib_s}.crm'; CIB_file='{cib_s}' crm -f '{cib_s}.crm'"
        );
        if self.builder.crmsh {
            args.extend(["/bin/sh", "-c", &crm]);
        } else {
            args.extend(["/bin/sh", &script_s]);
        }
        let out = n1
            .exec(&args, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}"));
        if !out.success() {
            panic!("cluster configuration script: {}", out.failure_message());
        }
        let push = n1
            .exec(
                &["cibadmin", "--replace", "--xml-file", &cib_s],
                Duration::from_secs(60),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        if !push.success() {
            panic!("pushing the configuration: {}", push.failure_message());
        }
    }

    /// The copy of corosync.conf the configuration script edits when the
    /// cluster has a quorum device.
    fn qdevice_conf(&self) -> PathBuf {
        self.dir.join("corosync-qdevice.conf")
    }

    /// Puts the quorum device in service, as corosync-qdevice-net-certutil(8)
    /// describes it (and `pcs quorum device add` does through pcsd): the
    /// script's corosync.conf on every node; qnetd's certificate authority
    /// in every node's database; node1's certificate request signed by
    /// qnetd, imported on node1 and copied to the others; `corosync-cfgtool
    /// -R`; `corosync-qdevice` on every node. Returns once every node counts
    /// the device's vote.
    fn install_qdevice(&self) {
        let q = self.qnetd.as_ref().expect("a cluster with a quorum device");
        let conf = fs::read_to_string(self.qdevice_conf())
            .unwrap_or_else(|e| panic!("cannot read the script's corosync.conf: {e}"));
        assert!(
            conf.contains("model: net") && !conf.contains("two_node"),
            "the configuration script, given QNETD_HOST, did not add a quorum device:\n{conf}"
        );
        let ca = q.ca_cert().display().to_string();
        for n in &self.nodes {
            write_file(
                &n.host_path("etc-corosync/corosync.conf"),
                &conf,
                None,
                0o644,
            );
            n.run(&["corosync-qdevice-net-certutil", "-i", "-c", &ca])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let n1 = &self.nodes[0];
        n1.run(&["corosync-qdevice-net-certutil", "-r", "-n", "rapidpro"])
            .unwrap_or_else(|e| panic!("{e}"));
        let crt = q.sign(
            &n1.host_path("etc-corosync/qdevice/net/nssdb/qdevice-net-node.crq"),
            "rapidpro",
        );
        n1.run(&[
            "corosync-qdevice-net-certutil",
            "-M",
            "-c",
            &crt.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let p12 = n1
            .host_path("etc-corosync/qdevice/net/nssdb/qdevice-net-node.p12")
            .display()
            .to_string();
        for n in &self.nodes[1..] {
            n.run(&["corosync-qdevice-net-certutil", "-m", "-c", &p12])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        n1.run(&["corosync-cfgtool", "-R"])
            .unwrap_or_else(|e| panic!("{e}"));
        for n in &self.nodes {
            self.start_qdevice(n);
        }
        for n in &self.nodes {
            self.wait_qdevice_vote(&n.name, Duration::from_secs(60));
        }
    }

    /// Starts `corosync-qdevice` in node `n` (it daemonizes; tini adopts
    /// it). Right after a boot corosync may not answer its IPC yet, and
    /// qdevice then exits at once: tried again, for 20 s at most.
    fn start_qdevice(&self, n: &NsNode) {
        let deadline = Instant::now() + NS_TIMEOUT;
        while let Err(e) = n.run(&["corosync-qdevice"]) {
            if Instant::now() > deadline {
                panic!("{e}\n{}", n.tail("var-log/corosync/corosync.log", 30));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until node `name`'s quorum device is connected to qnetd and
    /// casts its vote (`corosync-qdevice-tool -s -v`).
    #[track_caller]
    pub fn wait_qdevice_vote(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !qdevice_vote_cast(&self.qdevice_tool(name)) {
            if Instant::now() > deadline {
                let n = self.node(name);
                let tool = self.qdevice_tool(name);
                panic!(
                    "{name} does not count the quorum device's vote after {timeout:?}:\n{}\n\
                     corosync-qdevice-tool -sv:\n{tool}\nqnetd:\n{}\n{}",
                    self.quorumtool(name),
                    self.qnetd_status(),
                    n.tail("var-log/corosync/corosync.log", 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `corosync-qdevice-tool -s -v` in node `name` (stdout and stderr).
    pub fn qdevice_tool(&self, name: &str) -> String {
        match self
            .node(name)
            .exec(&["corosync-qdevice-tool", "-s", "-v"], NS_TIMEOUT)
        {
            Ok(out) => format!("{}{}", out.stdout, out.stderr),
            Err(e) => e,
        }
    }

    /// `corosync-quorumtool -s` in node `name`.
    pub fn quorumtool(&self, name: &str) -> String {
        match self
            .node(name)
            .exec(&["corosync-quorumtool", "-s"], NS_TIMEOUT)
        {
            Ok(out) => out.stdout,
            Err(e) => e,
        }
    }

    /// `corosync-qnetd-tool -l -v` on the qnetd host, for messages.
    pub fn qnetd_status(&self) -> String {
        self.qnetd
            .as_ref()
            .map_or_else(String::new, QnetdHost::status)
    }

    /// The qnetd host's address (clusters with a quorum device).
    pub fn qnetd_addr(&self) -> Option<&str> {
        self.qnetd.as_ref().map(|q| q.addr.as_str())
    }

    /// Cuts the qnetd host's power: corosync-qnetd is gone.
    #[track_caller]
    pub fn qnetd_power_off(&self) {
        let q = self.qnetd.as_ref().expect("a cluster with a quorum device");
        let left = q.power_off();
        assert!(
            left.is_empty(),
            "power-off of the qnetd host: {}",
            left.join("; ")
        );
    }

    /// Boots the qnetd host again (same certificate authority).
    #[track_caller]
    pub fn qnetd_boot(&self) {
        let q = self.qnetd.as_ref().expect("a cluster with a quorum device");
        self.bridge.wait_port_gone(QNETD_PORT);
        q.power_on();
        self.bridge
            .attach(QNETD_PORT, q.init_pid().expect("the qnetd host is up"));
        q.start_daemon(PREFIX);
    }

    /// Cuts only the link between nodes `a` and `b`: each drops what it
    /// would send to the other (a blackhole route), while both still reach
    /// the clients, the gateway and the qnetd host.
    #[track_caller]
    pub fn cut_between(&self, a: &str, b: &str) {
        self.route_between(a, b, "add");
    }

    /// Undoes [`NsCluster::cut_between`].
    #[track_caller]
    pub fn mend_between(&self, a: &str, b: &str) {
        self.route_between(a, b, "del");
    }

    /// Adds or deletes the blackhole routes; a node that is down (fenced)
    /// has lost its routes with its namespaces and is skipped.
    fn route_between(&self, a: &str, b: &str, verb: &str) {
        for (from, to) in [(a, b), (b, a)] {
            if !self.node(from).is_up() {
                continue;
            }
            let dest = format!("{}/32", self.node(to).addr);
            self.node(from)
                .run(&["ip", "route", verb, "blackhole", &dest])
                .unwrap_or_else(|e| panic!("ip route {verb} blackhole {dest} on {from}: {e}"));
        }
    }

    /// Runs `args` inside node `name` (e.g. `&["crm_resource", "--ban",
    /// …]`), with a 60 s deadline.
    #[track_caller]
    pub fn crm(&self, name: &str, args: &[&str]) -> CmdOutput {
        self.node(name)
            .exec(args, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `crm_mon -1 --output-as=xml` in node `name`.
    pub fn crm_mon_xml(&self, name: &str) -> Result<String, String> {
        self.node(name).run(&["crm_mon", "-1", "--output-as=xml"])
    }

    /// `crm_mon -1 -rf` (text, with inactive resources and fail counts),
    /// for messages.
    pub fn crm_mon_text(&self, name: &str) -> String {
        match self.node(name).exec(&["crm_mon", "-1", "-rfA"], NS_TIMEOUT) {
            Ok(out) => out.stdout,
            Err(e) => e,
        }
    }

    /// crm_mon's view from node `name`, parsed.
    pub fn status(&self, name: &str) -> Result<CrmStatus, String> {
        CrmStatus::parse(&self.crm_mon_xml(name)?)
    }

    /// The first node that is up, to ask crm_mon.
    fn any_up(&self) -> Option<&NsNode> {
        self.nodes.iter().find(|n| n.is_up())
    }

    /// The node running the Promoted instance of `ocf:rapidpro:stack`, as
    /// the first running node's crm_mon shows it; `None` if there is no
    /// such node or more than one.
    pub fn promoted_node(&self) -> Option<String> {
        let n = self.any_up()?;
        let promoted = self
            .status(&n.name)
            .ok()?
            .nodes_with_role(STACK_AGENT, "Promoted");
        match promoted.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        }
    }

    /// The id of the promotable clone of `ocf:rapidpro:stack`.
    #[track_caller]
    pub fn stack_clone_id(&self) -> String {
        let n = self.any_up().expect("no node is up");
        let st = self.status(&n.name).unwrap_or_else(|e| panic!("{e}"));
        let agent = &self.builder.stack_agent;
        let id = st.of_agent(agent).find_map(|r| r.clone.clone());
        id.unwrap_or_else(|| panic!("no clone of {agent} in crm_mon:\n{st:?}"))
    }

    /// `crm_resource --wait` on node `name` (bounded by `timeout`): returns
    /// once the cluster has no pending actions. Panics (with crm_mon) if it
    /// does not settle in time.
    #[track_caller]
    pub fn wait_settled(&self, name: &str, timeout: Duration) {
        let secs = format!("{}s", timeout.as_secs().max(1));
        let out = self
            .node(name)
            .exec(
                &["crm_resource", "--wait", "--timeout", &secs],
                timeout + Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", self.crm_mon_text(name)));
        if !out.success() {
            panic!(
                "cluster not settled after {secs}: {}\n{}",
                out.failure_message(),
                self.crm_mon_text(name)
            );
        }
    }

    /// Cuts node `name`'s power: SIGKILL to its PID 1. Returns when its
    /// namespaces are gone.
    #[track_caller]
    pub fn power_off(&self, name: &str) {
        let left = self.node(name).power_off();
        assert!(left.is_empty(), "power-off of {name}: {}", left.join("; "));
    }

    /// Boots node `name` again with the same directories: fresh `/run`,
    /// network, corosync and pacemakerd; it rejoins the cluster. Returns
    /// once it is an online member (seen from itself).
    #[track_caller]
    pub fn boot(&self, name: &str) {
        self.boot_all(&[name]);
    }

    /// Boots the nodes `names` together, as after a power loss of several:
    /// every one powered on and linked, then Corosync on every one, then
    /// Pacemaker. Booted one after the other instead, the first ones could
    /// form a quorate partition and fence a later one for startup fencing
    /// while it is still booting (a loaded CI run saw the cold start of 3
    /// nodes fail so: `nsenter: cannot open /proc/PID/ns/ipc`). Waits until
    /// every node up is an online member.
    pub fn boot_all(&self, names: &[&str]) {
        for name in names {
            let n = self.node(name);
            assert!(!n.is_up(), "{name} is already up");
            // The veth of the previous boot disappears asynchronously.
            self.bridge.wait_port_gone(n.id);
            // An unfinished fence request for it is void now.
            let _ = fs::remove_file(self.files.fence_dir.join(format!("{name}.request")));
            n.power_on(&self.files);
            self.connect(n);
        }
        for name in names {
            self.node(name).start_corosync();
        }
        if self.qnetd.is_some() {
            for name in names {
                self.start_qdevice(self.node(name));
            }
        }
        for name in names {
            self.node(name).start_pacemaker();
        }
        let up: Vec<String> = names
            .iter()
            .map(|n| n.to_string())
            .chain(
                self.nodes
                    .iter()
                    .filter(|o| !names.contains(&o.name.as_str()) && o.is_up())
                    .map(|o| o.name.clone()),
            )
            .collect();
        let first = &up[0];
        poll(
            &format!("{up:?} online members with a DC, seen from {first}"),
            Duration::from_secs(60),
            || {
                // A fence of the booting node (one requested before it was
                // powered on, say) ends the wait at once: the caller may
                // boot it again (`soak::boot_at_once` does).
                if let Some(down) = names.iter().find(|n| !self.node(n).is_up()) {
                    panic!("{down} went down while booting (fenced?)");
                }
                let st = self.status(first).ok()?;
                let online = st.online();
                let all = up.iter().all(|n| online.contains(n));
                (all && st.nodes.iter().any(|n| n.is_dc)).then_some(())
            },
        );
    }

    /// SIGKILL to node `name`'s PostgreSQL postmaster (`"postgres"`, pid
    /// from `postmaster.pid`) or Redis (`"redis"`, pid from the agent's
    /// pidfile under the state directory); waits until it is gone.
    #[track_caller]
    pub fn kill9(&self, name: &str, service: &str) {
        let pidfile = match service {
            "postgres" => format!("{PGDATA}/postmaster.pid"),
            "redis" => format!("$(ls {STATE_DIR}/redis/*.pid | head -n1)"),
            other => panic!("kill9: unknown service {other:?} (postgres or redis)"),
        };
        let pid = self
            .node(name)
            .sh(&format!(
                "pid=$(head -n1 {pidfile}) && kill -KILL \"$pid\" && echo \"$pid\""
            ))
            .unwrap_or_else(|e| panic!("kill9 {service} on {name}: {e}"));
        let pid = pid.trim().to_owned();
        poll(
            &format!("{service} (pid {pid} in {name}) gone"),
            Duration::from_secs(10),
            || {
                self.node(name)
                    .exec(&["kill", "-0", &pid], NS_TIMEOUT)
                    .ok()
                    .filter(|o| !o.success())
                    .map(|_| ())
            },
        );
    }

    /// SIGKILL to node `name`'s corosync (pid from `/run/corosync.pid`,
    /// falling back to `pidof` inside the node's own PID namespace).
    #[track_caller]
    pub fn kill_corosync(&self, name: &str) {
        self.node(name)
            .sh("pid=$(cat /run/corosync.pid 2>/dev/null || pidof corosync) && kill -KILL $pid")
            .unwrap_or_else(|e| panic!("kill corosync on {name}: {e}"));
    }

    /// Fills the file system of node `name`'s `/var/lib/postgresql` (see
    /// [`NsClusterBuilder::pg_disk_mb`]) with files `fill.*` until less than
    /// 64 KiB is left (PostgreSQL may free some again: call it again to
    /// keep the disk full). Returns the bytes left.
    #[track_caller]
    pub fn fill_disk(&self, name: &str) -> u64 {
        assert!(
            self.builder.pg_disk_mb.is_some(),
            "fill_disk needs NsClusterBuilder::pg_disk_mb"
        );
        // dd stops at ENOSPC (its exit status then is 1); small blocks
        // take the last partial megabyte. The file system can give some
        // space back just after (ext4 releases the blocks it had reserved
        // for delayed allocation at the sync; PostgreSQL removes old WAL):
        // fill again, a few times, before calling it a failure.
        let df = || -> u64 {
            let left = self
                .node(name)
                .sh("df --output=avail -B1 /var/lib/postgresql | tail -n1")
                .unwrap_or_else(|e| panic!("df on {name}: {e}"));
            left.trim()
                .parse()
                .unwrap_or_else(|e| panic!("df on {name}: {left:?}: {e}"))
        };
        let mut left = u64::MAX;
        for _ in 0..5 {
            let _ = self
                .node(name)
                .sh("f=/var/lib/postgresql/fill.$(date +%s%N); \
                 dd if=/dev/zero of=$f.1 bs=1M 2>/dev/null; \
                 dd if=/dev/zero of=$f.2 bs=4k 2>/dev/null; sync");
            left = df();
            if left < 64 << 10 {
                return left;
            }
        }
        panic!("{name}'s /var/lib/postgresql is not full after 5 fills: {left} bytes left");
    }

    /// Undoes [`NsCluster::fill_disk`].
    #[track_caller]
    pub fn free_disk(&self, name: &str) {
        self.node(name)
            .sh("rm -f /var/lib/postgresql/fill.*")
            .unwrap_or_else(|e| panic!("free disk on {name}: {e}"));
    }

    /// Takes node `name`'s link down on the bridge side: it keeps running,
    /// alone.
    #[track_caller]
    pub fn partition(&self, name: &str) {
        self.bridge.set_port(self.node(name).id, false);
    }

    /// Undoes [`NsCluster::partition`].
    #[track_caller]
    pub fn heal(&self, name: &str) {
        self.bridge.set_port(self.node(name).id, true);
    }

    /// What a failing test needs: crm_mon of a running node, and per node
    /// the tails of the PostgreSQL log and of Pacemaker's log lines about
    /// the agent.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        if let Some(n) = self.any_up() {
            s.push_str(&format!(
                "--- crm_mon on {}\n{}\n",
                n.name,
                self.crm_mon_text(&n.name)
            ));
        }
        for n in &self.nodes {
            s.push_str(&n.tail("var-log/postgresql/postgresql-15-main.log", 15));
            let log = fs::read_to_string(n.host_path("var-log/pacemaker/pacemaker.log"))
                .unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("stack")
                        && (l.contains("error") || l.contains("warning") || l.contains("notice"))
                        || l.contains("fence")
                })
                .collect();
            let tail = &lines[lines.len().saturating_sub(25)..];
            s.push_str(&format!(
                "--- {} pacemaker.log, agent and fencing lines (last {})\n{}\n",
                n.name,
                tail.len(),
                tail.join("\n")
            ));
        }
        s
    }

    fn teardown(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "harness: cluster {}\n{}",
                self.dir.path().display(),
                self.diagnostics()
            );
        }
        // The samplers leave the nodes' namespaces before the nodes go.
        self.watcher.stop();
        // No fencing during a shutdown of the whole cluster.
        self.fence.stop();
        // Maintenance mode first: Pacemaker then leaves the resources alone
        // and stops in a second or two, and the power-off below ends the
        // servers. Stopping them through the cluster takes up to a minute:
        // the VIP goes before the primary's demote, and PostgreSQL's
        // shutdown waits (wal_sender_timeout) for the standby's final
        // acknowledgement, which can no longer reach the VIP.
        if let Some(n) = self.any_up() {
            let _ = n.exec(
                &[
                    "crm_attribute",
                    "--type",
                    "crm_config",
                    "--name",
                    "maintenance-mode",
                    "--update",
                    "true",
                ],
                Duration::from_secs(10),
            );
        }
        for n in &self.nodes {
            n.begin_stop();
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut left = Vec::new();
        for n in &self.nodes {
            left.extend(n.finish_stop(deadline));
        }
        left.extend(self.bridge.stop());
        for line in left {
            eprintln!("harness: teardown: {line}");
        }
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The PID 1s of a cluster's nodes, read when asked (they change at every
/// power-off and boot): see [`NsCluster::node_inits`].
#[derive(Debug, Clone)]
pub struct NodeInits(Vec<(String, node::ProcsCell)>);

impl NodeInits {
    /// `(node name, host pid of its PID 1)` of every node powered on now.
    pub fn current(&self) -> Vec<(String, i32)> {
        self.0
            .iter()
            .filter_map(|(name, cell)| node::lock(cell).map(|p| (name.clone(), p.init)))
            .collect()
    }
}

/// What the namespaced cluster needs besides the template's needs.
fn preflight() {
    template::preflight();
    for p in [
        TINI,
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/sbin/corosync",
        "/usr/sbin/pacemakerd",
        "/usr/sbin/pcs",
        "/usr/lib/ocf/resource.d/heartbeat/IPaddr2",
    ] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: run scripts/install-deps (tini, corosync, pacemaker, pcs, resource-agents)"
        );
    }
    for p in [PCS_SCRIPT, FENCE_AGENT] {
        let path = Path::new(WORKSPACE).join(p);
        assert!(path.exists(), "{} is missing", path.display());
    }
}

/// Where the package puts the agent, the tools and its documentation
/// (relative to `/`).
const DEB_AGENT: &str = "usr/lib/ocf/resource.d/rapidpro/stack";
const DEB_SBIN: [&str; 2] = ["usr/sbin/rapidproctl", "usr/sbin/rapidpro-alert"];
const DEB_DOC: &str = "usr/share/doc";
const DEB_PCS_EXAMPLE: &str = "usr/share/doc/rapidpro-ha/examples/rapidpro-cluster.pcs.sh";

/// Extracts the package `deb` into `root` (`dpkg-deb -x`); returns its agent,
/// its `/usr/sbin` tools and its `/usr/share/doc` (holding `rapidpro-ha/`).
/// Panics if one is missing.
fn extract_deb(deb: &Path, root: &Path) -> (PathBuf, Vec<PathBuf>, Option<PathBuf>) {
    make_dir(root, 0o755);
    let mut x = clean_command("/usr/bin/dpkg-deb");
    x.arg("-x").arg(deb).arg(root);
    must(x, NS_TIMEOUT);
    let found = |rel: &str| {
        let path = root.join(rel);
        assert!(
            path.is_file(),
            "{} has no /{rel} (extracted into {})",
            deb.display(),
            root.display()
        );
        path
    };
    found(DEB_PCS_EXAMPLE);
    (
        found(DEB_AGENT),
        DEB_SBIN.iter().map(|rel| found(rel)).collect(),
        Some(root.join(DEB_DOC)),
    )
}

fn copy_executable(from: &Path, to: &Path) {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
    set_mode(to, 0o755);
}

/// Whether `corosync-qdevice-tool -s -v` shows the device connected to
/// qnetd and its vote cast (`State: Connected`, `Poll timer running: Yes
/// (cast vote)`).
fn qdevice_vote_cast(tool: &str) -> bool {
    let field = |name: &str| {
        tool.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
            .map(str::to_owned)
    };
    field("State:").as_deref() == Some("Connected")
        && field("Poll timer running:").as_deref() == Some("Yes (cast vote)")
}

/// `corosync.conf`: knet without crypto, a short token for fast tests,
/// multi-line node blocks (one-line blocks are rejected), `two_node` for
/// two nodes, `sched_rr: no`, logging to a file.
fn corosync_conf(names: &[String], addr: &dyn Fn(usize) -> String, token_ms: u32) -> String {
    let mut s = format!(
        "totem {{\n    version: 2\n    cluster_name: rapidpro\n    transport: knet\n    \
         crypto_cipher: none\n    crypto_hash: none\n    token: {token_ms}\n}}\n\nnodelist {{\n"
    );
    for (i, name) in names.iter().enumerate() {
        let id = i + 1;
        s.push_str(&format!(
            "    node {{\n        name: {name}\n        nodeid: {id}\n        ring0_addr: {}\n    }}\n",
            addr(id)
        ));
    }
    s.push_str("}\n\nquorum {\n    provider: corosync_votequorum\n");
    if names.len() == 2 {
        s.push_str("    two_node: 1\n");
    }
    // Corosync keeps the priority it is started with (see
    // `NsNode::start_corosync`).
    s.push_str(
        "}\n\nsystem {\n    sched_rr: no\n}\n\nlogging {\n    to_logfile: yes\n    logfile: /var/log/corosync/corosync.log\n    \
         to_syslog: no\n    to_stderr: no\n    timestamp: on\n}\n",
    );
    s
}

/// An empty CIB (from `cibadmin --empty`, so it matches the installed
/// Pacemaker) with `dc-deadtime=2s`: otherwise the first election waits 20 s.
fn seed_cib(dir: &Path) -> String {
    let file = dir.join("seed-cib.xml");
    let mut empty = clean_command("/usr/sbin/cibadmin");
    empty.arg("--empty");
    write_file(&file, &must(empty, NS_TIMEOUT), None, 0o644);
    let mut set = clean_command("/usr/sbin/crm_attribute");
    set.env(crate::cib::CIB_FILE_ENV, &file).args([
        "--type",
        "crm_config",
        "--name",
        "dc-deadtime",
        "--update",
        "2s",
    ]);
    must(set, NS_TIMEOUT);
    fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
}
