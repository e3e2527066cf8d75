//! The in-node watcher: samples every node's PostgreSQL and Redis role from
//! inside the node, every 50 ms, so that no partition can hide a node.
//!
//! Per node, two sampler threads (one for PostgreSQL, one for Redis) of the
//! test process join the node's own mount, network and UTS namespaces
//! (`unshare(CLONE_FS)`, then `setns` into `/proc/<node PID 1>/ns/{net,uts,mnt}`:
//! `setns` changes the calling thread only, and a thread sharing its
//! `fs_struct` is refused a mount namespace). From there `/run/postgresql`
//! and [`REDIS_SOCKET`] are the node's own unix sockets: cutting the node's
//! bridge port (a partition) does not cut them.
//!
//! Why threads of the test process and not a process inside each node:
//! - one clock: every sample is stamped with `CLOCK_MONOTONIC`, which is
//!   one clock for every namespace here (there is no time namespace) and is
//!   what [`Instant`] reads, so samples of different nodes and the test's
//!   own instants (a fault, a fencing) compare directly;
//! - nothing to install or start in the node, nothing the node's own
//!   processes (or a power-off) can confuse with a service of the stack;
//! - the same namespaces as the node's services, which is all a process
//!   inside the node would have.
//!
//! Each sample is kept in memory, in the node's list (shared by its two
//! threads); [`NodeWatcher::report`] merges those lists. Nothing is written
//! to disk while sampling: a write into the page cache may be throttled
//! (`balance_dirty_pages`) for up to 200 ms while builds or servers dirty
//! pages, which once left a sampler 579 ms without a sample on a busy
//! 2-core machine. When the watcher stops, each list is written as lines
//! `mono_ns boot service state` to `watch-<node>.tsv` in the cluster's
//! directory, for diagnosis with `RAPIDPRO_KEEP_TEST_DIRS=1`.
//!
//! The sampler threads run with real-time scheduling (`SCHED_FIFO` at the
//! highest priority, set by `chrt` on the thread), falling back to nice
//! -10: on two cores shared with a cluster that is recovering (crash
//! recovery, `pg_rewind`, Pacemaker) and maybe a build, the observer must
//! not be the one that waits for the CPU. Nice is not enough: every node's
//! corosync runs `SCHED_RR` at the highest priority (its default), and no
//! nice value wins against a real-time task; a CI run saw a sampler stall
//! for 998 ms, the length of the kernel's real-time throttling period
//! (`sched_rt_period_us`, 1 s), after which ordinary tasks get the CPU back.
//! That is the likely cause, not a proven one. The samplers are asleep or
//! waiting on a socket nearly all the time: microseconds of CPU per 50 ms.
//! At equal priority, real-time is still not enough: a busy `SCHED_RR`
//! corosync thread keeps its CPU for its 100 ms slice before a waiting
//! `SCHED_FIFO` sampler runs (a CI run saw a 305 ms gap), so the nodes'
//! corosync runs one priority below the samplers
//! (`NsNode::start_corosync`).
//!
//! Node lifecycle: a thread samples a node only while its PID 1 lives (a
//! pidfd of PID 1 tells it, without the host's `/proc`, which the node's
//! mount namespace hides). When PID 1 dies (power-off, fencing) the thread
//! drops its connections and returns to the test process's namespaces at
//! once, so it never keeps a dead node's network namespace (and veth)
//! alive; when the node boots (a new PID 1) it enters the new namespaces
//! and the samples go on with the next boot number.
//!
//! Sampling bounds: every connect and query together get
//! [`SAMPLE_BUDGET`]; a sample that runs out of it is `unknown`, a refused
//! or failed connect is `down`. A sample is taken every [`PERIOD`] (from
//! the start of the previous one), so two samples of one thread are never
//! more than `SAMPLE_BUDGET` + scheduling apart.
//!
//! `RAPIDPRO_TEST_WATCHER=off` starts no sampler: it exists only to show
//! that the watcher's self-test
//! (`cluster::watcher_sees_two_primaries_forced_by_hand`) fails without it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};

use super::node::{ProcsCell, PGHOST, REDIS_SOCKET};
use crate::PG_USER;

