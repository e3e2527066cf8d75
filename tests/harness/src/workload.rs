//! The writer and the watcher that run during every cluster scenario.
//!
//! Both run on threads of the test process that have joined the cluster's
//! network namespace (`setns` on a thread changes only that thread), so
//! they reach the nodes and the virtual IP without a helper process.
//!
//! - The [`Writer`] commits one row at a time through the virtual IP and
//!   records every commit the server acknowledged. Each statement has its
//!   own client-side timeout: `statement_timeout` does not bound a COMMIT
//!   that waits for a synchronous standby.
//! - The [`Watcher`] samples every node and records each moment at which two
//!   PostgreSQL servers accepted writes or two Redis servers were masters.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// The role the writer connects as, created in the PostgreSQL template.
pub const WRITER_USER: &str = "writer";
/// Its password.
pub const WRITER_PASSWORD: &str = "secret";
/// Prefix of the writer's rows in `sms.body`.
pub const ROW_PREFIX: &str = "w-";

/// How long one write may take before the writer gives up on it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between failed attempts.
const RETRY: Duration = Duration::from_millis(50);
/// Pause between successful writes.
const PACE: Duration = Duration::from_millis(20);

/// Joins the network namespace of `pid` on the current thread.
fn enter_netns(pid: i32) -> std::io::Result<()> {
    let f = File::open(format!("/proc/{pid}/ns/net"))?;
    setns(f, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// What the writer saw.
#[derive(Debug, Clone, Default)]
pub struct WriterReport {
    /// Rows whose commit was acknowledged, by number.
    pub acked: BTreeSet<u64>,
    /// Attempts that failed or timed out.
    pub failures: u64,
    /// Longest time between two acknowledged commits: the write
    /// unavailability window.
    pub longest_gap: Duration,
    /// Time of the acknowledged commit that ended the longest gap, since
    /// the writer started.
    pub longest_gap_end: Duration,
}

/// Writes rows through an address in a loop until stopped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<WriterReport>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts writing to `host:port` from the network namespace of
    /// `netns_pid`.
    pub fn start(netns_pid: i32, host: &str, port: u16) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(WriterReport::default()));
        let (s, r, host) = (stop.clone(), report.clone(), host.to_owned());
        let handle = std::thread::spawn(move || {
            enter_netns(netns_pid).expect("join the cluster's network namespace");
            let rt = runtime();
            let started = Instant::now();
            let trace = std::env::var_os("RAPIDPRO_WRITER_TRACE").is_some();
            let mut last_ack = Instant::now();
            let mut n: u64 = 0;
            let mut client: Option<tokio_postgres::Client> = None;
            while !s.load(Ordering::Relaxed) {
                if !matches!(&client, Some(c) if !c.is_closed()) {
                    client = rt.block_on(connect(&host, port, WRITER_USER, WRITER_PASSWORD));
                    if client.is_none() {
                        if trace {
                            eprintln!(
                                "writer {:.2}: connect failed",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        r.lock().unwrap().failures += 1;
                        std::thread::sleep(RETRY);
                        continue;
                    }
                }
                n += 1;
                let c = client.as_ref().expect("connected");
                let sql = format!("INSERT INTO sms(body) VALUES ('{ROW_PREFIX}{n}')");
                let done = rt.block_on(async {
                    tokio::time::timeout(WRITE_TIMEOUT, c.simple_query(&sql)).await
                });
                match done {
                    Ok(Ok(_)) => {
                        let now = Instant::now();
                        let mut rep = r.lock().unwrap();
                        rep.acked.insert(n);
                        let gap = now - last_ack;
                        if gap > rep.longest_gap {
                            rep.longest_gap = gap;
                            rep.longest_gap_end = now - started;
                        }
                        last_ack = now;
                        drop(rep);
                        std::thread::sleep(PACE);
                    }
                    other => {
                        if trace {
                            let why = match other {
                                Err(_) => "timed out".to_string(),
                                Ok(Err(e)) => e.to_string(),
                                Ok(Ok(_)) => unreachable!(),
                            };
                            eprintln!(
                                "writer {:.2}: write failed: {why}",
                                started.elapsed().as_secs_f64()
                            );
                        }
                        // Unknown outcome: not acknowledged. Drop the
                        // connection (a timed-out commit may still wait).
                        client = None;
                        r.lock().unwrap().failures += 1;
                        std::thread::sleep(RETRY);
                    }
                }
            }
        });
        Writer {
            stop,
            report,
            handle: Some(handle),
        }
    }

    /// A copy of what the writer has seen so far.
    pub fn snapshot(&self) -> WriterReport {
        self.report.lock().unwrap().clone()
    }

    /// Waits until at least `n` more commits are acknowledged.
    pub fn wait_for_acks(&self, n: usize, timeout: Duration) {
        let target = self.snapshot().acked.len() + n;
        crate::poll(&format!("{target} acknowledged writes"), timeout, || {
            (self.snapshot().acked.len() >= target).then_some(())
        });
    }

    /// Stops and returns the report.
    pub fn stop(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.snapshot()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

async fn connect(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
) -> Option<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(1));
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(2), cfg.connect(tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

/// One moment at which the invariant broke.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Since the watcher started.
    pub at: Duration,
    /// What was seen.
    pub what: String,
}

/// What the watcher saw.
#[derive(Debug, Clone, Default)]
pub struct WatcherReport {
    /// Sampling rounds done.
    pub rounds: u64,
    /// Moments with two writable PostgreSQL servers.
    pub dual_primary: Vec<Violation>,
    /// Moments with two Redis masters.
    pub dual_redis_master: Vec<Violation>,
}

/// Samples every node until stopped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<WatcherReport>>,
    handle: Option<JoinHandle<()>>,
}

/// A node as the watcher reaches it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Node name.
    pub name: String,
    /// Its own address (not the virtual IP).
    pub addr: String,
}

