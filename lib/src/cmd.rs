//! The one place that spawns processes.
//!
//! Pacemaker kills an agent whose action outlives its timeout, so no child may
//! run unbounded (the `heartbeat/pgsql` agent can retry `crm_mon` for a day).
//! Every child here:
//! - gets `stdin` from `/dev/null`, so nothing ever waits on the agent's input;
//! - runs in its own process group, killed as a whole when the deadline passes
//!   or when its handle is dropped;
//! - has stdout and stderr drained on threads while it runs, so a noisy child
//!   cannot fill a pipe and deadlock (the ripgrep `StderrReader` pattern);
//! - yields an error that names the command, the status and the trimmed stderr
//!   (the shape of cargo's `ProcessError`);
//! - starts with a cleared environment (see [`child_env`]): the agent's own
//!   holds every `OCF_RESKEY_*` parameter, passwords included, and a server
//!   started here would keep whatever it inherited for its whole life,
//!   readable by a database superuser in `/proc/self/environ`.
//!
//! A daemon that inherits our pipes (a server started by a wrapper) would keep
//! them open forever: once the direct child has exited we wait for the pipes
//! only a short grace period and then return what was read.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Gid, Pid, Uid};

/// How long to wait for the output pipes after the child itself has exited.
const PIPE_GRACE: Duration = Duration::from_millis(200);
/// How often the child's exit is polled.
const POLL: Duration = Duration::from_millis(5);
/// Captured output kept per stream, so a runaway child cannot exhaust memory.
const MAX_CAPTURE: usize = 1 << 20;

/// The `PATH` a child gets when the agent itself has none (or an empty one):
/// the system directories, as Debian's `/etc/login.defs` gives root.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every child gets from the agent's environment when set there: the
/// search path, the locale (pg_ctl, initdb and the server read it; messages
/// and number formats follow it) and the time zone. None of them is a secret.
const BASE_VARS: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_ADDRESS",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NAME",
    "LC_NUMERIC",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LC_TIME",
    "TZ",
];

/// Never inherited, whatever a call site asks: the agent's parameters,
/// `repl_password` and `redis_password` among them. A child that needs a
/// value gets it by name with [`Spec::env`].
const NEVER_INHERITED: &str = "OCF_RESKEY_";

/// A command to run: program, arguments, environment, user and timeout.
/// Its `Debug` shows the environment's names only: a value may be a
/// password (PGPASSWORD).
#[derive(Clone)]
pub struct Spec {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    inherit: Vec<Inherit>,
    user: Option<(Uid, Gid)>,
    cwd: Option<PathBuf>,
    timeout: Duration,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, _)| format!("{}=<redacted>", k.to_string_lossy()))
            .collect();
        f.debug_struct("Spec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &env)
            .field("inherit", &self.inherit)
            .field("user", &self.user)
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Spec {
    /// A command running `program` with a 10 s timeout until told otherwise.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Spec {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            inherit: Vec::new(),
            user: None,
            cwd: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child (secrets go here, never in
    /// arguments, which any user can read in `ps`).
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    /// Passes the agent's own value of `name`, if it has one, to the child
    /// (on top of [`BASE_VARS`]). Never an `OCF_RESKEY_*` parameter.
    pub fn inherit(mut self, name: &str) -> Self {
        self.inherit.push(Inherit::Name(name.to_owned()));
        self
    }

    /// Passes every variable of the agent's environment whose name starts
    /// with `prefix` (Pacemaker's own `PCMK_`, the operator's libpq `PG`).
    /// Never an `OCF_RESKEY_*` parameter, whatever the prefix.
    pub fn inherit_prefixed(mut self, prefix: &str) -> Self {
        self.inherit.push(Inherit::Prefix(prefix.to_owned()));
        self
    }

    /// Runs the child as this user and primary group, with the user's own
    /// supplementary groups (initgroups semantics, as `runuser` gives): root's
    /// are dropped, but Debian's PostgreSQL reads its TLS key through the
    /// `ssl-cert` group of which `postgres` is a member.
    pub fn user(mut self, uid: Uid, gid: Gid) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Runs the child in this directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// The child's timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The program, as given.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The program's file name and its first argument when that is a word
    /// (`pg_ctl start`): what an exit reason has room for.
    pub fn short(&self) -> String {
        let prog = Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        match self.args.first().map(|a| a.to_string_lossy()) {
            Some(a) if !a.starts_with('-') && !a.contains('/') && a.len() <= 20 => {
                format!("{prog} {a}")
            }
            _ => prog,
        }
    }

    /// The command line, for messages: program and arguments, space separated.
    pub fn display(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// What a finished child left.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// The exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program does not exist or is not executable.
    #[error("{program}: not found or not executable")]
    NotFound {
        /// The program.
        program: String,
    },
    /// The program could not be started.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The command outlived its timeout and was killed.
    #[error("{short} timed out after {:.1} s{}", timeout.as_secs_f64(), stderr_suffix(stderr))]
    TimedOut {
        /// Program and action, such as `pg_ctl start` (the whole command
        /// line is logged at debug level).
        short: String,
        /// Its timeout.
        timeout: Duration,
        /// What it wrote to stderr until then.
        stderr: String,
    },
    /// The command exited unsuccessfully.
    #[error("{short} failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        /// Program and action, such as `pg_ctl start` (the whole command
        /// line is logged at debug level).
        short: String,
        /// "exit code N" or "killed by signal S".
        status: String,
        /// Its exit code, when it exited.
        code: Option<i32>,
        /// Its trimmed stderr.
        stderr: String,
        /// Its stdout (some tools report errors there).
        stdout: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        // Keep it to what fits an exit reason: the last line says most.
        let last = t.lines().last().unwrap_or(t).trim();
        format!(": {last}")
    }
}

/// Describes an exit status as people read it.
pub fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {s}"),
        },
        _ => "unknown status".to_string(),
    }
}

