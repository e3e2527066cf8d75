//! One cluster node: its directories, ports and clients.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::agent::Agent;
use crate::cmd::{as_user, clean_command, must, run_command};
use crate::dir::{append, chown_to, make_dir, set_mode, write_file};
use crate::ocf::param;
use crate::proc::{self, Target};
use crate::{
    free_port, LOOPBACK, PG_BINDIR, PG_USER, REDIS_CLI, REDIS_SERVER, REDIS_USER, REPL_PASSWORD,
    REPL_USER,
};

/// Deadline for one `psql` or `redis-cli` call.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to stop cleanly on teardown before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// One node of a test cluster, laid out under `<test dir>/<name>/`:
///
/// | path | owner | what |
/// |---|---|---|
/// | `pgdata/` | postgres, 0700 | copy of the template, with its own `port` and `unix_socket_directories` |
/// | `pgsock/` | postgres | PostgreSQL's unix socket |
/// | `postgresql.log` | postgres | `pg_ctl -l` log |
/// | `redis.conf` | root | base Redis config (the agent adds port, socket, pidfile, replicaof) |
/// | `redis-data/` | redis | Redis `dir`, and its unix socket `redis.sock` |
/// | `redis.log` | redis | Redis log |
/// | `run/` | root, 0755 | the agent's `state_dir` |
///
/// Nothing runs after creation: starting the servers is the agent's job.
#[derive(Debug, Clone)]
pub struct Node {
    /// Node name as Pacemaker would know it: `node1`, `node2`, ….
    pub name: String,
    /// The node's directory.
    pub dir: PathBuf,
    /// PostgreSQL data directory.
    pub pgdata: PathBuf,
    /// Directory of PostgreSQL's unix socket (the agent's `pghost`).
    pub pg_socket_dir: PathBuf,
    /// PostgreSQL port, on 127.0.0.1 and in the socket name.
    pub pgport: u16,
    /// Redis port on 127.0.0.1.
    pub redis_port: u16,
    /// Redis unix socket path.
    pub redis_socket: PathBuf,
    /// The base Redis configuration file.
    pub redis_config: PathBuf,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// The resource instance name (`OCF_RESOURCE_INSTANCE`): `stack`.
    pub instance: String,
}

impl Node {
    /// Lays out node `name` under `parent` with a copy of `template`.
    pub(crate) fn create(parent: &Path, name: &str, template: &Path) -> Node {
        let dir = parent.join(name);
        make_dir(&dir, 0o755);
        let node = Node {
            name: name.to_owned(),
            pgdata: dir.join("pgdata"),
            pg_socket_dir: dir.join("pgsock"),
            pgport: free_port(),
            redis_port: free_port(),
            redis_socket: dir.join("redis-data").join("redis.sock"),
            redis_config: dir.join("redis.conf"),
            state_dir: dir.join("run"),
            instance: "stack".to_owned(),
            dir,
        };
        node.check_socket_paths();

        let mut cp = clean_command("/bin/cp");
        cp.arg("-a").arg(template).arg(&node.pgdata);
        must(cp, Duration::from_secs(120));
        append(
            &node.pgdata.join("postgresql.conf"),
            &format!(
                "port = {}\nunix_socket_directories = '{}'\n",
                node.pgport,
                node.pg_socket_dir.display()
            ),
        );
        chown_to(&node.pgdata, PG_USER);
        set_mode(&node.pgdata, 0o700);
        make_dir(&node.pg_socket_dir, 0o755);
        chown_to(&node.pg_socket_dir, PG_USER);
        write_file(&node.pg_logfile(), "", Some(PG_USER), 0o644);

        let redis_data = node.dir.join("redis-data");
        make_dir(&redis_data, 0o755);
        chown_to(&redis_data, REDIS_USER);
        write_file(&node.redis_logfile(), "", Some(REDIS_USER), 0o644);
        let conf = format!(
            "bind {LOOPBACK}\nport {}\ndir {}\nsave \"\"\nappendonly no\nprotected-mode no\nrepl-diskless-sync-delay 0\n\
             logfile {}\ndaemonize no\n",
            node.redis_port,
            redis_data.display(),
            node.redis_logfile().display()
        );
        write_file(&node.redis_config, &conf, None, 0o644);
        make_dir(&node.state_dir, 0o755);
        node
    }

    fn check_socket_paths(&self) {
        let pg = self.pg_socket_dir.join(format!(".s.PGSQL.{}", self.pgport));
        for p in [pg, self.redis_socket.clone()] {
            let len = p.as_os_str().len();
            assert!(
                len <= MAX_SOCKET_PATH,
                "socket path {} is {len} bytes, over the {MAX_SOCKET_PATH}-byte limit: \
                 use a shorter test name",
                p.display()
            );
        }
    }