impl Watcher {
    /// Starts sampling `nodes` (PostgreSQL on `pg_port` as the writer role,
    /// Redis on `redis_port`) from the network namespace of `netns_pid`.
    pub fn start(netns_pid: i32, nodes: Vec<Target>, pg_port: u16, redis_port: u16) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(WatcherReport::default()));
        let (s, r) = (stop.clone(), report.clone());
        let handle = std::thread::spawn(move || {
            enter_netns(netns_pid).expect("join the cluster's network namespace");
            let rt = runtime();
            let started = Instant::now();
            let mut clients: Vec<Option<tokio_postgres::Client>> =
                nodes.iter().map(|_| None).collect();
            while !s.load(Ordering::Relaxed) {
                let mut writable = Vec::new();
                let mut masters = Vec::new();
                for (i, n) in nodes.iter().enumerate() {
                    if !matches!(&clients[i], Some(c) if !c.is_closed()) {
                        clients[i] =
                            rt.block_on(connect(&n.addr, pg_port, WRITER_USER, WRITER_PASSWORD));
                    }
                    if let Some(c) = &clients[i] {
                        let q = rt.block_on(async {
                            tokio::time::timeout(
                                Duration::from_millis(500),
                                c.simple_query("SELECT pg_is_in_recovery()"),
                            )
                            .await
                        });
                        match q {
                            Ok(Ok(rows)) => {
                                let primary = rows.iter().any(|m| {
                                    matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("f"))
                                });
                                if primary {
                                    writable.push(n.name.clone());
                                }
                            }
                            _ => clients[i] = None,
                        }
                    }
                    if redis_role(&n.addr, redis_port).as_deref() == Some("master") {
                        masters.push(n.name.clone());
                    }
                }
                let at = started.elapsed();
                let mut rep = r.lock().unwrap();
                rep.rounds += 1;
                if writable.len() > 1 {
                    rep.dual_primary.push(Violation {
                        at,
                        what: format!("writable PostgreSQL on {}", writable.join(", ")),
                    });
                }
                if masters.len() > 1 {
                    rep.dual_redis_master.push(Violation {
                        at,
                        what: format!("Redis masters on {}", masters.join(", ")),
                    });
                }
                drop(rep);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Watcher {
            stop,
            report,
            handle: Some(handle),
        }
    }

    /// Stops and returns the report.
    pub fn stop(mut self) -> WatcherReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.report.lock().unwrap().clone()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Redis `role` of `addr:port`, by a raw RESP exchange with short timeouts.
fn redis_role(addr: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let sa: std::net::SocketAddr = format!("{addr}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n")
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => {
                got += k;
                if String::from_utf8_lossy(&buf[..got]).contains("role:")
                    && buf[..got].ends_with(b"\r\n")
                {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&buf[..got]);
    text.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
}

/// Checks that every acknowledged row is on the server, reading through
/// `host:port` from the network namespace of `netns_pid`. Returns the rows
/// missing.
pub fn missing_rows(netns_pid: i32, host: &str, port: u16, acked: &BTreeSet<u64>) -> Vec<u64> {
    let (host, acked) = (host.to_owned(), acked.clone());
    let h = std::thread::spawn(move || {
        enter_netns(netns_pid).expect("join the cluster's network namespace");
        let rt = runtime();
        let c = rt
            .block_on(connect(&host, port, WRITER_USER, WRITER_PASSWORD))
            .expect("connect to the primary to check rows");
        let rows = rt
            .block_on(c.simple_query(&format!(
                "SELECT substr(body, {}) FROM sms WHERE body LIKE '{ROW_PREFIX}%'",
                ROW_PREFIX.len() + 1
            )))
            .expect("read the writer's rows");
        let present: BTreeSet<u64> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .collect();
        acked.difference(&present).copied().collect::<Vec<u64>>()
    });
    h.join().expect("row check thread")
}

/// Where a namespace file lives, for messages.
pub fn netns_path(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}