/// Time between the starts of two samples of one thread.
pub const PERIOD: Duration = Duration::from_millis(50);
/// Bound of one sample's connect and query together.
pub const SAMPLE_BUDGET: Duration = Duration::from_millis(150);
/// The largest gap between two samples of a node that the tests accept.
pub const MAX_GAP: Duration = Duration::from_millis(250);
/// Set to `off` to start no sampler (only to prove the self-test can fail).
pub const WATCHER_ENV: &str = "RAPIDPRO_TEST_WATCHER";

/// `CLOCK_MONOTONIC` now, in nanoseconds: the samples' clock.
pub fn mono_now() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `at` on the samples' clock ([`Instant`] reads `CLOCK_MONOTONIC` too;
/// the two reads of the conversion are microseconds apart).
pub fn mono_of(at: Instant) -> u64 {
    let (now, mono) = (Instant::now(), mono_now());
    if at <= now {
        mono.saturating_sub((now - at).as_nanos() as u64)
    } else {
        mono + (at - now).as_nanos() as u64
    }
}

/// What a sampler asks a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// `SHOW transaction_read_only` over the node's PostgreSQL socket:
    /// whether a client's transaction may write, libpq's own test of
    /// `target_session_attrs=read-write`.
    Pg,
    /// `INFO replication` over the node's Redis socket.
    Redis,
}

impl Service {
    fn word(self) -> &'static str {
        match self {
            Service::Pg => "pg",
            Service::Redis => "redis",
        }
    }
    #[cfg(test)]
    fn parse(s: &str) -> Option<Service> {
        match s {
            "pg" => Some(Service::Pg),
            "redis" => Some(Service::Redis),
            _ => None,
        }
    }
}

/// What one sample saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A PostgreSQL that takes writes (`transaction_read_only` off: not in
    /// recovery, and writes not stopped by `default_transaction_read_only`,
    /// as a demote or the quorum guard stops them), or a Redis master.
    Primary,
    /// A PostgreSQL that takes no writes (in recovery, or read-only), or a
    /// Redis replica.
    Standby,
    /// Nothing listening, or a server refusing connections (starting,
    /// shutting down, loading).
    Down,
    /// No answer within the budget, or an answer that says nothing of the
    /// role (e.g. too many connections): the role is not known.
    Unknown,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Primary => "primary",
            State::Standby => "standby",
            State::Down => "down",
            State::Unknown => "unknown",
        }
    }
    #[cfg(test)]
    fn parse(s: &str) -> Option<State> {
        match s {
            "primary" => Some(State::Primary),
            "standby" => Some(State::Standby),
            "down" => Some(State::Down),
            "unknown" => Some(State::Unknown),
            _ => None,
        }
    }
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `CLOCK_MONOTONIC` when the answer came (see [`mono_now`]).
    pub at: u64,
    /// Node name.
    pub node: String,
    /// 1 for the node's first PID 1, 2 after its first reboot, ...
    pub boot: u32,
    /// What was asked.
    pub service: Service,
    /// What it answered.
    pub state: State,
}

/// The samplers of every node of a cluster; owned by the cluster.
#[derive(Debug)]
pub struct NodeWatcher {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Per node: its `watch-<node>.tsv` and its samples so far (each
    /// sample names its node).
    logs: Vec<(PathBuf, SampleLog)>,
    enabled: bool,
}

/// The samples of one node, in the order its threads took them.
type SampleLog = Arc<Mutex<Vec<Sample>>>;

impl NodeWatcher {
    /// Starts two samplers per node of `nodes` (name and PID 1 cell); their
    /// samples go to `watch-<node>.tsv` under `dir` when the watcher stops.
    /// Nodes need not run yet.
    pub(crate) fn start(
        dir: &Path,
        nodes: &[(String, ProcsCell)],
        redis_password: Option<String>,
    ) -> NodeWatcher {
        let enabled = std::env::var(WATCHER_ENV).map_or(true, |v| v != "off");
        let stop = Arc::new(AtomicBool::new(false));
        let pg_uid = nix::unistd::User::from_name(PG_USER)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no user {PG_USER}: run scripts/install-deps"))
            .uid;
        let mut handles = Vec::new();
        let mut logs = Vec::new();
        for (name, cell) in nodes {
            let path = dir.join(format!("watch-{name}.tsv"));
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
            let log = SampleLog::default();
            logs.push((path, log.clone()));
            if !enabled {
                continue;
            }
            let boots = Arc::new(Mutex::new(Vec::<i32>::new()));
            for service in [Service::Pg, Service::Redis] {
                let s = Sampler {
                    node: name.clone(),
                    service,
                    cell: cell.clone(),
                    boots: boots.clone(),
                    log: log.clone(),
                    stop: stop.clone(),
                    pg_uid,
                    redis_password: redis_password.clone(),
                };
                let h = std::thread::Builder::new()
                    .name(format!("watch-{name}-{}", service.word()))
                    .spawn(move || s.run())
                    .expect("spawn a sampler thread");
                handles.push(h);
            }
        }
        NodeWatcher {
            stop,
            handles,
            logs,
            enabled,
        }
    }