    /// Makes this node's PostgreSQL (not running yet, or restarted after)
    /// speak TLS with `issued` (a certificate of a [`crate::TestCa`], given
    /// to the postgres user here), log connections, and admit TCP clients
    /// only over TLS (`hostssl` lines for 127.0.0.1, scram-sha-256).
    pub fn serve_tls_only(&self, issued: &crate::Issued) {
        let pg = crate::cmd::lookup_user(PG_USER);
        issued.chown(pg.uid, pg.gid);
        append(
            &self.pgdata.join("postgresql.conf"),
            &crate::tls::pg_ssl_settings(issued),
        );
        write_file(
            &self.pgdata.join("pg_hba.conf"),
            &crate::tls::pg_hba_hostssl_only(&format!("{LOOPBACK}/32")),
            Some(PG_USER),
            0o600,
        );
    }

    /// The `pg_ctl -l` log file: `<dir>/postgresql.log`.
    pub fn pg_logfile(&self) -> PathBuf {
        self.dir.join("postgresql.log")
    }

    /// The Redis log file: `<dir>/redis.log`.
    pub fn redis_logfile(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Where the agent writes the Redis pidfile:
    /// `<state_dir>/redis/<instance>.pid`.
    pub fn redis_pidfile(&self) -> PathBuf {
        self.state_dir
            .join("redis")
            .join(format!("{}.pid", self.instance))
    }

    /// The agent parameters for this node, as (name, value). The primary is
    /// this node itself until [`Agent::primary`] says otherwise.
    pub fn params(&self) -> Vec<(String, String)> {
        let s = |p: &Path| p.display().to_string();
        [
            (param::PGDATA, s(&self.pgdata)),
            (param::BINDIR, PG_BINDIR.to_owned()),
            (param::PGPORT, self.pgport.to_string()),
            (param::PGHOST, s(&self.pg_socket_dir)),
            (param::SYSTEM_USER, PG_USER.to_owned()),
            (param::PG_LOGFILE, s(&self.pg_logfile())),
            (param::PRIMARY_HOST, LOOPBACK.to_owned()),
            (param::PRIMARY_PORT, self.pgport.to_string()),
            (param::REPL_USER, REPL_USER.to_owned()),
            (param::REPL_PASSWORD, REPL_PASSWORD.to_owned()),
            (param::REDIS_SERVER, REDIS_SERVER.to_owned()),
            (param::REDIS_CONFIG, s(&self.redis_config)),
            (param::REDIS_PORT, self.redis_port.to_string()),
            (param::REDIS_SOCKET, s(&self.redis_socket)),
            (param::REDIS_USER, REDIS_USER.to_owned()),
            (param::REDIS_PRIMARY_PORT, self.redis_port.to_string()),
            (param::STATE_DIR, s(&self.state_dir)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// An [`Agent`] for this node: `bin` with the environment Pacemaker
    /// would set (see [`Agent`]), run from the node's directory.
    pub fn agent(&self, bin: impl AsRef<Path>) -> Agent {
        Agent::for_node(bin.as_ref(), self)
    }

    /// Runs `sql` with `psql -XAtq` over the unix socket as the `postgres`
    /// user (peer authentication), and returns the trimmed stdout. Panics
    /// with psql's stderr if it fails or takes over 30 s.
    #[track_caller]
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Node::psql`], but returns the failure (command, exit status,
    /// stderr) as `Err`.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let mut cmd = clean_command(Path::new(PG_BINDIR).join("psql"));
        cmd.arg("-XAtq")
            .arg("-h")
            .arg(&self.pg_socket_dir)
            .arg("-p")
            .arg(self.pgport.to_string())
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        as_user(&mut cmd, PG_USER);
        self.client(cmd).map(|s| s.trim().to_owned())
    }

    /// Runs `redis-cli -e -s <socket> args…` and returns the trimmed stdout.
    /// Panics if it fails, gets an error reply (`-e`), or takes over 30 s.
    #[track_caller]
    pub fn redis_cli(&self, args: &[&str]) -> String {
        self.try_redis_cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Node::redis_cli`], but returns the failure as `Err`.
    pub fn try_redis_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = clean_command(REDIS_CLI);
        cmd.arg("-e").arg("-s").arg(&self.redis_socket).args(args);
        self.client(cmd).map(|s| s.trim().to_owned())
    }

    /// Runs `pg_ctl -D <pgdata> args…` as the `postgres` user (60 s
    /// deadline) and returns its stdout; for tests that start or stop
    /// PostgreSQL behind the agent's back. Pass `-l` and
    /// [`Node::pg_logfile`] to `start`, or the server's output is lost.
    pub fn try_pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = clean_command(Path::new(PG_BINDIR).join("pg_ctl"));
        cmd.arg("-D").arg(&self.pgdata).args(args);
        as_user(&mut cmd, PG_USER);
        match run_command(cmd, Duration::from_secs(60)) {
            Ok(out) => out.into_result().map_err(|e| format!("{}: {e}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    fn client(&self, cmd: std::process::Command) -> Result<String, String> {
        match run_command(cmd, CLIENT_TIMEOUT) {
            Ok(out) if out.success() => Ok(out.stdout),
            Ok(out) => Err(format!("on {}: {}", self.name, out.failure_message())),
            Err(e) => Err(format!("on {}: {e}", self.name)),
        }
    }

    /// The postmaster's pid: the first line of `pgdata/postmaster.pid`, if
    /// that process is alive (not a zombie), is `postgres` and runs in this
    /// node's data directory. A stale pidfile yields `None`.
    pub fn postmaster_pid(&self) -> Option<i32> {
        proc::read_pidfile(&self.pgdata.join("postmaster.pid"))
            .filter(|&pid| proc::is_postgres_of(pid, &self.pgdata))
    }

    /// Redis's pid from [`Node::redis_pidfile`], if that process is an alive
    /// `redis-server`.
    pub fn redis_pid(&self) -> Option<i32> {
        proc::read_pidfile(&self.redis_pidfile()).filter(|&pid| proc::is_redis(pid))
    }

    /// Simulates a crash of PostgreSQL: SIGKILL to the postmaster, then waits
    /// until it is gone (and reaped, so its pid no longer answers
    /// `kill(pid, 0)`) and until its backends have exited, which they do on
    /// their own when they notice the postmaster died. `postmaster.pid` and
    /// the shared memory stay behind, as after a real crash. Panics if no
    /// postmaster runs.
    #[track_caller]
    pub fn kill9_postgres(&self) {
        let pid = self
            .postmaster_pid()
            .unwrap_or_else(|| panic!("kill9_postgres: no postmaster runs on {}", self.name));
        let children = proc::children(pid);
        proc::signal(pid, Signal::SIGKILL);
        assert!(
            proc::wait_reaped(pid, Duration::from_secs(10)),
            "postmaster {pid} of {} still there 10 s after SIGKILL",
            self.name
        );
        if !proc::wait_dead(&children, Duration::from_secs(10)) {
            for &c in children.iter().filter(|&&c| proc::alive(c)) {
                eprintln!(
                    "harness: backend {c} of {} outlived its postmaster by 10 s: SIGKILL",
                    self.name
                );
                proc::signal(c, Signal::SIGKILL);
            }
        }
        for c in children {
            proc::wait_reaped(c, Duration::from_secs(5));
        }
    }

    /// Simulates a crash of Redis: SIGKILL to the pid in the pidfile, then
    /// waits until it is gone and reaped. The pidfile stays behind. Panics if
    /// no Redis runs.
    #[track_caller]
    pub fn kill9_redis(&self) {
        let pid = self
            .redis_pid()
            .unwrap_or_else(|| panic!("kill9_redis: no redis-server runs on {}", self.name));
        let children = proc::children(pid);
        proc::signal(pid, Signal::SIGKILL);
        assert!(
            proc::wait_reaped(pid, Duration::from_secs(10)),
            "redis-server {pid} of {} still there 10 s after SIGKILL",
            self.name
        );
        // A fork for a replica's full sync would die with the socket anyway.
        for c in children {
            proc::signal(c, Signal::SIGKILL);
            proc::wait_reaped(c, Duration::from_secs(5));
        }
    }

    /// Stops everything of this node, as the teardown does: first the
    /// servers named by their pidfiles (the postmaster gets SIGINT, Redis
    /// SIGTERM; 5 s later SIGKILL for them and their children), then any
    /// process still running with its working directory inside the node's
    /// directory. Returns a line for each process that survived even SIGKILL
    /// (never panics).
    pub fn stop_everything(&self) -> Vec<String> {
        let mut left = proc::stop_all(&self.server_targets(), STOP_GRACE);
        left.extend(proc::stop_all(&self.stray_targets(), STOP_GRACE));
        left
    }

    /// The servers, by their pidfiles: the postmaster gets SIGINT (fast
    /// shutdown; SIGTERM would be "smart" and wait for every client), Redis
    /// SIGTERM.
    pub(crate) fn server_targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        if let Some(pid) = self.postmaster_pid() {
            targets.push(Target {
                label: format!("{} postmaster", self.name),
                pid,
                polite: Signal::SIGINT,
            });
        }
        if let Some(pid) = self.redis_pid() {
            targets.push(Target {
                label: format!("{} redis-server", self.name),
                pid,
                polite: Signal::SIGTERM,
            });
        }
        targets
    }

    /// The safety net, for after the servers are stopped: any live process
    /// whose working directory is inside this node's directory (a Redis
    /// whose pidfile was removed, a server started by hand with another
    /// data directory). PostgreSQL and Redis both `chdir` into their data
    /// directory, so nothing of ours escapes this, and nothing of anyone
    /// else's is caught by it.
    pub(crate) fn stray_targets(&self) -> Vec<Target> {
        let me = std::process::id() as i32;
        proc::all_stats()
            .into_iter()
            .filter(|s| s.pid != me && !s.is_zombie())
            .filter(|s| proc::cwd(s.pid).is_some_and(|c| c.starts_with(&self.dir)))
            .map(|s| Target {
                label: format!("{} stray {}", self.name, s.comm),
                pid: s.pid,
                polite: Signal::SIGTERM,
            })
            .collect()
    }

    /// The last `lines` lines of the PostgreSQL and Redis logs, for failure
    /// reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in [self.pg_logfile(), self.redis_logfile()] {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!(
                "--- {} (last {} lines)\n",
                path.display(),
                tail.len()
            ));
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}
