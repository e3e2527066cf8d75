//! The node's `redis-server` process: generated config, start, stop, state.
//!
//! The agent does not edit the administrator's `redis.conf`. At each start
//! it writes `<run_dir>/<instance>.conf`, which includes that file first and
//! then sets what the agent must own: port, unix socket, pidfile,
//! daemonizing, and `replicaof` so that the server is a replica from its
//! first instant. Redis applies the last value of a directive, so these win
//! (<https://redis.io/docs/latest/operate/oss_and_stack/management/config-file/>).
//! The password goes into that file as `masterauth`, never on a command
//! line, where any local user could read it in `ps`.
//!
//! The pidfile is the process's identity. A pid is trusted only while
//! `/proc` shows a live `redis-server` under it, so a stale pidfile whose pid
//! was reused by another program is never signalled.
//!
//! The run directory belongs to the `redis` user: the agent reads, writes
//! and removes files there only through [`OwnedDir`], which never follows a
//! link (issue 11).

use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

use super::conn::connect;
use super::{Endpoint, RedisError};
use crate::cmd::{self, Spec};
use crate::deadline::Deadline;
use crate::owned_dir::{self, Kind, OwnedDir};

/// How often start and stop look at the server again.
const POLL: Duration = Duration::from_millis(25);
/// The longest one readiness probe (connect, AUTH, PING) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest the launching `redis-server` may take to daemonize; it
/// forks and exits before loading any data.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Share of the stop deadline given to `SIGTERM` before `SIGKILL`: a master
/// shutting down waits for its replicas and may save, which we allow as long
/// as there is time left to kill it and confirm it is gone.
const SIGTERM_SHARE: f64 = 0.8;
/// `unixsocketperm` of the agent's socket: only the `redis` user (and root,
/// which the agent is) may connect.
const SOCKET_PERM: &str = "700";
/// Mode of the run and socket directories the agent creates.
const DIR_MODE: u32 = 0o750;
/// Mode of parent directories the agent creates on the way.
const PARENT_DIR_MODE: u32 = 0o755;
/// Mode of the generated config, which holds the password.
const CONFIG_MODE: u32 = 0o600;
/// `sun_path` holds 108 bytes including the terminating NUL (unix(7)).
const MAX_SOCKET_PATH: usize = 107;
/// The kernel keeps 15 bytes of a program name in `/proc/<pid>/comm`.
const COMM_LEN: usize = 15;
/// The name a Redis server runs under.
const REDIS_SERVER: &str = "redis-server";

/// How the agent runs its node's `redis-server`.
#[derive(Clone)]
pub struct ServerSpec {
    /// The `redis-server` binary.
    pub redis_server: PathBuf,
    /// The administrator's `redis.conf`, included first by the generated one.
    pub config: PathBuf,
    /// TCP port (replicas connect to it).
    pub port: u16,
    /// The unix socket the agent connects to.
    pub socket: PathBuf,
    /// Used as `masterauth` and to `AUTH` the agent's connection; never put
    /// on a command line.
    pub password: Option<String>,
    /// The system user `redis-server` runs as (e.g. `redis`).
    pub user: String,
    /// Directory for the generated config and the pidfile; created (0750)
    /// and owned by `user` when missing.
    pub run_dir: PathBuf,
    /// The resource name; names `<run_dir>/<instance>.conf` and `.pid`.
    pub instance: String,
    /// Start as a replica of this master (always set when the agent starts it).
    pub replicaof: Option<(String, u16)>,
    /// `redis_tls`: `port` is then a TLS port, no plain TCP port is open,
    /// and replication runs over TLS.
    pub tls: Option<super::TlsFiles>,
}

impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("redis_server", &self.redis_server)
            .field("config", &self.config)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user)
            .field("run_dir", &self.run_dir)
            .field("instance", &self.instance)
            .field("replicaof", &self.replicaof)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ServerSpec {
    /// `<run_dir>/<instance>.pid`, written by `redis-server` itself.
    pub fn pidfile(&self) -> PathBuf {
        self.run_dir.join(format!("{}.pid", self.instance))
    }

    /// `<run_dir>/<instance>.conf`, written by [`start`].
    pub fn generated_config(&self) -> PathBuf {
        self.run_dir.join(format!("{}.conf", self.instance))
    }

    /// The unix socket, where the agent talks to this server.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket.clone())
    }

    /// Refuses values that would put files outside `run_dir`, that
    /// `redis-server` cannot use, or that depend on the current directory.
    fn validate(&self) -> Result<(), RedisError> {
        let bad = |name, value: &dyn fmt::Display, reason| {
            Err(RedisError::BadParameter {
                name,
                value: value.to_string(),
                reason,
            })
        };
        let i = &self.instance;
        if i.is_empty()
            || i == "."
            || i == ".."
            || i.contains('/')
            || i.chars().any(char::is_control)
        {
            return bad("instance name", i, "must be a plain file name");
        }
        for (name, path) in [
            ("redis config", &self.config),
            ("redis socket", &self.socket),
            ("redis run directory", &self.run_dir),
        ] {
            if !path.is_absolute() {
                return bad(name, &path.display(), "must be an absolute path");
            }
        }
        if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return bad(
                "redis socket",
                &self.socket.display(),
                "longer than the 107 bytes a unix socket path may have",
            );
        }
        if self.port == 0 {
            return bad("redis port", &self.port, "must be 1-65535");
        }
        if let Some((host, port)) = &self.replicaof {
            if host.is_empty() || *port == 0 {
                return bad(
                    "replicaof",
                    &format!("{host}:{port}"),
                    "needs a host and a port",
                );
            }
        }
        Ok(())
    }
}

/// Whether the server runs, judged from the pidfile and `/proc` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessState {
    /// No pidfile: never started, or stopped cleanly (Redis removes its
    /// pidfile on shutdown).
    NotRunning,
    /// The pidfile names a live `redis-server`.
    Running(i32),
    /// A pidfile is left but its pid is dead, a zombie or another program:
    /// the server crashed or was killed. The pid is 0 when the pidfile holds
    /// no valid pid.
    Crashed(i32),
}

/// Reads the pidfile and checks the process through `kill(pid, 0)` and
/// `/proc`; spawns nothing. A pidfile that is a link, a FIFO or a
/// stranger's file is not one redis-server wrote: a crash's leftover, never
/// followed.
pub fn process_state(spec: &ServerSpec) -> ProcessState {
    let name = format!("{}.pid", spec.instance);
    let read = run_dir(spec).and_then(|d| Ok(d.read(&name)?));
    let text = match read {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => return ProcessState::NotRunning,
        Err(RedisError::Files(e)) if e.is_not_found() => return ProcessState::NotRunning,
        Err(RedisError::Files(e)) if e.is_refusal() => {
            log::warn!("{e}");
            return ProcessState::Crashed(0);
        }
        Err(_) => return ProcessState::Crashed(0),
    };
    match parse_pid(&text) {
        Some(pid) if is_redis_process(pid, &spec.redis_server) => ProcessState::Running(pid),
        Some(pid) => ProcessState::Crashed(pid),
        None => ProcessState::Crashed(0),
    }
}

/// Starts `redis-server` as a replica and waits until it answers `PING` on
/// its unix socket.
///
/// Removes a stale pidfile first. A server already running under the
/// pidfile is left as it is (start is idempotent) and only waited for.
pub fn start(spec: &ServerSpec, deadline: &Deadline) -> Result<(), RedisError> {
    let started = Instant::now();
    spec.validate()?;
    let (uid, gid) = lookup_user(&spec.user)?;
    let pidfile = spec.pidfile();
    match process_state(spec) {
        ProcessState::Running(pid) => {
            log::info!(
                "redis-server already running (pid {pid}, pidfile {}); not starting another",
                pidfile.display()
            );
            return wait_ready(spec, deadline, started);
        }
        ProcessState::Crashed(pid) => {
            log::warn!(
                "removing stale pidfile {} (pid {pid} is not a running redis-server)",
                pidfile.display()
            );
            remove_leftovers(spec)?;
        }
        ProcessState::NotRunning => {}
    }
    ensure_dir(&spec.run_dir, uid, gid)?;
    if let Some(parent) = spec.socket.parent() {
        ensure_dir(parent, uid, gid)?;
    }
    write_config(spec, uid, gid)?;
    if spec.replicaof.is_none() {
        log::warn!(
            "starting redis-server on port {} without replicaof: it comes up as a master",
            spec.port
        );
    }
    if deadline.expired() {
        return Err(RedisError::Timeout {
            endpoint: spec.endpoint(),
            operation: "start (deadline passed before launching redis-server)".into(),
            timeout: started.elapsed(),
        });
    }
    let launch = Spec::new(&spec.redis_server)
        .arg(spec.generated_config())
        .user(uid, gid)
        .timeout(deadline.cap(LAUNCH_TIMEOUT));
    log::info!("starting {launch} as user {}", spec.user);
    cmd::run(&launch)?;
    wait_ready(spec, deadline, started)
}