    /// Whether samplers run (see [`WATCHER_ENV`]).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Every sample taken so far, of every node, in time order.
    pub fn samples(&self) -> Vec<Sample> {
        let mut all = Vec::new();
        for (_, log) in &self.logs {
            all.extend(
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned(),
            );
        }
        all.sort_by(|a, b| (a.at, &a.node, a.service).cmp(&(b.at, &b.node, b.service)));
        all
    }

    /// The report over `[since, until]` (see [`report`]).
    pub fn report(&self, since: u64, until: u64) -> WatchReport {
        report(&self.samples(), since, until)
    }

    /// Stops every sampler (they leave the nodes' namespaces), then writes
    /// each node's samples to its `watch-<node>.tsv`.
    pub fn stop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        for (path, log) in &self.logs {
            let text: String = log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(Sample::line)
                .collect();
            // Best effort: the files are for diagnosis only.
            if let Ok(mut f) = OpenOptions::new().append(true).open(path) {
                let _ = f.write_all(text.as_bytes());
            }
        }
    }
}

impl Drop for NodeWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Sample {
    /// The sample as a line of `watch-<node>.tsv` (the node is the file's).
    fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\n",
            self.at,
            self.boot,
            self.service.word(),
            self.state.word()
        )
    }
}

/// A line of `watch-<node>.tsv` read back (what [`Sample::line`] wrote).
#[cfg(test)]
fn parse_line(node: &str, line: &str) -> Option<Sample> {
    let mut f = line.split('\t');
    let at = f.next()?.parse().ok()?;
    let boot = f.next()?.parse().ok()?;
    let service = Service::parse(f.next()?)?;
    let state = State::parse(f.next()?)?;
    Some(Sample {
        at,
        node: node.to_owned(),
        boot,
        service,
        state,
    })
}

/// One sampler thread: one node, one service.
struct Sampler {
    node: String,
    service: Service,
    cell: ProcsCell,
    /// The node's PID 1s seen so far, in boot order (shared by its two
    /// samplers so they number boots alike).
    boots: Arc<Mutex<Vec<i32>>>,
    log: SampleLog,
    stop: Arc<AtomicBool>,
    pg_uid: nix::unistd::Uid,
    redis_password: Option<String>,
}

/// The namespaces a sampler thread enters, in this order (the mount
/// namespace last: after it, paths resolve in the node).
const NAMESPACES: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The node a sampler is inside: its PID 1, a pidfd of it, the boot number.
struct Inside {
    init: i32,
    pidfd: OwnedFd,
    boot: u32,
}

/// The open connections of a sampler (one of them is used).
enum Conn {
    Pg(tokio_postgres::Client),
    Redis(tokio::io::BufReader<tokio::net::UnixStream>),
}

