//! One node of a namespaced cluster: its directories on the host, its PID 1
//! (tini running `sh/node-init.sh`), its daemons, and commands run inside it
//! with `timeout nsenter`.
//!
//! Inside the node, every path is the standard Debian one (the init script
//! bind-mounts the node's own directories there), so all nodes share one set
//! of resource parameters, as in production:
//!
//! | inside the node | on the host, under the node's directory |
//! |---|---|
//! | `/etc/corosync` | `etc-corosync/` (`corosync.conf`) |
//! | `/var/lib/corosync` | `var-lib-corosync/` |
//! | `/var/lib/pacemaker` | `var-lib-pacemaker/` (`cib/cib.xml` seeded) |
//! | `/var/log` | `var-log/` (`pacemaker/pacemaker.log`, `corosync/`, `postgresql/`, `redis/`) |
//! | `/var/lib/postgresql` | `var-lib-postgresql/` (`15/main` = a copy of the template) |
//! | `/var/lib/redis` | `var-lib-redis/` |
//! | `/etc/redis` | `etc-redis/` (`redis.conf`) |
//! | `/etc/systemd/system` | `etc-systemd-system/` (empty: no unit enabled) |
//! | `/run`, `/dev/shm` | fresh tmpfs at every boot |
//!
//! A node laid out as Debian ships it ([`Layout::Debian`]) starts with no
//! PostgreSQL cluster at all and Debian's own `redis.conf`, and also has:
//!
//! | inside the node | on the host, under the node's directory |
//! |---|---|
//! | `/etc/postgresql` | `etc-postgresql/` (empty: `pg_createcluster` fills it) |
//! | `/var/lib/postgresql` | `var-lib-postgresql/` (empty, owned by postgres) |
//! | `/etc/redis` | `etc-redis/` (a copy of the host's `/etc/redis/redis.conf`, checked unchanged from the package) |
//! | `/etc/systemd/system` | `etc-systemd-system/` (a copy of the host's) |
//! | `/etc/rc0.d` … `/etc/rc6.d`, `/etc/rcS.d` | `etc-rc0.d/` … (copies of the host's: `systemctl disable` runs update-rc.d) |
//! | `/root` | `root-home/` (empty; where the test's root shell starts) |

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cmd::{clean_command, must, run_command, CmdOutput};
use crate::dir::{append, chown_to, make_dir, set_mode, write_file};
use crate::proc;
use crate::{PG_USER, REDIS_CLI, REDIS_USER, REPL_USER};

/// Default deadline of one command inside a node.
pub(crate) const NS_TIMEOUT: Duration = Duration::from_secs(20);
/// `timeout`(1) and `nsenter`(1).
const TIMEOUT_BIN: &str = "/usr/bin/timeout";
const NSENTER: &str = "/usr/bin/nsenter";
/// Debian's tini: a PID 1 that reaps every orphan as soon as it dies.
pub(crate) const TINI: &str = "/usr/bin/tini";
/// Every node's corosync runs `SCHED_RR` at this priority: one below the
/// watcher's samplers (see [`NsNode::start_corosync`]).
pub(crate) const COROSYNC_RT_PRIORITY: &str = "98";
/// The `PATH` of commands and daemons inside a node.
const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// PostgreSQL data (and configuration) directory inside every node.
pub const PGDATA: &str = "/var/lib/postgresql/15/main";
/// PostgreSQL's socket directory inside every node.
pub const PGHOST: &str = "/run/postgresql";
/// PostgreSQL's log (`pg_ctl -l`) inside every node.
pub const PG_LOGFILE: &str = "/var/log/postgresql/postgresql-15-main.log";
/// The base Redis configuration inside every node.
pub const REDIS_CONFIG: &str = "/etc/redis/redis.conf";
/// The Redis socket the agent configures, inside every node.
pub const REDIS_SOCKET: &str = "/run/redis/rapidpro-ha.sock";
/// The agent's state directory inside every node (tmpfs: gone at power-off).
pub const STATE_DIR: &str = "/run/rapidpro-ha";
/// The CA certificate inside every node, for PostgreSQL (`sslrootcert`,
/// readable by the walreceiver).
pub const PG_CA_FILE: &str = "/var/lib/postgresql/ca.crt";
/// The node's Redis certificate, key and CA inside every node.
pub const REDIS_TLS_CERT: &str = "/var/lib/redis/tls/node.crt";
/// See [`REDIS_TLS_CERT`].
pub const REDIS_TLS_KEY: &str = "/var/lib/redis/tls/node.key";
/// See [`REDIS_TLS_CERT`].
pub const REDIS_TLS_CA: &str = "/var/lib/redis/tls/ca.crt";
/// The agent parameters of a cluster built with `NsClusterBuilder::tls`.
pub const TLS_PARAMS: &[(&str, &str)] = &[
    ("sslmode", "verify-full"),
    ("sslrootcert", PG_CA_FILE),
    ("redis_tls", "true"),
    ("redis_tls_cert", REDIS_TLS_CERT),
    ("redis_tls_key", REDIS_TLS_KEY),
    ("redis_tls_ca", REDIS_TLS_CA),
];
/// Pacemaker's log inside every node.
pub const PACEMAKER_LOG: &str = "/var/log/pacemaker/pacemaker.log";

