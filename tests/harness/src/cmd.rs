//! The one place the harness spawns processes.
//!
//! Three choices here are deliberate:
//!
//! - **Output goes to memfd files, not pipes.** The agent starts daemons
//!   (`pg_ctl` forks the postmaster, the agent forks `redis-server`). A daemon
//!   that inherits a pipe keeps it open, and a reader waiting for EOF would
//!   hang for as long as the daemon lives. A file has no EOF to wait for: once
//!   the direct child has exited we read what is there.
//! - **Every child gets its own process group** (`process_group(0)`, as
//!   Pacemaker's execd does with `setpgid` for agents), so a timeout kills the
//!   child and whatever it forked without setsid, and nothing else.
//! - **Every child is registered with the reaper** while it runs, so the
//!   reaper (see `reaper.rs`) never steals its exit status.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Pid, User};

use crate::reaper;

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossily decoded as UTF-8).
    pub stderr: String,
}

impl CmdOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or 128 + the signal number if a signal ended it (the
    /// shell's convention).
    pub fn code(&self) -> i32 {
        exit_code(self.status)
    }

    /// `Ok(stdout)` on success, otherwise a message naming the command, how
    /// it ended and its trimmed stderr (cargo's `ProcessError` shape).
    pub fn into_result(self) -> Result<String, String> {
        if self.success() {
            Ok(self.stdout)
        } else {
            Err(self.failure_message())
        }
    }

    /// "`command` failed (exit N)", then stdout and stderr, trimmed.
    pub fn failure_message(&self) -> String {
        format!(
            "`{}` failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            describe_status(self.status),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Why [`run_command`] returned no [`CmdOutput`].
#[derive(Debug)]
pub enum CmdError {
    /// The command could not be started (or its output not captured).
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The command ran past its deadline; its process group was killed.
    TimedOut {
        /// The command line.
        command: String,
        /// The deadline it exceeded.
        after: Duration,
        /// What it had written to stdout by then.
        stdout: String,
        /// What it had written to stderr by then.
        stderr: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Spawn { command, source } => write!(f, "cannot run `{command}`: {source}"),
            CmdError::TimedOut {
                command,
                after,
                stdout,
                stderr,
            } => write!(
                f,
                "`{command}` timed out after {}s and was killed\n--- stdout\n{}\n--- stderr\n{}",
                after.as_secs_f64(),
                stdout.trim_end(),
                stderr.trim_end()
            ),
        }
    }
}

impl std::error::Error for CmdError {}

/// Runs `cmd` to completion with stdin from `/dev/null`, capturing stdout and
/// stderr, in a new process group. If it is still running after `timeout`,
/// its process group is sent SIGKILL and [`CmdError::TimedOut`] is returned.
///
/// Tests that spawn processes themselves should use this too: the harness
/// makes the test process a child subreaper (see the crate docs), and a child
/// started elsewhere in a process group of its own could have its exit status
/// collected by the harness's reaper before `Child::wait` sees it.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Result<CmdOutput, CmdError> {
    reaper::ensure_started();
    let command = describe(&cmd);
    let spawn_err = |source| CmdError::Spawn {
        command: command.clone(),
        source,
    };
    let mut stdout = memfd("stdout").map_err(spawn_err)?;
    let mut stderr = memfd("stderr").map_err(spawn_err)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout.try_clone().map_err(spawn_err)?))
        .stderr(Stdio::from(stderr.try_clone().map_err(spawn_err)?))
        .process_group(0);

    let mut child = reaper::spawn_registered(&mut cmd).map_err(spawn_err)?;
    // Drop the parent's copies of the output descriptors the Command holds.
    drop(cmd);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let (waited, timed_out) = match rx.recv_timeout(timeout) {
        Ok(waited) => (waited, false),
        Err(_) => {
            // The waiter has not reported, so the child has (barring a
            // reap in this very instant) not been waited for and its pid,
            // which is also its process group id, is still its own.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let waited = rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("waiter thread died")));
            (waited, true)
        }
    };
    reaper::unregister(pid);
    let status = waited.map_err(spawn_err)?;
    let stdout = read_all(&mut stdout);
    let stderr = read_all(&mut stderr);
    if timed_out {
        return Err(CmdError::TimedOut {
            command,
            after: timeout,
            stdout,
            stderr,
        });
    }
    Ok(CmdOutput {
        command,
        status,
        stdout,
        stderr,
    })
}

/// Makes `cmd` run as the system user `user` (uid, primary gid, no
/// supplementary groups: std drops them when root sets a uid), from `/` so
/// that it does not start in a directory it cannot read, with `HOME` and
/// `USER` set as a login would.
///
/// Panics if the user does not exist: the harness needs it and must not skip.
pub(crate) fn as_user(cmd: &mut Command, user: &str) {
    let u = lookup_user(user);
    cmd.uid(u.uid.as_raw())
        .gid(u.gid.as_raw())
        .current_dir("/")
        .env("HOME", &u.dir)
        .env("USER", user)
        .env("LOGNAME", user);
}

/// The system user `name`; panics with a clear message when it is missing.
pub(crate) fn lookup_user(name: &str) -> User {
    match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => panic!("system user {name:?} does not exist; install its package"),
        Err(e) => panic!("cannot look up system user {name:?}: {e}"),
    }
}

/// A command with a cleared environment except `PATH`, for the service
/// clients, so that `PGHOST`, `REDISCLI_AUTH` and friends from the developer's
/// shell cannot leak in.
pub(crate) fn clean_command(program: impl AsRef<Path>) -> Command {
    let mut cmd = Command::new(program.as_ref());
    cmd.env_clear().env("PATH", crate::agent::agent_path());
    cmd
}

/// Runs `cmd`, panicking with the full story unless it exits 0; returns its
/// stdout.
#[track_caller]
pub(crate) fn must(cmd: Command, timeout: Duration) -> String {
    match run_command(cmd, timeout) {
        Ok(out) => match out.into_result() {
            Ok(stdout) => stdout,
            Err(msg) => panic!("{msg}"),
        },
        Err(e) => panic!("{e}"),
    }
}

/// The exit code, or 128 + signal number.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// "exit 3" or "killed by signal 9 (SIGKILL)".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({s})"),
            Err(_) => format!("killed by signal {sig}"),
        },
        (None, None) => format!("{status}"),
    }
}

/// `program arg arg...`, without the environment (which `Debug` would print).
fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// An anonymous in-memory file for a child's output.
fn memfd(name: &str) -> io::Result<File> {
    let name = CString::new(format!("rapidpro-harness-{name}")).expect("no NUL in name");
    let fd = memfd_create(&name, MemFdCreateFlag::MFD_CLOEXEC).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

fn read_all(f: &mut File) -> String {
    let mut buf = Vec::new();
    if let Err(e) = f
        .seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut buf))
    {
        return format!("<harness could not read captured output: {e}>");
    }
    String::from_utf8_lossy(&buf).into_owned()
}