impl Sampler {
    fn run(self) {
        unshare(CloneFlags::CLONE_FS).expect("unshare(CLONE_FS) on a sampler thread");
        // Real-time, else nice -10; both per thread: this one only (the
        // module's doc says why). Best effort: the gap assertions tell if
        // it was not enough.
        if !real_time(rustix::thread::gettid().as_raw_nonzero().get()) {
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), -10);
        }
        let home: Vec<(File, CloneFlags)> = NAMESPACES
            .iter()
            .map(|(ns, flag)| {
                let f = File::open(format!("/proc/thread-self/ns/{ns}"))
                    .expect("open the test process's namespaces");
                (f, *flag)
            })
            .collect();
        let mut rt = runtime();
        let mut inside: Option<Inside> = None;
        let mut conn: Option<Conn> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            // A dead PID 1 (power-off, fencing): leave its namespaces now.
            if inside.as_ref().is_some_and(|i| dead(&i.pidfd)) {
                self.leave(&home, &mut conn, &mut rt);
                inside = None;
            }
            if inside.is_none() {
                inside = self.enter();
            } else if let Ok(p) = self.cell.try_lock() {
                // A new PID 1 without our noticing the old one die.
                let cur = p.as_ref().map(|p| p.init);
                drop(p);
                if cur != inside.as_ref().map(|i| i.init) {
                    self.leave(&home, &mut conn, &mut rt);
                    inside = self.enter();
                }
            }
            if let Some(i) = &inside {
                let state = match self.service {
                    Service::Pg => self.sample_pg(&rt, &mut conn),
                    Service::Redis => self.sample_redis(&rt, &mut conn),
                };
                let sample = Sample {
                    at: mono_now(),
                    node: self.node.clone(),
                    boot: i.boot,
                    service: self.service,
                    state,
                };
                self.log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sample);
            }
            if let Some(rest) = PERIOD.checked_sub(tick.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        if inside.is_some() {
            self.leave(&home, &mut conn, &mut rt);
        }
    }

    /// Enters the namespaces of the node's PID 1, if it runs.
    fn enter(&self) -> Option<Inside> {
        let init = self.cell.try_lock().ok()?.as_ref()?.init;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(init)?,
            rustix::process::PidfdFlags::empty(),
        )
        .ok()?;
        if dead(&pidfd) {
            return None;
        }
        let files: Vec<(File, CloneFlags)> = NAMESPACES
            .iter()
            .map(|(ns, flag)| Some((File::open(format!("/proc/{init}/ns/{ns}")).ok()?, *flag)))
            .collect::<Option<_>>()?;
        for (f, flag) in &files {
            if let Err(e) = setns(f, *flag) {
                panic!("{}: setns {flag:?} into pid {init}: {e}", self.node);
            }
        }
        let boot = {
            let mut boots = self.boots.lock().unwrap_or_else(|e| e.into_inner());
            match boots.iter().position(|p| *p == init) {
                Some(i) => i + 1,
                None => {
                    boots.push(init);
                    boots.len()
                }
            }
        };
        Some(Inside {
            init,
            pidfd,
            boot: boot as u32,
        })
    }

    /// Closes every socket opened in the node and returns to the test
    /// process's namespaces. A socket holds its network namespace, and so
    /// the node's veth, alive: the PostgreSQL connection's socket belongs
    /// to a task of the runtime, which runs only inside `block_on`, so the
    /// runtime goes too (dropping it drops its tasks).
    fn leave(
        &self,
        home: &[(File, CloneFlags)],
        conn: &mut Option<Conn>,
        rt: &mut tokio::runtime::Runtime,
    ) {
        *conn = None;
        *rt = runtime();
        for (f, flag) in home {
            if let Err(e) = setns(f, *flag) {
                panic!(
                    "{}: setns {flag:?} back to the test process: {e}",
                    self.node
                );
            }
        }
    }

    /// `SHOW transaction_read_only` as `postgres` over the node's socket:
    /// `off` is a primary that takes writes. A session opened before a
    /// demote or the quorum guard stopped the writes sees the new default
    /// at the reload (and is terminated then anyway).
    fn sample_pg(&self, rt: &tokio::runtime::Runtime, conn: &mut Option<Conn>) -> State {
        let started = Instant::now();
        if !matches!(conn, Some(Conn::Pg(c)) if !c.is_closed()) {
            *conn = None;
            let mut cfg = tokio_postgres::Config::new();
            cfg.host_path(PGHOST)
                .user(PG_USER)
                .dbname("postgres")
                .application_name("rapidpro-ha-test-watcher");
            // Peer authentication reads the connecting task's credentials
            // at connect(): this thread alone borrows postgres's euid for
            // it (never glibc's seteuid: it signals every thread), and
            // returns to root, which entering a rebooted node needs.
            let connected = {
                let _euid = rapidpro_ha::euid::borrow(Some(self.pg_uid))
                    .expect("borrow postgres's euid on a sampler thread");
                // The timer needs the runtime's context: built inside.
                rt.block_on(async {
                    tokio::time::timeout(SAMPLE_BUDGET, cfg.connect(tokio_postgres::NoTls)).await
                })
            };
            match connected {
                Err(_) => return State::Unknown,
                Ok(Err(e)) => return pg_error_state(&e),
                Ok(Ok((client, connection))) => {
                    rt.spawn(async move {
                        let _ = connection.await;
                    });
                    *conn = Some(Conn::Pg(client));
                }
            }
        }
        let Some(Conn::Pg(client)) = conn.as_ref() else {
            return State::Unknown;
        };
        let left = SAMPLE_BUDGET.saturating_sub(started.elapsed());
        let q = rt.block_on(async {
            tokio::time::timeout(left, client.simple_query("SHOW transaction_read_only")).await
        });
        let state = match q {
            Err(_) => State::Unknown,
            Ok(Err(e)) => pg_error_state(&e),
            Ok(Ok(rows)) => rows
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => match r.get(0) {
                        Some("off") => Some(State::Primary),
                        Some("on") => Some(State::Standby),
                        _ => None,
                    },
                    _ => None,
                })
                .unwrap_or(State::Unknown),
        };
        if !matches!(state, State::Primary | State::Standby) {
            // A timed-out query may still answer later: start afresh.
            *conn = None;
        }
        state
    }

    /// `INFO replication` over the node's Redis socket (after `AUTH` with
    /// the cluster's password, held in memory only).
    fn sample_redis(&self, rt: &tokio::runtime::Runtime, conn: &mut Option<Conn>) -> State {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        if !matches!(conn, Some(Conn::Redis(_))) {
            *conn = None;
        }
        let password = self.redis_password.as_deref();
        let ask = async {
            if conn.is_none() {
                let s = tokio::net::UnixStream::connect(REDIS_SOCKET)
                    .await
                    .map_err(|e| io_state(&e))?;
                let mut s = tokio::io::BufReader::new(s);
                if let Some(p) = password {
                    let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{p}\r\n", p.len());
                    s.get_mut()
                        .write_all(auth.as_bytes())
                        .await
                        .map_err(|_| State::Down)?;
                    let mut line = String::new();
                    s.read_line(&mut line).await.map_err(|_| State::Down)?;
                    // "-ERR ... without any password configured" is fine:
                    // INFO below then answers anyway.
                }
                *conn = Some(Conn::Redis(s));
            }
            let Some(Conn::Redis(s)) = conn.as_mut() else {
                return Err(State::Unknown);
            };
            s.get_mut()
                .write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
                .await
                .map_err(|_| State::Down)?;
            let mut head = String::new();
            if s.read_line(&mut head).await.map_err(|_| State::Down)? == 0 {
                return Err(State::Down);
            }
            if let Some(err) = head.strip_prefix('-') {
                // LOADING: not serving yet; NOAUTH and others say nothing.
                return Err(if err.starts_with("LOADING") {
                    State::Down
                } else {
                    State::Unknown
                });
            }
            let len: usize = head
                .strip_prefix('$')
                .and_then(|l| l.trim().parse().ok())
                .ok_or(State::Unknown)?;
            let mut body = vec![0u8; len + 2];
            s.read_exact(&mut body).await.map_err(|_| State::Down)?;
            let text = String::from_utf8_lossy(&body);
            Ok(
                match text
                    .lines()
                    .find_map(|l| l.strip_prefix("role:"))
                    .map(str::trim)
                {
                    Some("master") => State::Primary,
                    Some("slave") => State::Standby,
                    _ => State::Unknown,
                },
            )
        };
        let answer = rt.block_on(async { tokio::time::timeout(SAMPLE_BUDGET, ask).await });
        let state = match answer {
            Err(_) => State::Unknown,
            Ok(Err(s)) | Ok(Ok(s)) => s,
        };
        if !matches!(state, State::Primary | State::Standby) {
            *conn = None;
        }
        state
    }
}