/// The processes of a running node, as host pids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Procs {
    /// The `unshare` process (our child); it exits when PID 1 dies.
    pub(crate) unshare: i32,
    /// The node's PID 1 (tini), the child of `unshare`.
    pub(crate) init: i32,
    /// `pacemakerd`, once started.
    pub(crate) pacemakerd: Option<i32>,
}

/// The running processes of a node; `None` while it is powered off. Shared
/// with the fence watcher, which powers nodes off.
pub(crate) type ProcsCell = Arc<Mutex<Option<Procs>>>;

/// Locks a [`ProcsCell`]; a panic while holding it leaves plain pids behind,
/// so a poisoned lock is still usable.
pub(crate) fn lock(cell: &ProcsCell) -> MutexGuard<'_, Option<Procs>> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every node's boot needs from the cluster (host paths).
#[derive(Debug)]
pub(crate) struct BootFiles {
    pub(crate) init_script: PathBuf,
    pub(crate) fence_dir: PathBuf,
    pub(crate) ocf_extra: PathBuf,
    pub(crate) sbin_extra: PathBuf,
    /// Holds `rapidpro-ha/`, the package's documentation (clusters
    /// installed from the package), overlaid on `/usr/share/doc`.
    pub(crate) doc_extra: Option<PathBuf>,
}

/// How a node's PostgreSQL and Redis are laid out before the test starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout<'a> {
    /// A copy of the harness's template data directory (configuration
    /// inside PGDATA, replication role and test tables made), and a Redis
    /// configuration of the harness's own.
    Template(&'a Path),
    /// As Debian's packages ship them: no PostgreSQL cluster (the test
    /// makes it, as the README says), Debian's unchanged `redis.conf`.
    Debian,
}

/// Debian's Redis configuration, and the package whose conffile it is.
const HOST_REDIS_CONF: &str = "/etc/redis/redis.conf";
const REDIS_PACKAGE: &str = "redis-server";
/// Directories of the host copied per node in the Debian layout, with the
/// name of their copy.
const COPIED_ETC: [(&str, &str); 9] = [
    ("/etc/systemd/system", "etc-systemd-system"),
    ("/etc/rc0.d", "etc-rc0.d"),
    ("/etc/rc1.d", "etc-rc1.d"),
    ("/etc/rc2.d", "etc-rc2.d"),
    ("/etc/rc3.d", "etc-rc3.d"),
    ("/etc/rc4.d", "etc-rc4.d"),
    ("/etc/rc5.d", "etc-rc5.d"),
    ("/etc/rc6.d", "etc-rc6.d"),
    ("/etc/rcS.d", "etc-rcS.d"),
];