/// Polls `PING` on the socket until it answers or the deadline passes.
fn wait_ready(spec: &ServerSpec, deadline: &Deadline, started: Instant) -> Result<(), RedisError> {
    let endpoint = spec.endpoint();
    let mut last_error = String::from("no attempt: deadline already passed");
    while !deadline.expired() {
        let probe = connect(
            &endpoint,
            spec.password.as_deref(),
            deadline.cap(PROBE_TIMEOUT),
        )
        .and_then(|mut conn| conn.ping().map(|()| conn));
        match probe {
            Ok(mut conn) => {
                return match process_state(spec) {
                    ProcessState::Running(pid) => {
                        log::info!("redis-server (pid {pid}) answers on {endpoint}");
                        Ok(())
                    }
                    _ => Err(RedisError::Untracked {
                        endpoint,
                        pid: conn.server_pid().ok(),
                        pidfile: spec.pidfile(),
                    }),
                };
            }
            // Retrying cannot fix a wrong password.
            Err(e @ RedisError::Auth { .. }) => return Err(e),
            Err(e) => last_error = e.to_string(),
        }
        // A pidfile naming a dead process: it came up and died (bad data
        // file, out of memory). Not worth waiting for the deadline.
        if let ProcessState::Crashed(pid) = process_state(spec) {
            if pid > 0 {
                return Err(RedisError::ExitedDuringStart {
                    pid,
                    config: spec.config.clone(),
                });
            }
        }
        thread::sleep(deadline.cap(POLL));
    }
    Err(RedisError::NotReady {
        endpoint,
        waited: started.elapsed(),
        last_error,
        config: spec.config.clone(),
    })
}

/// Stops the server: `SIGTERM`, then `SIGKILL` once 80% of the deadline is
/// used; succeeds only when the process is gone. Removes the pidfile and
/// socket a killed server leaves. A server that is not running is success.
pub fn stop(spec: &ServerSpec, deadline: &Deadline) -> Result<(), RedisError> {
    match process_state(spec) {
        ProcessState::NotRunning => Ok(()),
        ProcessState::Crashed(pid) => {
            log::info!(
                "redis-server (pid {pid}, pidfile {}) already dead; removing what it left",
                spec.pidfile().display()
            );
            remove_leftovers(spec)
        }
        ProcessState::Running(pid) => {
            terminate(spec, pid, deadline)?;
            remove_leftovers(spec)
        }
    }
}