/// `chrt --fifo --pid 99 TID`: `SCHED_FIFO` at the highest priority for the
/// thread `tid`. False when the kernel or `chrt` refuses (no
/// `CAP_SYS_NICE`, or a control group without real-time runtime).
fn real_time(tid: i32) -> bool {
    let mut c = std::process::Command::new("chrt");
    c.args(["--fifo", "--pid", "99", &tid.to_string()]);
    matches!(crate::cmd::run_command(c, Duration::from_secs(5)), Ok(o) if o.success())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Whether the process of `pidfd` has ended (readable pidfd; a zombie
/// counts as dead).
fn dead(pidfd: &OwnedFd) -> bool {
    let fd = pidfd.as_fd();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

/// A failed connect or query, by its cause: nothing listening, or a server
/// that refuses connections (starting, shutting down) is `down`; anything
/// else does not tell the role.
fn pg_error_state(e: &tokio_postgres::Error) -> State {
    use tokio_postgres::error::SqlState;
    if let Some(code) = e.code() {
        return if *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
        {
            State::Down
        } else {
            State::Unknown
        };
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io {
        Some(io) => io_state(io),
        // Closed connection (server gone).
        None if e.is_closed() => State::Down,
        None => State::Unknown,
    }
}

/// A socket error: nothing there or nobody listening is `down`.
fn io_state(e: &std::io::Error) -> State {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | ConnectionRefused | ConnectionReset | BrokenPipe | UnexpectedEof => State::Down,
        _ => State::Unknown,
    }
}

/// Samples and gaps of one node's service over a window.
#[derive(Debug, Clone, Default)]
pub struct ServiceStats {
    /// Samples inside the window.
    pub samples: usize,
    /// Of which `unknown`.
    pub unknown: usize,
    /// Of which `primary`: that the watcher could read a role at all.
    pub primary: usize,
    /// Longest time between two consecutive samples of one boot, for the
    /// pairs that overlap the window (a powered-off node has no samples and
    /// no gap: it does not exist).
    pub max_gap: u64,
    /// When that gap ended.
    pub max_gap_end: u64,
    /// Time covered by the node's boots inside the window: per boot, from
    /// its first to its last sample, clipped to the window.
    pub covered: u64,
    /// Boots seen in the window.
    pub boots: Vec<u32>,
}

/// An interval during which `node` was writable (PostgreSQL) or a master
/// (Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    /// Node name.
    pub node: String,
    /// First `CLOCK_MONOTONIC` ns.
    pub from: u64,
    /// Last.
    pub to: u64,
}

/// Two nodes writable at once, over `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The two nodes, in name order.
    pub nodes: (String, String),
    /// First `CLOCK_MONOTONIC` ns of both.
    pub from: u64,
    /// Last.
    pub to: u64,
}

/// The overlaps of one service.
#[derive(Debug, Clone, Default)]
pub struct Overlaps {
    /// Intersections of two nodes' known writable intervals (first to last
    /// `primary` sample of each run), inside the window.
    pub known: Vec<Overlap>,
    /// Total time of [`Overlaps::known`] (their union), in ns.
    pub known_ns: u64,
    /// The same with each run extended to the samples around it that were
    /// not `primary` (what sampling cannot rule out): an upper bound.
    pub upper_ns: u64,
}

/// What the watcher saw over a window.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    /// The window's start (`CLOCK_MONOTONIC` ns).
    pub since: u64,
    /// Its end.
    pub until: u64,
    /// Per (node, service).
    pub stats: BTreeMap<(String, Service), ServiceStats>,
    /// Two writable PostgreSQL primaries.
    pub pg: Overlaps,
    /// Two Redis masters.
    pub redis: Overlaps,
}