/// Runs the command and returns its output if it exited 0.
pub fn run(spec: &Spec) -> Result<Output, CommandError> {
    let out = run_unchecked(spec)?;
    log::debug!("{} -> {}", spec.display(), describe_status(&out.status));
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError::Failed {
            short: spec.short(),
            status: describe_status(&out.status),
            code: out.status.code(),
            stderr: out.stderr.trim().to_string(),
            stdout: out.stdout,
        })
    }
}

/// Runs the command and returns its output whatever its exit status; fails
/// only when it cannot start or outlives its timeout.
pub fn run_unchecked(spec: &Spec) -> Result<Output, CommandError> {
    let started = Instant::now();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let account = spec
        .user
        .and_then(|(uid, _)| nix::unistd::User::from_uid(uid).ok().flatten());
    cmd.env_clear().envs(child_env(
        spec,
        std::env::vars_os(),
        account.as_ref().map(|u| Account {
            name: &u.name,
            home: &u.dir,
        }),
    ));
    if let Some((uid, gid)) = spec.user {
        rapidpro_ha_privdrop::switch_user(
            &mut cmd,
            uid,
            gid,
            account.as_ref().map(|u| u.name.as_str()),
        );
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let program = spec.program.to_string_lossy().into_owned();
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            CommandError::NotFound {
                program: program.clone(),
            }
        }
        _ => CommandError::Spawn {
            program: program.clone(),
            source: e,
        },
    })?;
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().expect("child present");

    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, true, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, false, tx.clone());
    }
    drop(tx);

    let deadline = started + spec.timeout;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut pipes_open = 2;
    let status = loop {
        // Collect whatever the readers have sent so far.
        while let Ok((is_out, buf)) = rx.try_recv() {
            collect(is_out, buf, &mut stdout, &mut stderr, &mut pipes_open);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(CommandError::Spawn { program, source: e }),
        }
        if Instant::now() >= deadline {
            guard.kill();
            while let Ok((is_out, buf)) = rx.recv_timeout(PIPE_GRACE) {
                collect(is_out, buf, &mut stdout, &mut stderr, &mut pipes_open);
                if pipes_open == 0 {
                    break;
                }
            }
            return Err(CommandError::TimedOut {
                short: spec.short(),
                timeout: spec.timeout,
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        thread::sleep(POLL);
    };
    guard.0 = None; // reaped: nothing left to kill
    let grace_end = Instant::now() + PIPE_GRACE;
    while pipes_open > 0 {
        let left = grace_end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((is_out, buf)) => collect(is_out, buf, &mut stdout, &mut stderr, &mut pipes_open),
            Err(_) => break, // a daemon kept our pipe: return what we have
        }
    }
    Ok(Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// Starts the command and leaves it running on its own: `input` written
/// to its standard input (then closed; it must fit in a pipe's buffer,
/// 64 KiB on Linux, so the write cannot block), its standard output and
/// error on /dev/null, the environment built as for [`run`], the working
/// directory `/` unless [`Spec::current_dir`] says otherwise. It is not
/// waited for: the agent exits a moment later and init (or the nearest
/// subreaper) reaps it. The child is not made a process group leader, so
/// that it can call `setsid` itself ([`crate::stack::act`]'s watcher);
/// [`Spec::timeout`] and [`Spec::user`] do not apply (the child bounds its
/// own life). Returns its process id.
pub fn spawn_detached(spec: &Spec, input: &[u8]) -> Result<u32, CommandError> {
    use std::io::Write;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(spec.cwd.as_deref().unwrap_or(Path::new("/")));
    cmd.env_clear()
        .envs(child_env(spec, std::env::vars_os(), None));
    let program = spec.program.to_string_lossy().into_owned();
    let mut child = cmd.spawn().map_err(|e| CommandError::Spawn {
        program: program.clone(),
        source: e,
    })?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| CommandError::Spawn { program, source: e })?;
    }
    Ok(pid)
}

/// A variable, or a family of them, a call site passes from the agent's
/// environment to its child.
#[derive(Debug, Clone)]
enum Inherit {
    Name(String),
    Prefix(String),
}

impl Inherit {
    fn matches(&self, name: &str) -> bool {
        match self {
            Inherit::Name(n) => n == name,
            Inherit::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// The user a child is switched to, for its login variables.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    /// The login name (`USER`, `LOGNAME`).
    pub name: &'a str,
    /// The home directory (`HOME`).
    pub home: &'a Path,
}

/// The whole environment of `spec`'s child, built from nothing (pure: the
/// agent's environment is `parent`):
/// 1. `PATH` as the agent got it from Pacemaker (execd gives agents one; an
///    operator may prepend a directory of tools), or [`DEFAULT_PATH`];
/// 2. the locale and time zone ([`BASE_VARS`]) when set;
/// 3. what the call site asked to inherit ([`Spec::inherit`],
///    [`Spec::inherit_prefixed`]), never an `OCF_RESKEY_*` parameter;
/// 4. for a child switched to a user, `HOME`, `USER` and `LOGNAME` of that
///    user, as runuser sets them (libpq looks for `.pgpass` in `$HOME`:
///    the user's, never root's);
/// 5. what the call site set with [`Spec::env`], last, so it wins.
///
/// Everything else stays behind: the passwords, Pacemaker's operation
/// variables, and systemd's `NOTIFY_SOCKET`, with which `supervised auto`
/// would keep redis-server in the foreground.
pub fn child_env<I>(
    spec: &Spec,
    parent: I,
    account: Option<Account<'_>>,
) -> BTreeMap<OsString, OsString>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut env = BTreeMap::new();
    for (k, v) in parent {
        let Some(name) = k.to_str() else { continue };
        if name.starts_with(NEVER_INHERITED) {
            continue;
        }
        if BASE_VARS.contains(&name) || spec.inherit.iter().any(|i| i.matches(name)) {
            env.insert(k, v);
        }
    }
    if env.get(OsStr::new("PATH")).is_none_or(|p| p.is_empty()) {
        env.insert("PATH".into(), DEFAULT_PATH.into());
    }
    if let Some(a) = account {
        env.insert("HOME".into(), a.home.as_os_str().to_owned());
        env.insert("USER".into(), a.name.into());
        env.insert("LOGNAME".into(), a.name.into());
    }
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// An empty buffer from a reader means its pipe closed.
fn collect(
    is_out: bool,
    buf: Vec<u8>,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
    pipes_open: &mut usize,
) {
    if buf.is_empty() {
        *pipes_open = pipes_open.saturating_sub(1);
        return;
    }
    let target = if is_out { stdout } else { stderr };
    let room = MAX_CAPTURE.saturating_sub(target.len());
    target.extend_from_slice(&buf[..buf.len().min(room)]);
}

fn spawn_reader<R: Read + Send + 'static>(
    mut r: R,
    is_out: bool,
    tx: mpsc::Sender<(bool, Vec<u8>)>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((is_out, Vec::new()));
                    return;
                }
                Ok(n) => {
                    if tx.send((is_out, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Kills the child's whole process group when dropped before being reaped
/// (the drbd-reactor `KillOnDrop` pattern).
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pgid = Pid::from_raw(child.id() as i32);
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_stderr_of_a_successful_command() {
        let out = run(&Spec::new("sh").args(["-c", "echo out; echo err >&2"])).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code(), Some(0));
    }

    #[test]
    fn a_failed_command_names_itself_its_status_and_its_stderr() {
        let err = run(&Spec::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("sh failed"), "{msg}");
        assert!(msg.contains("exit code 3"), "{msg}");
        assert!(msg.ends_with(": boom"), "{msg}");
    }

    #[test]
    fn run_unchecked_returns_non_zero_exits_as_output() {
        let out = run_unchecked(&Spec::new("sh").args(["-c", "exit 7"])).unwrap();
        assert_eq!(out.code(), Some(7));
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let err = run(&Spec::new("/nonexistent/rapidpro-ha-nothing")).unwrap_err();
        assert!(matches!(err, CommandError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let t = Instant::now();
        let err = run(&Spec::new("sh")
            .args(["-c", "echo started >&2; sleep 30 & sleep 30; wait"])
            .timeout(Duration::from_millis(300)))
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        match err {
            CommandError::TimedOut { stderr, .. } => assert_eq!(stderr, "started"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn a_daemon_holding_the_pipes_does_not_hold_the_caller() {
        // The direct child exits at once; its background grandchild keeps
        // stdout open for 30 s.
        let t = Instant::now();
        let out = run(&Spec::new("sh")
            .args(["-c", "sleep 3 & echo parent-done"])
            .timeout(Duration::from_secs(10)))
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(out.stdout.contains("parent-done"));
    }

    #[test]
    fn a_noisy_child_does_not_deadlock() {
        let out = run(&Spec::new("sh").args([
            "-c",
            "head -c 300000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero | tr '\\0' y >&2",
        ]))
        .unwrap();
        assert_eq!(out.stdout.len(), 300_000);
        assert_eq!(out.stderr.len(), 300_000);
    }

    #[test]
    fn the_environment_reaches_the_child_and_stdin_is_empty() {
        let out = run(&Spec::new("sh")
            .args(["-c", "printf %s \"$RAPIDPRO_TEST\"; cat"])
            .env("RAPIDPRO_TEST", "v"))
        .unwrap();
        assert_eq!(out.stdout, "v");
    }

    /// Debian's PostgreSQL reads its TLS key through the `ssl-cert` group:
    /// a child switched to a user has that user's groups, as after a login
    /// (`id -G USER` reads them from the group database).
    #[test]
    fn a_child_run_as_a_user_has_that_users_supplementary_groups() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to switch users");
            return;
        }
        let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") else {
            eprintln!("skipped: no postgres user");
            return;
        };
        let sorted = |s: &str| {
            let mut v: Vec<u32> = s.split_whitespace().map(|g| g.parse().unwrap()).collect();
            v.sort_unstable();
            v
        };
        let want = sorted(
            &run(&Spec::new("id").args(["-G", "postgres"]))
                .unwrap()
                .stdout,
        );
        assert!(
            want.len() > 1,
            "postgres has no supplementary group here (Debian puts it in ssl-cert): {want:?}"
        );
        let out = run(&Spec::new("id").arg("-G").user(pg.uid, pg.gid)).unwrap();
        assert_eq!(sorted(&out.stdout), want);
        let uid = run(&Spec::new("id").arg("-u").user(pg.uid, pg.gid)).unwrap();
        assert_eq!(uid.stdout.trim(), pg.uid.to_string());
    }

    /// Variables of the agent's environment a child may get without asking.
    fn is_locale_or_path(k: &str) -> bool {
        matches!(k, "PATH" | "LANG" | "LANGUAGE" | "TZ") || k.starts_with("LC_")
    }

    fn env_of(out: &Output) -> BTreeMap<String, String> {
        out.stdout
            .split('\0')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("NAME=value");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    /// The test process, like the agent, has variables of its own (cargo's
    /// `CARGO_*` at least): none reaches a child.
    #[test]
    fn a_child_gets_only_path_the_locale_and_what_its_call_site_sets() {
        let ours: BTreeMap<String, String> = std::env::vars().collect();
        assert!(
            ours.keys().any(|k| !is_locale_or_path(k)),
            "this test needs a variable beyond PATH and the locale: {ours:?}"
        );
        let out = run(&Spec::new("env").arg("-0").env("RAPIDPRO_TEST", "v")).unwrap();
        let mut want: BTreeMap<String, String> = ours
            .into_iter()
            .filter(|(k, _)| is_locale_or_path(k))
            .collect();
        want.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        want.insert("RAPIDPRO_TEST".into(), "v".into());
        assert_eq!(env_of(&out), want);
    }

    #[test]
    fn a_child_run_as_a_user_gets_that_users_home_and_names() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to switch users");
            return;
        }
        let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") else {
            eprintln!("skipped: no postgres user");
            return;
        };
        let out = run(&Spec::new("env").arg("-0").user(pg.uid, pg.gid)).unwrap();
        let got = env_of(&out);
        let names: Vec<&str> = got
            .keys()
            .map(String::as_str)
            .filter(|k| !is_locale_or_path(k))
            .collect();
        assert_eq!(names, ["HOME", "LOGNAME", "USER"], "{got:?}");
        assert_eq!(got["HOME"], pg.dir.display().to_string());
        assert_eq!(got["USER"], "postgres");
    }

    /// The decision itself, on a planted environment: the parameters
    /// (passwords among them) and anything else the agent got stay behind,
    /// even when a call site asks for a prefix that would match them.
    #[test]
    fn the_child_environment_is_exactly_path_locale_inherited_and_set() {
        let parent = [
            ("PATH", "/opt/tools:/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_MESSAGES", "C"),
            ("OCF_RESKEY_repl_password", "hunter2"),
            ("OCF_RESKEY_redis_password", "hunter3"),
            ("OCF_RESKEY_CRM_meta_on_node", "node1"),
            ("OCF_ROOT", "/usr/lib/ocf"),
            ("PGPASSWORD", "hunter4"),
            ("PCMK_logfile", "/var/log/pacemaker.log"),
            ("SECRET_CANARY", "canary"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let show = |env: BTreeMap<OsString, OsString>| -> Vec<String> {
            env.iter()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect()
        };
        let spec = Spec::new("pg_ctl").env("PGCONNECT_TIMEOUT", "5");
        assert_eq!(
            show(child_env(&spec, parent.clone(), None)),
            [
                "LANG=C.UTF-8",
                "LC_MESSAGES=C",
                "PATH=/opt/tools:/usr/bin",
                "PGCONNECT_TIMEOUT=5"
            ]
        );
        let greedy = Spec::new("crm_attribute")
            .inherit_prefixed("OCF_")
            .inherit_prefixed("PCMK_")
            .inherit("OCF_RESKEY_repl_password");
        assert_eq!(
            show(child_env(&greedy, parent.clone(), None)),
            [
                "LANG=C.UTF-8",
                "LC_MESSAGES=C",
                "OCF_ROOT=/usr/lib/ocf",
                "PATH=/opt/tools:/usr/bin",
                "PCMK_logfile=/var/log/pacemaker.log"
            ]
        );
        let as_user = Spec::new("pg_rewind").env("PGPASSWORD", "given");
        let account = Account {
            name: "postgres",
            home: Path::new("/var/lib/postgresql"),
        };
        assert_eq!(
            show(child_env(&as_user, [], Some(account))),
            [
                "HOME=/var/lib/postgresql",
                "LOGNAME=postgres",
                &format!("PATH={DEFAULT_PATH}"),
                "PGPASSWORD=given",
                "USER=postgres"
            ]
        );
    }

    #[test]
    fn a_specs_debug_shows_no_environment_value() {
        let shown = format!(
            "{:?}",
            Spec::new("pg_basebackup").env("PGPASSWORD", "hunter2")
        );
        assert!(shown.contains("PGPASSWORD=<redacted>"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