/// One node of an [`super::NsCluster`].
#[derive(Debug)]
pub struct NsNode {
    /// `node1`, `node2`, …: host name, corosync and Pacemaker node name.
    pub name: String,
    /// 1, 2, …: corosync node id.
    pub id: usize,
    /// The node's address on the cluster network (`eth0`).
    pub addr: String,
    /// The node's directory on the host.
    pub dir: PathBuf,
    pub(crate) procs: ProcsCell,
    /// Redis's `requirepass`, for [`NsNode::redis_cli`] (given to redis-cli
    /// in its environment, `REDISCLI_AUTH`).
    pub(crate) redis_password: Option<String>,
}

/// `timeout -k 2 <t> nsenter -t <pid> <flags> -- <args>`, with a clean
/// environment, run from `/`.
pub(crate) fn in_namespaces(pid: i32, flags: &[&str], args: &[&str], t: Duration) -> Command {
    let mut cmd = clean_command(TIMEOUT_BIN);
    cmd.env("PATH", NODE_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .args(["-k", "2", &format!("{}", t.as_secs().max(1))])
        .arg(NSENTER)
        .args(["-t", &pid.to_string()])
        .args(flags)
        .arg("--")
        .args(args);
    cmd
}

/// Starts a long-running `cmd` (which begins with `setsid`, so it runs in a
/// session of its own and the harness's reaper collects it when it dies),
/// stdin from `/dev/null`, stdout and stderr appended to `log`. Returns its
/// pid. Nobody waits on the `Child`: the reaper does (see `reaper.rs`).
pub(crate) fn spawn_background(mut cmd: Command, log: &Path) -> i32 {
    crate::reaper::ensure_started();
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot dup {}: {e}", log.display()));
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // Not waited for here on purpose: the child runs in a session of its
    // own, so the harness's reaper collects it once it dies (`reaper.rs`),
    // and the teardown waits for that by PID (`proc::wait_reaped`).
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    child.id() as i32
}

/// What a host of the sandbox (a node, the qnetd host) runs under `setsid`:
/// fresh mount, UTS, IPC, network and PID namespaces with tini as PID 1
/// running `/bin/sh`; the init script or `-c` command follows.
pub(crate) const UNSHARE_HOST: [&str; 14] = [
    "/usr/bin/unshare",
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "--pid",
    "--fork",
    "--mount-proc",
    "--propagation",
    "private",
    "--",
    TINI,
    "--",
    "/bin/sh",
];

/// Starts `cmd` (`setsid unshare … tini -- …`, whose init script creates
/// `ready` once it has built the host's view) in the background, its
/// output appended to `out`; waits until `ready` exists. Returns the host
/// pids of `unshare` and of the namespaces' PID 1 (its child). Panics with
/// `out` if `unshare` exits first. `host` names the host in messages.
pub(crate) fn start_namespaces(cmd: Command, out: &Path, ready: &Path, host: &str) -> (i32, i32) {
    let unshare = spawn_background(cmd, out);
    let what = format!("{host}'s PID 1 has built the host");
    let init = crate::poll(&what, NS_TIMEOUT, || {
        if !proc::alive(unshare) {
            let log = fs::read_to_string(out).unwrap_or_default();
            panic!("{host}: unshare exited before the host was ready:\n{log}");
        }
        let init = proc::children(unshare).into_iter().next()?;
        ready.exists().then_some(init)
    });
    (unshare, init)
}

impl NsNode {
    /// Lays out node `id` under `parent`: directories with the owners the
    /// daemons need, `corosync.conf`, a seed CIB, and PostgreSQL and Redis
    /// as `layout` says (the template: a copy listening on every address of
    /// the node's own network namespace, and the base Redis configuration).
    pub(crate) fn create(
        parent: &Path,
        id: usize,
        addr: String,
        corosync_conf: &str,
        seed_cib: &str,
        layout: Layout<'_>,
        subnet: &str,
    ) -> NsNode {
        let name = format!("node{id}");
        let dir = parent.join(&name);
        make_dir(&dir, 0o755);
        for d in [
            "etc-corosync",
            "var-lib-corosync",
            "var-log",
            "etc-redis",
            "etc-systemd-system",
        ] {
            make_dir(&dir.join(d), 0o755);
        }
        write_file(
            &dir.join("etc-corosync/corosync.conf"),
            corosync_conf,
            None,
            0o644,
        );

        let pcmk = dir.join("var-lib-pacemaker");
        make_dir(&pcmk, 0o755);
        for d in ["cib", "pengine", "blackbox", "cores"] {
            let p = pcmk.join(d);
            make_dir(&p, 0o750);
            chown_to(&p, "hacluster");
        }
        write_file(
            &pcmk.join("cib/cib.xml"),
            seed_cib,
            Some("hacluster"),
            0o600,
        );

        let log = dir.join("var-log");
        for (d, owner, mode) in [
            ("pacemaker", Some("hacluster"), 0o770),
            ("crmsh", None, 0o755),
            ("corosync", None, 0o755),
            ("postgresql", Some(PG_USER), 0o755),
            ("redis", Some(REDIS_USER), 0o755),
        ] {
            let p = log.join(d);
            make_dir(&p, mode);
            if let Some(owner) = owner {
                chown_to(&p, owner);
            }
        }

        let redis = dir.join("var-lib-redis");
        make_dir(&redis, 0o750);
        chown_to(&redis, REDIS_USER);

        let template = match layout {
            Layout::Template(template) => template,
            Layout::Debian => {
                Self::lay_out_debian(&dir);
                return NsNode {
                    name,
                    id,
                    addr,
                    dir,
                    procs: Arc::new(Mutex::new(None)),
                    redis_password: None,
                };
            }
        };
        let pg = dir.join("var-lib-postgresql");
        make_dir(&pg.join("15"), 0o755);
        chown_to(&pg, PG_USER);
        chown_to(&pg.join("15"), PG_USER);
        let pgdata = pg.join("15/main");
        let mut cp = clean_command("/bin/cp");
        cp.arg("-a").arg(template).arg(&pgdata);
        must(cp, Duration::from_secs(120));
        append(
            &pgdata.join("postgresql.conf"),
            &format!(
                "# namespaced cluster node\nlisten_addresses = '*'\nport = 5432\n\
                 unix_socket_directories = '{PGHOST}'\n"
            ),
        );
        append(
            &pgdata.join("pg_hba.conf"),
            &format!(
                "host all all {subnet} scram-sha-256\n\
                 host replication {REPL_USER} {subnet} scram-sha-256\n"
            ),
        );
        chown_to(&pgdata, PG_USER);
        set_mode(&pgdata, 0o700);

        write_file(
            &dir.join("etc-redis/redis.conf"),
            "bind 0.0.0.0\nprotected-mode no\ndir /var/lib/redis\nsave \"\"\nappendonly no\n\
             repl-diskless-sync-delay 0\nlogfile /var/log/redis/redis-server.log\ndaemonize no\n",
            None,
            0o644,
        );

        NsNode {
            name,
            id,
            addr,
            dir,
            procs: Arc::new(Mutex::new(None)),
            redis_password: None,
        }
    }

    /// Gives the node a certificate from `ca` for its address, the VIP,
    /// `localhost` and `127.0.0.1` (any node may hold the VIP), turns on
    /// PostgreSQL's `ssl` and makes every TCP line of `pg_hba.conf`
    /// `hostssl` (see [`TLS_PARAMS`] for the agent's side).
    pub(crate) fn use_tls(&self, ca: &crate::TestCa, vip: &str, subnet: &str) {
        let issued = ca.issue(&self.name, &[vip, &self.addr, "localhost", "127.0.0.1"]);
        let pg = self.dir.join("var-lib-postgresql");
        let pgdata = pg.join("15/main");
        write_file(
            &pgdata.join("server.crt"),
            &issued.cert_pem,
            Some(PG_USER),
            0o644,
        );
        write_file(
            &pgdata.join("server.key"),
            &issued.key_pem,
            Some(PG_USER),
            0o600,
        );
        write_file(&pg.join("ca.crt"), &ca.ca_pem(), Some(PG_USER), 0o644);
        append(&pgdata.join("postgresql.conf"), "ssl = on\n");
        write_file(
            &pgdata.join("pg_hba.conf"),
            &format!(
                "local all all peer\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostssl replication all 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all {subnet} scram-sha-256\n\
                 hostssl replication {REPL_USER} {subnet} scram-sha-256\n"
            ),
            Some(PG_USER),
            0o600,
        );
        let tls = self.dir.join("var-lib-redis/tls");
        make_dir(&tls, 0o750);
        chown_to(&tls, REDIS_USER);
        write_file(
            &tls.join("node.crt"),
            &issued.cert_pem,
            Some(REDIS_USER),
            0o644,
        );
        write_file(
            &tls.join("node.key"),
            &issued.key_pem,
            Some(REDIS_USER),
            0o600,
        );
        write_file(&tls.join("ca.crt"), &ca.ca_pem(), Some(REDIS_USER), 0o644);
    }

    /// The Debian layout of [`Layout::Debian`] (see the module docs): empty
    /// `/etc/postgresql` and `/var/lib/postgresql` owned by postgres, as the
    /// postgresql-common package leaves them before `pg_createcluster`;
    /// Debian's `redis.conf`, copied from the host after checking that it is
    /// the package's conffile unchanged (its md5 in `dpkg-query`), with the
    /// package's owner and modes; copies of the host's systemd and SysV
    /// link directories; an empty home for root.
    fn lay_out_debian(dir: &Path) {
        for d in ["etc-postgresql", "var-lib-postgresql"] {
            let p = dir.join(d);
            make_dir(&p, 0o755);
            chown_to(&p, PG_USER);
        }
        let shipped = conffile_md5(REDIS_PACKAGE, HOST_REDIS_CONF);
        let mut md5 = clean_command("/usr/bin/md5sum");
        md5.arg(HOST_REDIS_CONF);
        let actual = must(md5, NS_TIMEOUT);
        assert_eq!(
            actual.split_whitespace().next(),
            Some(shipped.as_str()),
            "the host's {HOST_REDIS_CONF} is not {REDIS_PACKAGE}'s conffile as shipped \
             (md5 {shipped} in dpkg-query): a by-the-book node needs Debian's unchanged file"
        );
        let etc_redis = dir.join("etc-redis");
        let conf = etc_redis.join("redis.conf");
        fs::copy(HOST_REDIS_CONF, &conf)
            .unwrap_or_else(|e| panic!("cannot copy {HOST_REDIS_CONF} to {}: {e}", conf.display()));
        // The package's owners and modes: /etc/redis redis:redis 2770,
        // redis.conf redis:redis 0640.
        for (p, mode) in [(&etc_redis, 0o2770), (&conf, 0o640)] {
            chown_to(p, REDIS_USER);
            set_mode(p, mode);
        }
        for (from, to) in COPIED_ETC {
            // Every node has an (empty) etc-systemd-system already: copy the
            // contents, not the directory into it.
            let to = dir.join(to);
            make_dir(&to, 0o755);
            let mut cp = clean_command("/bin/cp");
            cp.arg("-a").arg(format!("{from}/.")).arg(&to);
            must(cp, NS_TIMEOUT);
        }
        make_dir(&dir.join("root-home"), 0o700);
    }

    /// Moves the node's `/var/lib/postgresql` onto an ext4 file system of
    /// its own, `mb` MiB in the image `pgdata.img` of the node's directory,
    /// which the init script loop-mounts at every boot: a disk that can
    /// fill up ([`super::NsCluster::fill_disk`]) without touching the host's.
    pub(crate) fn move_postgres_to_image(&self, mb: u32) {
        let img = self.dir.join("pgdata.img");
        let src = self.dir.join("var-lib-postgresql");
        let mnt = self.dir.join("pgdata.mnt");
        make_dir(&mnt, 0o755);
        let file =
            File::create(&img).unwrap_or_else(|e| panic!("cannot create {}: {e}", img.display()));
        file.set_len(u64::from(mb) << 20)
            .unwrap_or_else(|e| panic!("cannot size {}: {e}", img.display()));
        drop(file);
        let mut mkfs = clean_command("/sbin/mkfs.ext4");
        mkfs.args(["-q", "-F", "-m", "0"]).arg(&img);
        must(mkfs, Duration::from_secs(60));
        // Populate it in a mount namespace of its own: the host gets no mount.
        let mut cp = clean_command("/usr/bin/unshare");
        cp.args(["--mount", "--propagation", "private", "/bin/sh", "-ec"])
            .arg(r#"mount -o loop "$1" "$2"; cp -a "$3"/. "$2"/; umount "$2""#)
            .arg("sh")
            .arg(&img)
            .arg(&mnt)
            .arg(&src);
        must(cp, Duration::from_secs(120));
    }

    /// Host pid of the node's PID 1, if it is powered on.
    pub fn init_pid(&self) -> Option<i32> {
        lock(&self.procs).map(|p| p.init)
    }

    /// Host pid of `pacemakerd`, if started.
    pub fn pacemakerd_pid(&self) -> Option<i32> {
        lock(&self.procs).and_then(|p| p.pacemakerd)
    }

    /// Whether the node's PID 1 runs.
    pub fn is_up(&self) -> bool {
        self.init_pid().is_some_and(proc::alive)
    }

    /// A path of the node's filesystem as seen from the host.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Starts the node's PID 1 in fresh namespaces and waits until the init
    /// script has built the node's filesystem view. Panics if the node runs.
    pub(crate) fn power_on(&self, files: &BootFiles) {
        let mut procs = lock(&self.procs);
        assert!(procs.is_none(), "{} is already powered on", self.name);
        let ready = self.dir.join("ready");
        let _ = fs::remove_file(&ready);
        let mut cmd = clean_command("/usr/bin/setsid");
        cmd.env("PATH", NODE_PATH)
            .env("NODE_NAME", &self.name)
            .env("NODE_DIR", &self.dir)
            .env("FENCE_DIR", &files.fence_dir)
            .env("OCF_EXTRA", &files.ocf_extra)
            .env("SBIN_EXTRA", &files.sbin_extra)
            .env(
                "DOC_EXTRA",
                files.doc_extra.as_deref().unwrap_or(Path::new("")),
            )
            .env("READY", &ready)
            // PID 1 keeps this working directory: if the test process dies
            // without its teardown, the next one finds the node by it and
            // stops it (`template::remove_stale_dirs`), which ends the node.
            .current_dir(&self.dir)
            .args(UNSHARE_HOST)
            .arg(&files.init_script);
        let (unshare, init) = start_namespaces(cmd, &self.dir.join("init.out"), &ready, &self.name);
        *procs = Some(Procs {
            unshare,
            init,
            pacemakerd: None,
        });
    }

    /// Runs `args` inside the node (all its namespaces) with a deadline.
    /// `Err` if the node is off, the command cannot start or times out.
    pub fn exec(&self, args: &[&str], timeout: Duration) -> Result<CmdOutput, String> {
        self.exec_env(args, &[], timeout)
    }

    /// [`NsNode::exec`] with `env` added to the command's environment
    /// (where a secret goes, never into `args`).
    pub fn exec_env(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<CmdOutput, String> {
        let pid = self
            .init_pid()
            .ok_or_else(|| format!("{} is powered off", self.name))?;
        let mut cmd = in_namespaces(pid, &["-m", "-u", "-i", "-n", "-p"], args, timeout);
        cmd.envs(env.iter().copied());
        run_command(cmd, timeout + Duration::from_secs(5))
            .map_err(|e| format!("on {}: {e}", self.name))
    }

    /// Like [`NsNode::exec`], but `Ok(stdout)` only on exit 0.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        self.exec(args, NS_TIMEOUT)?
            .into_result()
            .map_err(|e| format!("on {}: {e}", self.name))
    }

    /// `sh -c script` inside the node; `Ok(stdout)` only on exit 0.
    pub fn sh(&self, script: &str) -> Result<String, String> {
        self.run(&["/bin/sh", "-c", script])
    }

    /// Gives the node's `eth0` its address and brings it up.
    pub(crate) fn configure_eth0(&self, prefix: u8) -> Result<(), String> {
        let cidr = format!("{}/{prefix}", self.addr);
        self.run(&["ip", "addr", "add", &cidr, "dev", "eth0"])?;
        self.run(&["ip", "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// Starts corosync (it daemonizes; tini adopts it) at real-time
    /// priority [`COROSYNC_RT_PRIORITY`], one below the watcher's samplers,
    /// and checks that every corosync thread stayed there.
    ///
    /// Why not corosync's own `SCHED_RR` 99: every node's corosync shares
    /// this machine's two CPUs with the in-node watcher, which runs at
    /// `SCHED_FIFO` 99. At equal priority a busy `SCHED_RR` thread keeps
    /// its CPU for a whole 100 ms time slice before a waiting `SCHED_FIFO`
    /// thread gets it; with both CPUs held by corosync threads (a node
    /// booting and the others reforming the membership), a sampler once
    /// waited 305 ms between two samples, over the 250 ms that the tests
    /// accept. One step below keeps corosync above everything else here,
    /// as in production, where each node has its CPUs to itself. The
    /// harness's `corosync.conf` says `sched_rr: no`, so corosync keeps
    /// the inherited policy rather than raising itself back to 99.
    pub(crate) fn start_corosync(&self) {
        if let Err(e) = self.run(&["chrt", "--rr", COROSYNC_RT_PRIORITY, "corosync"]) {
            panic!("{e}\n{}", self.tail("var-log/corosync/corosync.log", 30));
        }
        let threads = self
            .run(&["ps", "-L", "-C", "corosync", "-o", "cls=,rtprio="])
            .unwrap_or_else(|e| panic!("cannot list corosync's threads: {e}"));
        let wanted = format!("RR {COROSYNC_RT_PRIORITY}");
        let above: Vec<&str> = threads
            .lines()
            .map(str::trim)
            .filter(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") != wanted)
            .collect();
        assert!(
            !threads.trim().is_empty() && above.is_empty(),
            "{}: corosync's threads are not all at {wanted} (is `sched_rr: no` missing from \
             its corosync.conf?): {threads:?}",
            self.name
        );
    }

    /// Starts `pacemakerd` in the foreground under `setsid nsenter`, and
    /// records its host pid.
    pub(crate) fn start_pacemaker(&self) {
        let mut procs = lock(&self.procs);
        let p = procs
            .as_mut()
            .unwrap_or_else(|| panic!("{} is powered off", self.name));
        let pid = p.init.to_string();
        let mut cmd = clean_command("/usr/bin/setsid");
        cmd.env("PATH", NODE_PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .current_dir("/")
            .args([NSENTER, "-t", &pid, "-m", "-u", "-i", "-n", "-p", "--"])
            .args(["/usr/bin/env", &format!("PCMK_logfile={PACEMAKER_LOG}")])
            .arg("/usr/sbin/pacemakerd");
        let nsenter = spawn_background(cmd, &self.dir.join("pacemakerd.out"));
        let what = format!("pacemakerd started on {}", self.name);
        let pacemakerd = crate::poll(&what, NS_TIMEOUT, || {
            proc::children(nsenter)
                .into_iter()
                .find(|&c| proc::exe_name(c).as_deref() == Some("pacemakerd"))
        });
        p.pacemakerd = Some(pacemakerd);
    }

    /// Asks pacemakerd to stop (SIGTERM); [`NsNode::finish_stop`] waits.
    pub(crate) fn begin_stop(&self) {
        if let Some(pid) = self.pacemakerd_pid() {
            proc::signal(pid, Signal::SIGTERM);
        }
    }

    /// Waits (until `deadline`) for pacemakerd to exit, stops corosync with
    /// `corosync-cfgtool -H --force`, then powers the node off. Never panics.
    pub(crate) fn finish_stop(&self, deadline: Instant) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(pid) = self.pacemakerd_pid() {
            let rest = deadline.saturating_duration_since(Instant::now());
            if !proc::wait_reaped(pid, rest) {
                left.push(format!(
                    "{}: pacemakerd (pid {pid}) still running at teardown: power-off",
                    self.name
                ));
            } else if let Err(e) = self.exec(
                &["corosync-cfgtool", "-H", "--force"],
                Duration::from_secs(10),
            ) {
                left.push(e);
            }
        }
        left.extend(self.power_off());
        left
    }

    /// SIGKILL to PID 1: the kernel ends every process of the node's PID
    /// namespace, and with the last of them its other namespaces, mounts
    /// and veth. Waits until `unshare` has exited and been reaped. Never
    /// panics; returns what went wrong.
    pub(crate) fn power_off(&self) -> Vec<String> {
        let mut procs = lock(&self.procs);
        let Some(p) = procs.take() else {
            return Vec::new();
        };
        proc::signal(p.init, Signal::SIGKILL);
        let mut left = Vec::new();
        for (what, pid) in [("PID 1", p.init), ("unshare", p.unshare)] {
            if !proc::wait_reaped(pid, Duration::from_secs(20)) {
                left.push(format!("{}: {what} (pid {pid}) still there", self.name));
            }
        }
        left
    }

    /// Runs `psql -XAtq` inside the node as `postgres` over the node's socket.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.run(&[
            "runuser",
            "-u",
            PG_USER,
            "--",
            "psql",
            "-XAtq",
            "-h",
            PGHOST,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .map(|s| s.trim().to_owned())
    }

    /// Runs `redis-cli -e -s <socket> args…` inside the node (with the
    /// cluster's Redis password in `REDISCLI_AUTH`, if it has one).
    pub fn redis_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec![REDIS_CLI, "-e", "-s", REDIS_SOCKET];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self
            .redis_password
            .as_deref()
            .map(|p| ("REDISCLI_AUTH", p))
            .into_iter()
            .collect();
        self.exec_env(&all, &env, NS_TIMEOUT)?
            .into_result()
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("on {}: {e}", self.name))
    }

    /// Whether the node's corosync says its partition is quorate, by
    /// `corosync-quorumtool -s`'s exit code (0 quorate, 2 not); `None` when
    /// it cannot tell.
    pub fn quorate(&self) -> Option<bool> {
        let o = self.exec(&["corosync-quorumtool", "-s"], NS_TIMEOUT).ok()?;
        match o.status.code() {
            Some(0) => Some(true),
            Some(2) => Some(false),
            _ => None,
        }
    }

    /// Whether the node gave up the primary's role for clients: Redis no
    /// master (a replica, or down), PostgreSQL taking no writes
    /// (`transaction_read_only` on, as libpq's
    /// `target_session_attrs=read-write` tests it, in recovery, or down),
    /// and `vip` not held.
    pub fn released_primary(&self, vip: &str) -> bool {
        let redis_master = self
            .redis_cli(&["info", "replication"])
            .is_ok_and(|i| i.contains("role:master"));
        let pg_writable = self.psql("show transaction_read_only").as_deref() == Ok("off");
        !redis_master && !pg_writable && !self.has_address(vip)
    }

    /// Whether `addr` is configured on the node's `eth0`.
    pub fn has_address(&self, addr: &str) -> bool {
        self.run(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
            .is_ok_and(|s| s.contains(&format!("inet {addr}/")))
    }

    /// The last `lines` lines of the node's file `rel` (host path under the
    /// node's directory), for failure reports.
    pub fn tail(&self, rel: &str, lines: usize) -> String {
        let path = self.dir.join(rel);
        let text = fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "--- {} {} (last {} lines)\n{}\n",
            self.name,
            rel,
            tail.len(),
            tail.join("\n")
        )
    }
}

/// The md5 that `dpkg-query` records for `package`'s conffile `path`.
fn conffile_md5(package: &str, path: &str) -> String {
    let mut q = clean_command("/usr/bin/dpkg-query");
    q.args(["-W", "-f=${Conffiles}", package]);
    let out = must(q, NS_TIMEOUT);
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(path)).then(|| w.next().map(str::to_owned))?
        })
        .unwrap_or_else(|| panic!("dpkg-query lists no conffile {path} for {package}:\n{out}"))
}