impl WatchReport {
    /// The longest gap of any node and service, in ms.
    pub fn max_gap_ms(&self) -> u64 {
        self.stats.values().map(|s| s.max_gap).max().unwrap_or(0) / 1_000_000
    }

    /// Samples of `node`'s `service` in the window.
    pub fn samples(&self, node: &str, service: Service) -> usize {
        self.stats
            .get(&(node.to_owned(), service))
            .map_or(0, |s| s.samples)
    }

    /// One line per overlap, with times relative to `since`.
    pub fn describe(&self, o: &Overlaps) -> String {
        o.known
            .iter()
            .map(|x| {
                format!(
                    "{} and {} from {:.3} s to {:.3} s",
                    x.nodes.0,
                    x.nodes.1,
                    rel_s(x.from, self.since),
                    rel_s(x.to, self.since)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn rel_s(t: u64, since: u64) -> f64 {
    (t as f64 - since as f64) / 1e9
}

/// The report over `[since, until]` of `samples` (any order; samples
/// outside the window count for the gaps and runs that cross its edges).
///
/// A node is *known writable* from the first to the last `primary` sample
/// of each run of consecutive `primary` samples of one boot (an `unknown`
/// between two `primary` samples keeps the run going; `standby`, `down`
/// and a new boot end it). Two nodes' known writable intervals that
/// intersect inside the window are an [`Overlap`].
pub fn report(samples: &[Sample], since: u64, until: u64) -> WatchReport {
    let mut by: BTreeMap<(String, Service), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by.entry((s.node.clone(), s.service)).or_default().push(s);
    }
    let mut rep = WatchReport {
        since,
        until,
        ..Default::default()
    };
    let mut known: BTreeMap<Service, Vec<Writable>> = BTreeMap::new();
    let mut upper: BTreeMap<Service, Vec<Writable>> = BTreeMap::new();
    for ((node, service), mut list) in by {
        list.sort_by_key(|s| s.at);
        let mut st = ServiceStats::default();
        for s in list.iter().filter(|s| (since..=until).contains(&s.at)) {
            st.samples += 1;
            match s.state {
                State::Unknown => st.unknown += 1,
                State::Primary => st.primary += 1,
                State::Standby | State::Down => {}
            }
            if !st.boots.contains(&s.boot) {
                st.boots.push(s.boot);
            }
        }
        for w in list.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.boot == b.boot && b.at >= since && a.at <= until && b.at - a.at > st.max_gap {
                st.max_gap = b.at - a.at;
                st.max_gap_end = b.at;
            }
        }
        // Per boot: covered time, and the writable runs.
        let mut i = 0;
        while i < list.len() {
            let boot = list[i].boot;
            let mut j = i;
            while j < list.len() && list[j].boot == boot {
                j += 1;
            }
            let b = &list[i..j];
            let (first, last) = (b[0].at.max(since), b[b.len() - 1].at.min(until));
            if first <= last {
                st.covered += last - first;
            }
            for (k, l) in runs(b) {
                known.entry(service).or_default().push(Writable {
                    node: node.clone(),
                    from: b[k].at,
                    to: b[l].at,
                });
                // Upper bound: from the sample before the run to the one
                // after it (or the run's own end when there is none).
                let from = if k > 0 { b[k - 1].at } else { b[k].at };
                let to = b.get(l + 1).map_or(b[l].at, |s| s.at);
                upper.entry(service).or_default().push(Writable {
                    node: node.clone(),
                    from,
                    to,
                });
            }
            i = j;
        }
        rep.stats.insert((node, service), st);
    }
    for service in [Service::Pg, Service::Redis] {
        let k = overlaps(known.get(&service).map_or(&[][..], |v| v), since, until);
        let u = overlaps(upper.get(&service).map_or(&[][..], |v| v), since, until);
        let o = Overlaps {
            known_ns: union_len(&k),
            known: k,
            upper_ns: union_len(&u),
        };
        match service {
            Service::Pg => rep.pg = o,
            Service::Redis => rep.redis = o,
        }
    }
    rep
}

/// The runs of `primary` samples of one boot's samples, as index pairs
/// (first and last `primary` sample): `unknown` samples between two
/// `primary` ones keep a run going, any other state ends it.
fn runs(b: &[&Sample]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, usize)> = None;
    for (i, s) in b.iter().enumerate() {
        match s.state {
            State::Primary => {
                cur = Some(cur.map_or((i, i), |(k, _)| (k, i)));
            }
            State::Unknown => {}
            State::Standby | State::Down => {
                out.extend(cur.take());
            }
        }
    }
    out.extend(cur);
    out
}

/// The non-empty intersections, clipped to `[since, until]`, of the
/// intervals of two different nodes.
fn overlaps(w: &[Writable], since: u64, until: u64) -> Vec<Overlap> {
    let mut out = Vec::new();
    for (i, a) in w.iter().enumerate() {
        for b in &w[i + 1..] {
            if a.node == b.node {
                continue;
            }
            let from = a.from.max(b.from).max(since);
            let to = a.to.min(b.to).min(until);
            if from <= to {
                let mut nodes = (a.node.clone(), b.node.clone());
                if nodes.0 > nodes.1 {
                    nodes = (nodes.1, nodes.0);
                }
                out.push(Overlap { nodes, from, to });
            }
        }
    }
    out.sort_by_key(|o| o.from);
    out
}

/// Length of the union of the overlaps (sorted by `from`).
fn union_len(o: &[Overlap]) -> u64 {
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for x in o {
        match cur {
            Some((f, t)) if x.from <= t => cur = Some((f, t.max(x.to))),
            _ => {
                if let Some((f, t)) = cur {
                    total += t - f;
                }
                cur = Some((x.from, x.to));
            }
        }
    }
    if let Some((f, t)) = cur {
        total += t - f;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Samples of one node's PostgreSQL, `(ms, boot, state)`.
    fn pg(node: &str, list: &[(u64, u32, State)]) -> Vec<Sample> {
        list.iter()
            .map(|&(ms, boot, state)| Sample {
                at: ms * MS,
                node: node.to_owned(),
                boot,
                service: Service::Pg,
                state,
            })
            .collect()
    }

    use State::{Down as D, Primary as P, Standby as S, Unknown as U};

    #[test]
    fn a_handover_without_overlap_reports_none() {
        let mut all = pg("n1", &[(0, 1, P), (50, 1, P), (100, 1, S), (150, 1, S)]);
        all.extend(pg(
            "n2",
            &[(10, 1, S), (60, 1, S), (110, 1, P), (160, 1, P)],
        ));
        let r = report(&all, 0, 200 * MS);
        assert!(r.pg.known.is_empty(), "{:?}", r.pg.known);
        assert_eq!(r.pg.known_ns, 0);
        // Sampling cannot rule out n1 writable until 100 and n2 from 60.
        assert_eq!(r.pg.upper_ns, 40 * MS);
        assert_eq!(r.samples("n1", Service::Pg), 4);
        assert_eq!(r.max_gap_ms(), 50);
    }

    #[test]
    fn two_primaries_at_once_are_an_overlap_naming_both_nodes() {
        let mut all = pg("n1", &[(0, 1, P), (50, 1, P), (100, 1, P), (150, 1, S)]);
        all.extend(pg(
            "n2",
            &[(10, 1, S), (60, 1, P), (110, 1, P), (160, 1, P)],
        ));
        let r = report(&all, 0, 200 * MS);
        assert_eq!(
            r.pg.known,
            vec![Overlap {
                nodes: ("n1".into(), "n2".into()),
                from: 60 * MS,
                to: 100 * MS
            }]
        );
        assert_eq!(r.pg.known_ns, 40 * MS);
        assert!(r.redis.known.is_empty());
    }

    #[test]
    fn an_unknown_between_two_primary_samples_keeps_the_run() {
        let mut all = pg("n1", &[(0, 1, P), (50, 1, U), (100, 1, P), (150, 1, D)]);
        all.extend(pg("n2", &[(60, 1, P), (70, 1, S)]));
        let r = report(&all, 0, 200 * MS);
        assert_eq!(r.pg.known.len(), 1, "{:?}", r.pg.known);
        assert_eq!((r.pg.known[0].from, r.pg.known[0].to), (60 * MS, 60 * MS));
        assert_eq!(r.stats[&("n1".to_owned(), Service::Pg)].unknown, 1);
    }

    #[test]
    fn down_or_a_new_boot_ends_a_run() {
        // n1 primary, down, primary again: not writable in between.
        let mut all = pg("n1", &[(0, 1, P), (50, 1, D), (100, 1, P)]);
        all.extend(pg("n2", &[(60, 1, P), (70, 1, S)]));
        assert!(report(&all, 0, 200 * MS).pg.known.is_empty());
        // Powered off after 0 and booted at 100: no run across the boots.
        let mut all = pg("n1", &[(0, 1, P), (100, 2, P)]);
        all.extend(pg("n2", &[(60, 1, P), (70, 1, S)]));
        let r = report(&all, 0, 200 * MS);
        assert!(r.pg.known.is_empty(), "{:?}", r.pg.known);
        // ...and no gap while it was off.
        assert_eq!(r.stats[&("n1".to_owned(), Service::Pg)].max_gap, 0);
    }

    #[test]
    fn only_the_window_counts_but_gaps_across_its_edges_do() {
        let mut all = pg("n1", &[(0, 1, P), (300, 1, P), (350, 1, S)]);
        all.extend(pg("n2", &[(10, 1, P), (20, 1, S)]));
        // The overlap [10, 10] is before the window.
        let r = report(&all, 100 * MS, 400 * MS);
        assert!(r.pg.known.is_empty());
        assert_eq!(r.samples("n1", Service::Pg), 2);
        // The gap 0..300 crosses the window's start.
        assert_eq!(r.max_gap_ms(), 300);
    }

    #[test]
    fn lines_round_trip() {
        let s = parse_line("n1", "123\t2\tredis\tprimary").unwrap();
        assert_eq!(
            s,
            Sample {
                at: 123,
                node: "n1".into(),
                boot: 2,
                service: Service::Redis,
                state: State::Primary
            }
        );
        assert!(parse_line("n1", "123\t2\tredis").is_none());
        assert_eq!(parse_line("n1", s.line().trim_end()), Some(s));
    }
}