fn terminate(spec: &ServerSpec, pid: i32, deadline: &Deadline) -> Result<(), RedisError> {
    let started = Instant::now();
    let kill_at = started + deadline.remaining().mul_f64(SIGTERM_SHARE);
    log::info!("stopping redis-server (pid {pid}) with SIGTERM");
    send(spec, pid, Signal::SIGTERM)?;
    let mut killed = false;
    loop {
        if !is_redis_process(pid, &spec.redis_server) {
            log::info!(
                "redis-server (pid {pid}) is gone after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if !killed && Instant::now() >= kill_at {
            log::warn!(
                "redis-server (pid {pid}) still running {:.1} s after SIGTERM; sending SIGKILL",
                started.elapsed().as_secs_f64()
            );
            send(spec, pid, Signal::SIGKILL)?;
            killed = true;
        }
        if deadline.expired() {
            return Err(RedisError::StillRunning {
                pid,
                pidfile: spec.pidfile(),
                waited: started.elapsed(),
                killed,
            });
        }
        thread::sleep(deadline.cap(POLL));
    }
}

/// Sends `signal` to `pid`, which the caller has just seen to be our
/// `redis-server` (the window for pid reuse is one poll interval). A process
/// already gone is not an error.
fn send(spec: &ServerSpec, pid: i32, signal: Signal) -> Result<(), RedisError> {
    let err = |source| RedisError::Signal {
        pid,
        pidfile: spec.pidfile(),
        signal,
        source,
    };
    // kill(2) with 0 or a negative pid signals process groups or everyone.
    if pid <= 0 {
        return Err(err(Errno::EINVAL));
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Removes the pidfile and the unix socket of a dead server (a clean
/// shutdown removes both itself). Only a socket is removed at the socket path.
fn remove_leftovers(spec: &ServerSpec) -> Result<(), RedisError> {
    match run_dir(spec) {
        Ok(dir) => {
            dir.remove(&format!("{}.pid", spec.instance))?;
        }
        Err(RedisError::Files(e)) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let (Some(parent), Some(name)) = (
        spec.socket.parent(),
        spec.socket.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(());
    };
    let uid = lookup_user(&spec.user).map_or(Uid::from_raw(0), |(uid, _)| uid);
    let dir = match OwnedDir::open(parent, uid) {
        Ok(dir) => dir,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(entry) = dir.entry(name)? {
        if entry.kind == Kind::Socket {
            dir.remove(name)?;
        }
    }
    Ok(())
}

/// The run directory, opened without following links; its files belong to
/// the server's user (or root). Without such a user (a probe on a node
/// without Redis installed) only root's files are accepted.
fn run_dir(spec: &ServerSpec) -> Result<OwnedDir, RedisError> {
    let uid = lookup_user(&spec.user).map_or(Uid::from_raw(0), |(uid, _)| uid);
    Ok(OwnedDir::open(&spec.run_dir, uid)?)
}

fn lookup_user(name: &str) -> Result<(Uid, Gid), RedisError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok((user.uid, user.gid)),
        Ok(None) => Err(RedisError::UnknownUser {
            user: name.to_string(),
        }),
        Err(errno) => Err(RedisError::io(
            "look up user in",
            "/etc/passwd",
            io::Error::from(errno),
        )),
    }
}

/// Makes sure `dir` exists. A missing one is created 0750 and owned by the
/// server's user (its parents 0755, owned by root). An existing one is left
/// as it is, with a warning when its mode bits seem to keep the user out.
fn ensure_dir(dir: &Path, uid: Uid, gid: Gid) -> Result<(), RedisError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if !user_may_create_in(
                meta.mode(),
                meta.uid(),
                meta.gid(),
                uid.as_raw(),
                gid.as_raw(),
            ) {
                log::warn!(
                    "{} (mode {:o}, owner {}:{}) looks closed to uid {uid}; redis-server may fail to create files there",
                    dir.display(),
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                );
            }
            return Ok(());
        }
        Ok(_) => {
            return Err(RedisError::io(
                "use directory",
                dir,
                io::Error::other("exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(RedisError::io("inspect directory", dir, e)),
    }
    if let Some(parent) = dir.parent() {
        create_parents(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else: theirs to own.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(RedisError::io("create directory", dir, e)),
    }
    // Through a descriptor: the parent may belong to another user, who
    // could swap the new directory for a link before a chown by path.
    let opened =
        owned_dir::open_dir_nofollow(dir).map_err(|e| RedisError::io("open directory", dir, e))?;
    // The umask may have cleared bits of DIR_MODE.
    opened
        .set_permissions(fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| RedisError::io("set the mode of", dir, e))?;
    std::os::unix::fs::fchown(&opened, Some(uid.as_raw()), Some(gid.as_raw()))
        .map_err(|e| RedisError::io("change the owner of", dir, e))
}

/// Creates the missing ancestors of a directory, top down, 0755.
fn create_parents(dir: &Path) -> Result<(), RedisError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    for p in missing.into_iter().rev() {
        match DirBuilder::new().mode(PARENT_DIR_MODE).create(p) {
            Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(PARENT_DIR_MODE))
                .map_err(|e| RedisError::io("set the mode of", p, e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(RedisError::io("create directory", p, e)),
        }
    }
    Ok(())
}

/// Whether a user may create entries in a directory with these mode and
/// owner, from the permission bits alone (no ACLs, no supplementary groups:
/// `cmd` drops them when it switches user).
fn user_may_create_in(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    let wx = if uid == 0 {
        return true;
    } else if owner == uid {
        (mode >> 6) & 0o3
    } else if group == gid {
        (mode >> 3) & 0o3
    } else {
        mode & 0o3
    };
    wx == 0o3
}

/// Writes the generated config: a new file (never through a link the
/// server's user may have planted), then renamed over the old one. A link,
/// FIFO or hard link under the config's name is refused.
fn write_config(spec: &ServerSpec, uid: Uid, gid: Gid) -> Result<(), RedisError> {
    let dir = OwnedDir::open(&spec.run_dir, uid)?;
    dir.write(
        &format!("{}.conf", spec.instance),
        &render_config(spec),
        uid,
        gid,
        CONFIG_MODE,
    )?;
    Ok(())
}

/// The generated `redis.conf`: the administrator's file, then the agent's
/// overrides.
fn render_config(spec: &ServerSpec) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |key: &str, value: &[u8]| {
        out.extend_from_slice(key.as_bytes());
        out.push(b' ');
        out.extend_from_slice(value);
        out.push(b'\n');
    };
    let path = |p: &Path| quote_conf(p.as_os_str().as_bytes());
    line(
        "#",
        format!(
            "Written by ocf:rapidpro:stack for resource {} at each start; edits here are lost.",
            spec.instance
        )
        .as_bytes(),
    );
    line(
        "#",
        b"Settings belong in the included file; the lines after it are the agent's.",
    );
    line("include", &path(&spec.config));
    match &spec.tls {
        None => line("port", spec.port.to_string().as_bytes()),
        Some(tls) => {
            // TLS only on TCP: no plain port a password could cross in
            // clear. The unix socket (local, mode 700) stays plain.
            line("port", b"0");
            line("tls-port", spec.port.to_string().as_bytes());
            line("tls-cert-file", &path(&tls.cert));
            line("tls-key-file", &path(&tls.key));
            line("tls-ca-cert-file", &path(&tls.ca));
            // A replica connects to its master over TLS, presenting
            // tls-cert-file as its client certificate, so Redis' default
            // tls-auth-clients yes (left to redis_config) works between
            // nodes. Redis checks the master's chain, not its name.
            line("tls-replication", b"yes");
        }
    }
    line("unixsocket", &path(&spec.socket));
    line("unixsocketperm", SOCKET_PERM.as_bytes());
    line("pidfile", &path(&spec.pidfile()));
    line("daemonize", b"yes");
    // With supervision on, redis-server would not daemonize.
    line("supervised", b"no");
    if let Some((host, port)) = &spec.replicaof {
        let mut v = quote_conf(host.as_bytes());
        v.extend_from_slice(format!(" {port}").as_bytes());
        line("replicaof", &v);
    }
    if let Some(password) = &spec.password {
        line("masterauth", &quote_conf(password.as_bytes()));
    }
    out
}

/// Quotes a value for `redis.conf`, which splits lines with `sdssplitargs`:
/// inside double quotes `\\`, `\"`, `\n`, `\r`, `\t` and `\xHH` are escapes
/// and every other byte stands for itself.
pub(super) fn quote_conf(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e | 0x80..=0xff => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
    out
}

/// A pidfile's pid: one positive integer, whitespace around it allowed.
fn parse_pid(text: &str) -> Option<i32> {
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

/// Whether `pid` is a live (not zombie) process that looks like a
/// `redis-server`.
pub(super) fn is_redis_process(pid: i32, binary: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    // A killed daemon stays a zombie until init reaps it; kill(pid, 0)
    // still succeeds on it.
    match fs::read_to_string(proc_dir.join("stat")) {
        Ok(stat) if !is_dead_stat(&stat) => {}
        _ => return false,
    }
    let comm = fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
    let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    looks_like_redis(comm.trim_end(), &cmdline, binary)
}

/// Whether a `/proc/<pid>/stat` line is of a zombie or dead task. The state
/// follows the command name, which may itself contain `)` (proc(5)).
fn is_dead_stat(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some(s) if s != "Z" && s != "X" && s != "x")
}

/// Whether `comm` or the first word of `cmdline` names `redis-server` or the
/// configured binary. Redis rewrites its title to `redis-server
/// 127.0.0.1:6379` (`proc-title-template`), so only the first word counts.
fn looks_like_redis(comm: &str, cmdline: &[u8], binary: &Path) -> bool {
    let configured = binary.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let names: [&[u8]; 2] = [REDIS_SERVER.as_bytes(), configured];
    let names = names.iter().filter(|n| !n.is_empty());
    let first_word = cmdline
        .split(|&b| b == 0 || b == b' ')
        .next()
        .unwrap_or_default();
    let argv0 = Path::new(std::ffi::OsStr::from_bytes(first_word))
        .file_name()
        .map(|n| n.as_bytes())
        .unwrap_or_default();
    names.into_iter().any(|name| {
        let short = &name[..name.len().min(COMM_LEN)];
        comm.as_bytes() == short || argv0 == *name
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec {
            redis_server: "/usr/bin/redis-server".into(),
            config: "/etc/redis/redis.conf".into(),
            port: 6379,
            socket: "/run/rapidpro/redis.sock".into(),
            password: Some("s3cret".into()),
            user: "redis".into(),
            run_dir: "/run/rapidpro".into(),
            instance: "rapidpro-stack".into(),
            replicaof: Some(("10.0.0.1".into(), 6379)),
            tls: None,
        }
    }

    #[test]
    fn with_tls_the_tcp_port_speaks_only_tls_and_replication_uses_it() {
        let s = ServerSpec {
            tls: Some(super::super::TlsFiles {
                ca: "/etc/redis/tls/ca.crt".into(),
                cert: "/etc/redis/tls/node a.crt".into(),
                key: "/etc/redis/tls/node.key".into(),
            }),
            ..spec()
        };
        let text = String::from_utf8(render_config(&s)).unwrap();
        let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            directives,
            [
                r#"include "/etc/redis/redis.conf""#,
                "port 0",
                "tls-port 6379",
                r#"tls-cert-file "/etc/redis/tls/node a.crt""#,
                r#"tls-key-file "/etc/redis/tls/node.key""#,
                r#"tls-ca-cert-file "/etc/redis/tls/ca.crt""#,
                "tls-replication yes",
                r#"unixsocket "/run/rapidpro/redis.sock""#,
                "unixsocketperm 700",
                r#"pidfile "/run/rapidpro/rapidpro-stack.pid""#,
                "daemonize yes",
                "supervised no",
                r#"replicaof "10.0.0.1" 6379"#,
                r#"masterauth "s3cret""#,
            ]
        );
        // The agent leaves tls-auth-clients to redis_config (Redis: yes).
        assert!(!text.contains("tls-auth-clients"), "{text}");
    }

    #[test]
    fn the_generated_config_includes_the_admins_file_then_overrides_it() {
        let text = String::from_utf8(render_config(&spec())).unwrap();
        let directives: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            directives,
            [
                r#"include "/etc/redis/redis.conf""#,
                "port 6379",
                r#"unixsocket "/run/rapidpro/redis.sock""#,
                "unixsocketperm 700",
                r#"pidfile "/run/rapidpro/rapidpro-stack.pid""#,
                "daemonize yes",
                "supervised no",
                r#"replicaof "10.0.0.1" 6379"#,
                r#"masterauth "s3cret""#,
            ]
        );
    }

    #[test]
    fn without_master_or_password_those_lines_are_left_out() {
        let s = ServerSpec {
            password: None,
            replicaof: None,
            ..spec()
        };
        let text = String::from_utf8(render_config(&s)).unwrap();
        assert!(
            !text.contains("replicaof") && !text.contains("masterauth"),
            "{text}"
        );
    }

    #[test]
    fn config_values_are_quoted_the_way_redis_splits_them() {
        assert_eq!(quote_conf(b"plain"), b"\"plain\"");
        assert_eq!(quote_conf(b"a b\"c\\d"), b"\"a b\\\"c\\\\d\"");
        assert_eq!(quote_conf(b"l1\nl2\r\t"), b"\"l1\\nl2\\r\\t\"");
        assert_eq!(quote_conf(b"\x00\x1b\x7f"), b"\"\\x00\\x1b\\x7f\"");
        assert_eq!(quote_conf("pässwörd".as_bytes()), "\"pässwörd\"".as_bytes());
    }

    #[test]
    fn a_password_cannot_inject_a_directive() {
        let s = ServerSpec {
            password: Some("x\"\nreplicaof no one\n#".into()),
            ..spec()
        };
        let text = String::from_utf8(render_config(&s)).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("replicaof")).count(),
            1,
            "{text}"
        );
        assert!(
            text.ends_with("masterauth \"x\\\"\\nreplicaof no one\\n#\"\n"),
            "{text}"
        );
    }

    #[test]
    fn files_are_named_after_the_instance_in_the_run_directory() {
        let s = spec();
        assert_eq!(s.pidfile(), Path::new("/run/rapidpro/rapidpro-stack.pid"));
        assert_eq!(
            s.generated_config(),
            Path::new("/run/rapidpro/rapidpro-stack.conf")
        );
        assert_eq!(
            s.endpoint(),
            Endpoint::Unix("/run/rapidpro/redis.sock".into())
        );
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let shown = format!("{:?}", spec());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn instance_names_that_escape_the_run_directory_are_refused() {
        for bad in ["", ".", "..", "../etc/passwd", "a/b", "a\nb"] {
            let s = ServerSpec {
                instance: bad.into(),
                ..spec()
            };
            let err = s.validate().unwrap_err();
            assert!(err.to_string().contains("instance name"), "{bad:?}: {err}");
        }
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn relative_paths_and_overlong_sockets_are_refused() {
        let relative = ServerSpec {
            config: "redis.conf".into(),
            ..spec()
        };
        assert!(relative
            .validate()
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        let long = ServerSpec {
            socket: PathBuf::from(format!("/run/{}.sock", "s".repeat(120))),
            ..spec()
        };
        assert!(long
            .validate()
            .unwrap_err()
            .to_string()
            .contains("107 bytes"));
    }

    #[test]
    fn pidfiles_hold_one_positive_pid() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("  77 "), Some(77));
        for bad in ["", "\n", "0", "-1", "12ab", "1 2", "99999999999"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zombie_and_dead_tasks_are_recognised_from_stat() {
        assert!(!is_dead_stat("4242 (redis-server) S 1 4242 4242 0 -1"));
        assert!(!is_dead_stat("4242 (redis-server) R 1"));
        assert!(is_dead_stat("4242 (redis-server) Z 1 4242"));
        assert!(is_dead_stat("4242 (a) Z) x) X 1"));
        assert!(is_dead_stat("garbage"));
        assert!(is_dead_stat(""));
    }

    #[test]
    fn redis_is_recognised_by_comm_or_by_its_rewritten_title() {
        let bin = Path::new("/usr/bin/redis-server");
        assert!(looks_like_redis("redis-server", b"", bin));
        assert!(looks_like_redis(
            "",
            b"/usr/bin/redis-server 127.0.0.1:6379\0\0\0",
            bin
        ));
        assert!(looks_like_redis("", b"redis-server *:6379", bin));
        // A custom build under a longer name: comm keeps 15 bytes.
        let custom = Path::new("/opt/redis/bin/redis-server-7.2.4");
        assert!(looks_like_redis("redis-server-7.", b"", custom));
        assert!(!looks_like_redis("bash", b"bash\0-c\0redis-server\0", bin));
        assert!(!looks_like_redis("sleep", b"sleep\0redis-server\0", bin));
        assert!(!looks_like_redis("", b"", bin));
    }

    #[test]
    fn directory_access_follows_owner_group_other_bits() {
        let (redis, redis_group) = (103, 106);
        assert!(user_may_create_in(
            0o750,
            redis,
            redis_group,
            redis,
            redis_group
        ));
        assert!(!user_may_create_in(
            0o550,
            redis,
            redis_group,
            redis,
            redis_group
        ));
        assert!(!user_may_create_in(0o755, 0, 0, redis, redis_group));
        assert!(user_may_create_in(
            0o770,
            0,
            redis_group,
            redis,
            redis_group
        ));
        assert!(user_may_create_in(0o1777, 0, 0, redis, redis_group));
        assert!(user_may_create_in(0o700, 5, 5, 0, 0));
    }
}
