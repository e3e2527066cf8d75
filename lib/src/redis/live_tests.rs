//! Start, stop, replicate and time out against real `redis-server`s.
//!
//! These need root (to run the server as user `redis`) and Debian's
//! `redis-server`; without them they fail and say so, rather than pass
//! without running. Every server listens on 127.0.0.1 only, on a free port,
//! with its files in its own directory under /tmp. A [`TestServer`] kills its
//! process by pid when dropped, so a failed assertion leaves nothing behind.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

use super::server::{is_redis_process, quote_conf};
use super::*;
use crate::deadline::Deadline;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_USER: &str = "redis";
/// Quotes, a backslash, a space and a tab: all must survive `redis.conf`.
const PASSWORD: &str = "pa ss\"wo\\rd\t!";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A port nothing listens on (as of now): bind port 0, read it, close.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn redis_user() -> User {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests start redis-server as user {REDIS_USER} and must run as root"
    );
    assert!(
        Path::new(REDIS_SERVER).exists(),
        "{REDIS_SERVER} is not installed"
    );
    User::from_name(REDIS_USER)
        .expect("look up user redis")
        .unwrap_or_else(|| panic!("system user {REDIS_USER} does not exist"))
}

/// One server's directory and spec; kills the server and removes the
/// directory when dropped.
struct TestServer {
    dir: PathBuf,
    spec: ServerSpec,
    pids: Vec<i32>,
}

impl TestServer {
    /// A server replicating from `replicaof`, whose admin config sets
    /// `requirepass` when `password` is given.
    fn new(replicaof: Option<(String, u16)>, password: Option<&str>) -> TestServer {
        Self::with_admin_config(replicaof, password, "")
    }

    fn with_admin_config(
        replicaof: Option<(String, u16)>,
        password: Option<&str>,
        extra: &str,
    ) -> TestServer {
        let user = redis_user();
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!(
            "/tmp/rapidpro-ha-redis-{}-{id}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        // The redis user must traverse to its files.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        nix::unistd::chown(&dir.join("data"), Some(user.uid), Some(user.gid)).unwrap();
        let quote = |s: &str| String::from_utf8(quote_conf(s.as_bytes())).unwrap();
        let mut admin = format!(
            "bind 127.0.0.1\n\
             dir {}\n\
             logfile {}\n\
             save \"\"\n\
             appendonly no\n\
             repl-diskless-sync no\n",
            quote(&dir.join("data").display().to_string()),
            quote(&dir.join("data/redis.log").display().to_string()),
        );
        if let Some(pw) = password {
            admin.push_str(&format!("requirepass {}\n", quote(pw)));
        }
        admin.push_str(extra);
        let config = dir.join("redis.conf");
        fs::write(&config, admin).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
        let spec = ServerSpec {
            redis_server: REDIS_SERVER.into(),
            config,
            port: free_port(),
            // Neither directory exists yet: start() creates both.
            socket: dir.join("sock/redis.sock"),
            password: password.map(str::to_string),
            user: REDIS_USER.into(),
            run_dir: dir.join("run"),
            instance: "redis-test".into(),
            replicaof,
            tls: None,
        };
        TestServer {
            dir,
            spec,
            pids: Vec::new(),
        }
    }

    #[track_caller]
    fn start(&mut self) -> i32 {
        let result = start(&self.spec, &Deadline::after(Duration::from_secs(15)));
        // Remember the pid even if start failed after launching.
        let state = process_state(&self.spec);
        if let ProcessState::Running(pid) = state {
            self.pids.push(pid);
        }
        if let Err(e) = result {
            panic!("start failed: {e}\n--- redis log\n{}", self.log());
        }
        match state {
            ProcessState::Running(pid) => pid,
            other => panic!("started but {other:?}\n--- redis log\n{}", self.log()),
        }
    }

    #[track_caller]
    fn stop(&self) {
        if let Err(e) = stop(&self.spec, &Deadline::after(Duration::from_secs(15))) {
            panic!("stop failed: {e}\n--- redis log\n{}", self.log());
        }
    }

    #[track_caller]
    fn conn(&self) -> Conn {
        connect(
            &self.spec.endpoint(),
            self.spec.password.as_deref(),
            Duration::from_secs(2),
        )
        .unwrap_or_else(|e| panic!("{e}\n--- redis log\n{}", self.log()))
    }

    #[track_caller]
    fn info(&self) -> ReplicationInfo {
        self.conn()
            .info_replication()
            .unwrap_or_else(|e| panic!("{e}\n--- redis log\n{}", self.log()))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("data/redis.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn cmdline(pid: i32) -> Vec<u8> {
        fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let mut pids = self.pids.clone();
        if let Ok(text) = fs::read_to_string(self.spec.pidfile()) {
            pids.extend(text.trim().parse::<i32>().ok());
        }
        for pid in pids {
            // Only ever a live redis-server, and never 0 or -1.
            if pid > 0 && is_redis_process(pid, &self.spec.redis_server) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                let gone = Instant::now() + Duration::from_secs(5);
                while is_redis_process(pid, &self.spec.redis_server) && Instant::now() < gone {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` every 50 ms for up to `limit`, panicking with `what` if it never
/// returns `Some`.
#[track_caller]
fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn local(port: u16) -> Option<(String, u16)> {
    Some(("127.0.0.1".to_string(), port))
}

#[test]
fn a_replica_started_by_the_agent_never_reports_master() {
    let mut s = TestServer::new(local(free_port()), None);
    let pid = s.start();

    // The first thing it answers: already a replica, of a master not there.
    let info = s.info();
    assert_eq!(info.role, Role::Replica, "{info:?}");
    assert_eq!(info.master_link_status, Some(LinkStatus::Down));
    assert_eq!(info.master_link_down_since_seconds, Some(-1));
    assert_eq!(info.master_port, s.spec.replicaof.as_ref().map(|r| r.1));
    assert!(
        !s.log().contains("MASTER MODE enabled"),
        "it was a master at some point:\n{}",
        s.log()
    );

    // What start() created, and for whom.
    let redis = redis_user();
    let run_dir = fs::metadata(&s.spec.run_dir).unwrap();
    assert_eq!(
        (run_dir.uid(), run_dir.mode() & 0o7777),
        (redis.uid.as_raw(), 0o750)
    );
    let socket_dir = fs::metadata(s.spec.socket.parent().unwrap()).unwrap();
    assert_eq!(
        (socket_dir.uid(), socket_dir.mode() & 0o7777),
        (redis.uid.as_raw(), 0o750)
    );
    let config = fs::metadata(s.spec.generated_config()).unwrap();
    assert_eq!(
        (config.uid(), config.mode() & 0o7777),
        (redis.uid.as_raw(), 0o600)
    );
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == redis.uid.to_string()),
        "{uid_line}"
    );

    s.conn().replicaof(None).unwrap();
    assert_eq!(s.info().role, Role::Master);

    s.stop();
    assert_eq!(process_state(&s.spec), ProcessState::NotRunning);
    assert!(!s.spec.pidfile().exists());
    assert!(!s.spec.socket.exists());
    assert!(!is_redis_process(pid, &s.spec.redis_server));
}

#[test]
fn a_killed_server_is_crashed_and_stop_cleans_up_after_it() {
    let mut s = TestServer::new(local(free_port()), None);
    let pid = s.start();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    poll(
        "the killed server to be reported crashed",
        Duration::from_secs(5),
        || (process_state(&s.spec) == ProcessState::Crashed(pid)).then_some(()),
    );
    assert!(s.spec.pidfile().exists() && s.spec.socket.exists());

    s.stop();
    assert_eq!(process_state(&s.spec), ProcessState::NotRunning);
    assert!(!s.spec.pidfile().exists());
    assert!(!s.spec.socket.exists());

    // And it starts again where it crashed.
    let again = s.start();
    assert_ne!(again, pid);
    s.stop();
}

#[test]
fn start_right_after_a_crash_replaces_the_stale_pidfile() {
    let mut s = TestServer::new(local(free_port()), None);
    let pid = s.start();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    poll(
        "the killed server to be reported crashed",
        Duration::from_secs(5),
        || (process_state(&s.spec) == ProcessState::Crashed(pid)).then_some(()),
    );
    let again = s.start();
    assert_eq!(process_state(&s.spec), ProcessState::Running(again));
    s.stop();
}

#[test]
fn start_of_a_running_server_leaves_it_running() {
    let mut s = TestServer::new(local(free_port()), None);
    let pid = s.start();
    assert_eq!(s.start(), pid);
    s.stop();
}

#[test]
fn a_second_server_replicates_from_the_first_with_the_password() {
    let mut a = TestServer::new(local(free_port()), Some(PASSWORD));
    let a_pid = a.start();
    a.conn().replicaof(None).unwrap();
    let mut b = TestServer::new(local(a.spec.port), Some(PASSWORD));
    let b_pid = b.start();

    let info = poll(
        "the replica's link to be up",
        Duration::from_secs(15),
        || {
            let info = b.info();
            (info.master_link_status == Some(LinkStatus::Up)).then_some(info)
        },
    );
    assert_eq!(info.role, Role::Replica);
    assert_eq!(info.master_port, Some(a.spec.port));
    let master = poll(
        "the master to list its replica online",
        Duration::from_secs(5),
        || {
            let info = a.info();
            (info.replicas.first().is_some_and(|r| r.state == "online")).then_some(info)
        },
    );
    assert_eq!(master.connected_slaves, 1);
    assert_eq!(master.replicas[0].port, b.spec.port);
    assert_eq!(master.replicas[0].ip, "127.0.0.1");
    assert_eq!(master.master_replid, info.master_replid);

    for pid in [a_pid, b_pid] {
        let cmdline = TestServer::cmdline(pid);
        assert!(!cmdline.is_empty());
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("pa ss"),
            "password on the command line of {pid}"
        );
    }

    // Without the password the server refuses commands; with a wrong one,
    // connecting says so.
    let mut anonymous = connect(&a.spec.endpoint(), None, Duration::from_secs(2)).unwrap();
    let err = anonymous.ping().unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    let err = connect(&a.spec.endpoint(), Some("wrong"), Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, RedisError::Auth { .. }), "{err:?}");

    // The master by TCP, as replicas and the failover path reach it.
    let tcp = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: a.spec.port,
    };
    let mut conn = connect(&tcp, Some(PASSWORD), Duration::from_secs(2)).unwrap();
    conn.ping().unwrap();
    assert_eq!(conn.info_replication().unwrap().role, Role::Master);

    b.stop();
    a.stop();
}

#[test]
fn a_password_is_accepted_by_a_server_that_has_none() {
    let mut s = TestServer::new(local(free_port()), None);
    s.start();
    let mut conn = connect(&s.spec.endpoint(), Some("unused"), Duration::from_secs(2)).unwrap();
    conn.ping().unwrap();
    s.stop();
}

#[test]
fn a_server_ignoring_sigterm_is_killed_before_the_deadline() {
    let mut s = TestServer::new(local(free_port()), None);
    let pid = s.start();
    // A stopped process keeps SIGTERM pending; only SIGKILL ends it.
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();

    // Meanwhile it accepts connections but answers nothing.
    let t = Instant::now();
    let mut conn = connect(&s.spec.endpoint(), None, Duration::from_millis(300)).unwrap();
    let err = conn.ping().unwrap_err();
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let t = Instant::now();
    stop(&s.spec, &Deadline::after(Duration::from_secs(2))).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "SIGKILL came early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!is_redis_process(pid, &s.spec.redis_server));
    assert_eq!(process_state(&s.spec), ProcessState::NotRunning);
    assert!(!s.spec.socket.exists());
}

#[test]
fn a_broken_admin_config_fails_start_in_redis_servers_own_words() {
    let mut s = TestServer::with_admin_config(local(free_port()), None, "no-such-directive yes\n");
    let err = start(&s.spec, &Deadline::after(Duration::from_secs(10))).unwrap_err();
    if let ProcessState::Running(pid) = process_state(&s.spec) {
        s.pids.push(pid);
    }
    let msg = err.to_string();
    assert!(matches!(err, RedisError::Command(_)), "{err:?}");
    assert!(msg.contains("redis-server"), "{msg}");
}

#[test]
fn a_server_that_cannot_listen_fails_start_naming_the_socket_and_the_log() {
    let mut s = TestServer::new(local(free_port()), None);
    // Take its port: redis-server daemonizes, then fails to bind and exits.
    let taken = TcpListener::bind(("127.0.0.1", s.spec.port)).unwrap();
    let t = Instant::now();
    let err = start(&s.spec, &Deadline::after(Duration::from_secs(2))).unwrap_err();
    if let ProcessState::Running(pid) = process_state(&s.spec) {
        s.pids.push(pid);
    }
    drop(taken);
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    let msg = err.to_string();
    assert!(matches!(err, RedisError::NotReady { .. }), "{err:?}");
    assert!(msg.contains(&s.spec.socket.display().to_string()), "{msg}");
    assert!(msg.contains("log"), "{msg}");
}

#[test]
fn stop_never_signals_a_pid_that_is_not_redis_server() {
    let s = TestServer::new(None, None);
    fs::create_dir_all(&s.spec.run_dir).unwrap();
    let me = std::process::id() as i32;
    for (content, expected) in [
        (me.to_string(), ProcessState::Crashed(me)),
        ("1".to_string(), ProcessState::Crashed(1)),
        ("0".to_string(), ProcessState::Crashed(0)),
        ("-1".to_string(), ProcessState::Crashed(0)),
        ("not a pid".to_string(), ProcessState::Crashed(0)),
        (String::new(), ProcessState::Crashed(0)),
    ] {
        fs::write(s.spec.pidfile(), &content).unwrap();
        assert_eq!(process_state(&s.spec), expected, "{content:?}");
        s.stop();
        assert!(!s.spec.pidfile().exists(), "{content:?}");
    }
    // Still here: nobody signalled this process.
    assert_eq!(process_state(&s.spec), ProcessState::NotRunning);
}

#[test]
fn stopping_a_server_that_never_started_succeeds() {
    let s = TestServer::new(None, None);
    assert_eq!(process_state(&s.spec), ProcessState::NotRunning);
    s.stop();
}

#[test]
fn start_as_a_user_that_does_not_exist_is_refused() {
    let mut s = TestServer::new(None, None);
    s.spec.user = "rapidpro-no-such-user".into();
    let err = start(&s.spec, &Deadline::after(Duration::from_secs(2))).unwrap_err();
    assert!(matches!(err, RedisError::UnknownUser { .. }), "{err:?}");
    assert!(err.to_string().contains("rapidpro-no-such-user"), "{err}");
}

#[test]
fn a_silent_server_times_out_within_the_timeout() {
    // Accepts (the kernel completes the handshake) and never replies.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    let t = Instant::now();
    let mut conn = connect(&ep, None, Duration::from_millis(300)).unwrap();
    let err = conn.ping().unwrap_err();
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&ep.to_string()), "{err}");
    // The reply stream is out of step now: no second command on it.
    assert!(matches!(
        conn.ping().unwrap_err(),
        RedisError::Broken { .. }
    ));

    let err = connect(&ep, Some("pw"), Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let err = connect(&ep, None, Duration::ZERO).unwrap_err();
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
}

#[test]
fn connecting_to_nothing_names_the_endpoint() {
    let tcp = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: free_port(),
    };
    let err = connect(&tcp, None, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, RedisError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("redis at {tcp}")),
        "{err}"
    );

    let unix = Endpoint::Unix("/tmp/rapidpro-ha-no-such-dir/redis.sock".into());
    let err = connect(&unix, None, Duration::from_secs(1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("redis at unix:/tmp/rapidpro-ha-no-such-dir/redis.sock"),
        "{err}"
    );
}
