//! The server's life: is it running, start it as a standby, stop it, rewind
//! it, and the files of the data directory that decide its role.
//!
//! Whether the postmaster runs is read from `postmaster.pid` and `/proc`,
//! without a child process. The role a stopped server would come back in is
//! read from `standby.signal`: the agent writes it before every start, and
//! only `pg_promote()` removes it.
//!
//! The data directory belongs to `system_user`: every file the agent reads,
//! writes or removes there goes through [`OwnedDir`], which never follows a
//! link and creates files exclusively (issue 11).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid};

use super::PgError;
use crate::cmd::{self, Spec};
use crate::deadline::Deadline;
use crate::owned_dir::OwnedDir;

/// `postmaster.pid`, in the data directory.
const PIDFILE: &str = "postmaster.pid";
/// `standby.signal`, in the data directory.
const STANDBY_SIGNAL: &str = "standby.signal";
/// `postgresql.auto.conf`, in the data directory.
const AUTO_CONF: &str = "postgresql.auto.conf";
/// Mode of the files the agent writes into the data directory.
const FILE_MODE: u32 = 0o600;
/// The node's own configuration files that pg_rewind would overwrite with
/// the primary's, when they are inside the data directory.
const CONFIG_FILES: [&str; 4] = ["postgresql.conf", AUTO_CONF, "pg_hba.conf", "pg_ident.conf"];

/// Where the server's files and programs are, and who runs them.
#[derive(Debug, Clone)]
pub struct Server {
    /// PGDATA.
    pub pgdata: PathBuf,
    /// Directory of postgresql.conf (pg_ctl -D).
    pub datadir: PathBuf,
    /// Directory of pg_ctl and friends.
    pub bindir: PathBuf,
    /// pg_ctl -l target.
    pub logfile: PathBuf,
    /// uid of system_user.
    pub uid: Uid,
    /// gid of system_user.
    pub gid: Gid,
}

/// Whether the postmaster runs, from its pid file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// No `postmaster.pid`: cleanly stopped.
    Stopped,
    /// The postmaster of `postmaster.pid` is alive.
    Running(i32),
    /// `postmaster.pid` names a process that is gone: it crashed or was killed.
    Crashed(i32),
}

/// `wal_retrieve_retry_interval` of a standby: how soon its WAL receiver
/// tries primary_host again after a failed connection. PostgreSQL's 5 s
/// default left a standby that lost its primary (a failover, a switchover:
/// the VIP moves only after the promotion) up to 5 s without streaming from
/// the new one, and with `sync_replication=on` the new primary acknowledged
/// commits alone all that time: a crash of it then lost them (issue 15).
/// The cost is one connection attempt, and one log line, per half second
/// while no primary answers.
pub const STANDBY_RETRY_INTERVAL: &str = "500ms";

/// Which timeline a standby recovers to (`recovery_target_timeline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetTimeline {
    /// The newest one it finds (`latest`): a standby follows its primary
    /// through promotions.
    Latest,
    /// Its own (`current`): for replaying its own WAL alone, and for data
    /// that went past the fork of a newer timeline whose history it holds,
    /// which PostgreSQL refuses to start on with `latest` ("requested
    /// timeline N is not a child of this server's history").
    Current,
}

impl TargetTimeline {
    /// The setting's value.
    pub fn setting(self) -> &'static str {
        match self {
            TargetTimeline::Latest => "latest",
            TargetTimeline::Current => "current",
        }
    }
}

/// `wal_receiver_status_interval` of a standby (PostgreSQL's default 10 s).
/// A demoted primary restarts as a standby while the VIP is still its own
/// (the VIP stops after the demote), and its WAL receiver connects to
/// itself; once the VIP has moved, only the receiver's next status
/// message, answered by a reset from the new holder, ends that connection.
/// With 10 s the old primary streamed from the new one about 10 s after a
/// switchover, and with `sync_replication=on` the new primary acknowledged
/// commits alone all that time (cluster_sync). Also keeps the primary's
/// view of replay positions, from which it scores, a second old at most.
pub const STANDBY_STATUS_INTERVAL: &str = "1s";

/// The setting a demote or stop persists (ALTER SYSTEM) to stop a primary's
/// writes before its shutdown. Every start removes it from
/// `postgresql.auto.conf` ([`Server::configure_standby`]) and promote
/// resets it: a node promoted later must not be read-only.
pub const WRITES_OFF_SETTING: &str = "default_transaction_read_only";

impl Server {
    /// `postmaster.pid`.
    pub fn pidfile(&self) -> PathBuf {
        self.pgdata.join(PIDFILE)
    }

    /// `standby.signal`.
    pub fn standby_signal(&self) -> PathBuf {
        self.pgdata.join(STANDBY_SIGNAL)
    }

    /// The data directory, opened without following links, its files
    /// expected to belong to system_user (or root).
    pub fn data_dir(&self) -> Result<OwnedDir, PgError> {
        Ok(OwnedDir::open(&self.pgdata, self.uid)?)
    }

    /// Whether a `backup_label` exists: the data directory is a base backup
    /// (`pg_basebackup`) that has not yet finished its first recovery.
    /// PostgreSQL 15 writes no `backup_label` into a running primary's data
    /// directory (exclusive backups are gone), so only a copy has one.
    pub fn has_backup_label(&self) -> bool {
        fs::symlink_metadata(self.pgdata.join("backup_label")).is_ok()
    }

    /// Whether `standby.signal` exists: the server runs, or would start, as a
    /// standby.
    /// The name is looked at, not followed: [`Server::configure_standby`]
    /// refuses a `standby.signal` that is not a plain file.
    pub fn is_standby_configured(&self) -> bool {
        fs::symlink_metadata(self.standby_signal()).is_ok()
    }

    /// Whether the postmaster runs. No child process.
    ///
    /// A `postmaster.pid` that is a link, a FIFO or a stranger's file is no
    /// pidfile PostgreSQL wrote: it counts as a crash's leftover (a running
    /// postmaster shuts itself down when its lock file is replaced), and
    /// what it points to is never read.
    pub fn process_state(&self) -> ProcessState {
        let read = self.data_dir().and_then(|d| Ok(d.read(PIDFILE)?));
        let text = match read {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(None) => return ProcessState::Stopped,
            Err(PgError::Files(e)) if e.is_refusal() => {
                log::warn!("{e}");
                return ProcessState::Crashed(0);
            }
            Err(_) => return ProcessState::Stopped,
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            // Being written by a starting postmaster, or garbage.
            return ProcessState::Crashed(0);
        };
        if pid > 0 && is_postgres(pid, &self.pgdata) {
            ProcessState::Running(pid)
        } else {
            ProcessState::Crashed(pid)
        }
    }

    fn pg_ctl(&self, deadline: &Deadline) -> Spec {
        Spec::new(self.bindir.join("pg_ctl"))
            .user(self.uid, self.gid)
            .current_dir("/")
            .timeout(deadline.remaining())
    }

    /// Starts the server, which must be configured as a standby already:
    /// the agent never starts a primary. `pg_ctl start -W` launches the
    /// postmaster and returns; the agent then reads `postmaster.pid` every
    /// [`START_POLL`] until its status line says `ready` or `standby`, as
    /// `pg_ctl -w` does every 100 ms (`WAITS_PER_SEC` in pg_ctl.c): a
    /// standby is up some tens of milliseconds after its start, and the
    /// demote of a switchover starts one.
    pub fn start(&self, deadline: &Deadline) -> Result<(), PgError> {
        if !self.is_standby_configured() {
            return Err(PgError::parse(
                "data directory state",
                "refusing to start PostgreSQL without standby.signal",
            ));
        }
        let failed = |detail: String| PgError::StartFailed {
            detail,
            log: self.logfile.clone(),
        };
        cmd::run(
            &self
                .pg_ctl(deadline)
                .args(["start", "-W", "-D"])
                .arg(&self.datadir)
                .arg("-l")
                .arg(&self.logfile),
        )
        .map_err(|e| {
            failed(match &e {
                cmd::CommandError::Failed { status, .. } => status.clone(),
                other => other.to_string(),
            })
        })?;
        let launched = Instant::now();
        loop {
            let status = self.postmaster_status();
            match decide_start_wait(status, launched.elapsed()) {
                StartWait::Ready => return Ok(()),
                StartWait::Failed(why) => return Err(failed(why)),
                StartWait::Wait if deadline.expired() => {
                    return Err(failed(format!(
                        "not ready to accept connections before the action's timeout \
                         (postmaster.pid: {status:?})"
                    )))
                }
                StartWait::Wait => {
                    std::thread::sleep(START_POLL.min(deadline.remaining()));
                }
            }
        }
    }

    /// What `postmaster.pid` says of a postmaster, by its first line (the
    /// pid) and its eighth (the status PostgreSQL writes as it starts).
    pub fn postmaster_status(&self) -> PostmasterStatus {
        let text = match self.data_dir().and_then(|d| Ok(d.read(PIDFILE)?)) {
            Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => return PostmasterStatus::Absent,
        };
        match parse_pidfile_status(&text) {
            None => PostmasterStatus::Partial,
            Some((pid, _)) if !(pid > 0 && is_postgres(pid, &self.pgdata)) || is_zombie(pid) => {
                PostmasterStatus::Exited(pid)
            }
            Some((pid, status)) => match status {
                Some("ready") | Some("standby") => PostmasterStatus::Ready(pid),
                _ => PostmasterStatus::Starting(pid),
            },
        }
    }

    /// Stops the server: `fast` first (a clean shutdown checkpoint), then
    /// `immediate` if that does not finish within half of the time left.
    /// Committed data is never lost either way: immediate leaves crash
    /// recovery to the next start, which replays the WAL.
    pub fn stop(&self, deadline: &Deadline) -> Result<(), PgError> {
        let half = deadline.remaining() / 2;
        let immediate = (deadline.remaining() / 4).min(Duration::from_secs(2));
        self.stop_within(half, immediate, deadline)
    }

    /// Stops the server in three bounded steps: fast shutdown (SIGINT) for
    /// at most `fast`, immediate shutdown (SIGQUIT) for at most `immediate`,
    /// then SIGKILL of the postmaster and of every process in its data
    /// directory, for the rest of the deadline.
    ///
    /// The signals are sent directly, as `pg_ctl stop` would, so each wait
    /// is the agent's own and shorter than a second when it needs to be
    /// (`pg_ctl -t` counts whole seconds). SIGKILL is the one signal a
    /// stopped (SIGSTOP) or wedged postmaster cannot ignore; its backends
    /// run in sessions of their own (PostgreSQL makes each child a session
    /// leader), so they are found by their working directory, the data
    /// directory, never by name. Committed data survives every step: a
    /// commit is acknowledged only once its WAL is flushed, and the next
    /// start replays it (crash recovery).
    pub fn stop_within(
        &self,
        fast: Duration,
        immediate: Duration,
        deadline: &Deadline,
    ) -> Result<(), PgError> {
        let pid = match self.process_state() {
            ProcessState::Stopped => return Ok(()),
            ProcessState::Crashed(_) => return self.clean_after_crash(deadline),
            ProcessState::Running(pid) => pid,
        };
        let steps = [
            (Signal::SIGINT, fast, "fast shutdown"),
            (Signal::SIGQUIT, immediate, "immediate shutdown"),
        ];
        for (signal, bound, what) in steps {
            let step = Deadline::after(deadline.cap(bound));
            let _ = kill(Pid::from_raw(pid), signal);
            // A file read and a /proc lookup: often, since a switchover
            // waits for this shutdown.
            if wait_until_every(&step, START_POLL, || !self.still_runs(pid)) {
                return self.after_exit(deadline);
            }
            log::warn!(
                "{what} did not finish within {:.1} s (postmaster {pid})",
                bound.as_secs_f64()
            );
        }
        log::warn!("killing postmaster {pid} and every process in its data directory (SIGKILL)");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        self.clean_after_crash(deadline)
    }

    /// Whether the postmaster `pid` still runs: its `postmaster.pid` names
    /// it and it is alive (a zombie waiting for its parent is not).
    fn still_runs(&self, pid: i32) -> bool {
        self.process_state() == ProcessState::Running(pid) && !is_zombie(pid)
    }

    /// After the postmaster exited: nothing more when it removed its pid
    /// file, the crash's cleanup otherwise.
    fn after_exit(&self, deadline: &Deadline) -> Result<(), PgError> {
        match self.process_state() {
            ProcessState::Stopped => Ok(()),
            ProcessState::Crashed(_) | ProcessState::Running(_) => self.clean_after_crash(deadline),
        }
    }

    /// Whether the postmaster `pid` is stopped by a signal (SIGSTOP, a
    /// debugger): `T` or `t` in `/proc/<pid>/stat`. It then answers no
    /// connection, and handles no signal but SIGKILL.
    pub fn is_frozen(&self, pid: i32) -> bool {
        matches!(proc_state(pid), Some('T' | 't'))
    }

    /// After a postmaster was killed, ends its orphaned backends (found by
    /// their working directory, the data directory: never by name) and
    /// removes the stale `postmaster.pid`, so the next start and a probe see
    /// a stopped server.
    pub fn clean_after_crash(&self, deadline: &Deadline) -> Result<(), PgError> {
        let orphans = processes_in(&self.pgdata);
        for pid in &orphans {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        while !processes_in(&self.pgdata).is_empty() {
            if deadline.expired() {
                return Err(PgError::parse(
                    "shutdown result",
                    "orphaned PostgreSQL processes did not exit",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.data_dir()?.remove(PIDFILE)?;
        Ok(())
    }

    /// Runs `pg_controldata` and parses it.
    pub fn controldata(&self, deadline: &Deadline) -> Result<ControlData, PgError> {
        let out = cmd::run(
            &Spec::new(self.bindir.join("pg_controldata"))
                .arg(&self.pgdata)
                .env("LC_ALL", "C")
                .user(self.uid, self.gid)
                .current_dir("/")
                .timeout(deadline.cap(Duration::from_secs(10))),
        )?;
        parse_controldata(&out.stdout)
    }

    /// The newest timeline history file in `pg_wal` past `timeline`, and
    /// its entries: PostgreSQL's own search at startup
    /// (`findNewestTimeLine`: `timeline + 1`, `+ 2`, ... until a file is
    /// missing), which `recovery_target_timeline=latest` then follows.
    /// `None` when there is none. A walreceiver fetches these files from
    /// every primary it reaches, so a node that was cut off can hold the
    /// history of a timeline it has no WAL of. Read through [`OwnedDir`]:
    /// `pg_wal` belongs to `system_user`.
    pub fn newest_history(
        &self,
        timeline: u32,
    ) -> Result<Option<(u32, Vec<super::history::Entry>)>, PgError> {
        let wal = OwnedDir::open(&self.pgdata.join("pg_wal"), self.uid)?;
        let mut newest = None;
        let mut next = timeline.saturating_add(1);
        while let Some(bytes) = wal.read(&format!("{next:08X}.history"))? {
            newest = Some((next, bytes));
            next = next.saturating_add(1);
        }
        let Some((tl, bytes)) = newest else {
            return Ok(None);
        };
        let entries = std::str::from_utf8(&bytes)
            .ok()
            .and_then(super::history::parse)
            .ok_or_else(|| {
                PgError::parse(
                    "timeline history file",
                    &format!("pg_wal/{tl:08X}.history is not of the expected form"),
                )
            })?;
        Ok(Some((tl, entries)))
    }

    /// Writes `standby.signal` and the managed settings of
    /// `postgresql.auto.conf` (the server must be stopped), following
    /// `target`. A link, a hard link or a FIFO planted under either name is
    /// refused and left alone.
    pub fn configure_standby(
        &self,
        primary_conninfo: &str,
        target: TargetTimeline,
    ) -> Result<(), PgError> {
        let dir = self.data_dir()?;
        let old = match dir.read(AUTO_CONF)? {
            Some(bytes) => String::from_utf8(bytes).map_err(|e| {
                PgError::io(
                    dir.path_of(AUTO_CONF),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            })?,
            None => String::new(),
        };
        let new = set_auto_conf(
            &unset_auto_conf(&old, &[WRITES_OFF_SETTING]),
            &[
                ("primary_conninfo", primary_conninfo),
                ("recovery_target_timeline", target.setting()),
                ("wal_retrieve_retry_interval", STANDBY_RETRY_INTERVAL),
                ("wal_receiver_status_interval", STANDBY_STATUS_INTERVAL),
            ],
        );
        if new != old {
            self.write_owned(&dir, AUTO_CONF, new.as_bytes())?;
        }
        if !dir.check(STANDBY_SIGNAL)? {
            self.write_owned(&dir, STANDBY_SIGNAL, b"")?;
        }
        Ok(())
    }

    /// Whether `postgresql.auto.conf` sets [`WRITES_OFF_SETTING`]: a
    /// demote or stop stopped this server's writes and no start has run
    /// since. A file that cannot be read counts as not setting it (the
    /// start that follows refuses it anyway).
    pub fn writes_off_persisted(&self) -> bool {
        let Ok(dir) = self.data_dir() else {
            return false;
        };
        match dir.read(AUTO_CONF) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                unset_auto_conf(&text, &[WRITES_OFF_SETTING]) != text
            }
            _ => false,
        }
    }

    /// Writes a file of the data directory atomically, owned by system_user,
    /// mode 0600, never through a link (see [`OwnedDir::write`]).
    fn write_owned(&self, dir: &OwnedDir, name: &str, content: &[u8]) -> Result<(), PgError> {
        Ok(dir.write(name, content, self.uid, self.gid, FILE_MODE)?)
    }

    /// Runs pg_rewind against the primary described by `source_conninfo`
    /// (its password in `password`, passed through the environment).
    /// With `dry_run`, only reports whether a rewind is needed.
    pub fn rewind(
        &self,
        source_conninfo: &str,
        password: Option<&str>,
        dry_run: bool,
        deadline: &Deadline,
    ) -> Result<RewindReport, PgError> {
        let mut spec = Spec::new(self.bindir.join("pg_rewind"))
            .arg(format!("--target-pgdata={}", self.pgdata.display()))
            .arg(format!("--source-server={source_conninfo}"))
            .user(self.uid, self.gid)
            .current_dir("/")
            .env("LC_ALL", "C")
            .timeout(deadline.remaining());
        if self.datadir != self.pgdata {
            spec = spec.arg(format!(
                "--config-file={}",
                self.datadir.join("postgresql.conf").display()
            ));
        }
        if dry_run {
            spec = spec.arg("--dry-run");
        }
        if let Some(p) = password {
            spec = spec.env("PGPASSWORD", p);
        }
        // pg_rewind copies the primary's configuration files over this
        // node's (port, sockets, pg_hba may differ per node): keep ours.
        // One planted as a link or FIFO stops the rewind before it starts.
        let kept = if dry_run {
            None
        } else {
            let dir = self.data_dir()?;
            let files = self.read_config_files(&dir)?;
            Some((dir, files))
        };
        let result = cmd::run(&spec);
        if let Some((dir, files)) = &kept {
            for (name, content) in files {
                self.write_owned(dir, name, content)?;
            }
        }
        let out = result?;
        // pg_rewind reports on stderr.
        Ok(parse_rewind(&format!("{}\n{}", out.stderr, out.stdout)))
    }

    /// The node's own configuration files inside the data directory (the
    /// missing ones left out).
    fn read_config_files(&self, dir: &OwnedDir) -> Result<Vec<(&'static str, Vec<u8>)>, PgError> {
        let mut kept = Vec::new();
        for name in CONFIG_FILES {
            if let Some(content) = dir.read(name)? {
                kept.push((name, content));
            }
        }
        Ok(kept)
    }

    /// Finishes the crash recovery of a data directory left by a crashed
    /// primary, in single-user mode: no connection is accepted and it exits
    /// at once, leaving a cleanly shut down directory that pg_rewind can
    /// compare. This is what pg_rewind itself does without --dry-run.
    pub fn crash_recover(&self, deadline: &Deadline) -> Result<(), PgError> {
        cmd::run(
            &Spec::new(self.bindir.join("postgres"))
                .arg("--single")
                .arg("-F")
                .arg("-c")
                .arg("exit_on_error=false")
                .arg("-D")
                .arg(&self.datadir)
                .arg("template1")
                .user(self.uid, self.gid)
                .current_dir("/")
                .timeout(deadline.remaining()),
        )?;
        Ok(())
    }
}

/// What pg_rewind concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewindReport {
    /// Whether the target's history has WAL the source does not have.
    pub needed: bool,
    /// "servers diverged at WAL location X on timeline N", when printed.
    pub divergence: Option<String>,
    /// pg_rewind's messages, on one line.
    pub summary: String,
}

/// Parses pg_rewind's messages (pure, for tests).
pub fn parse_rewind(text: &str) -> RewindReport {
    let divergence = text.lines().find_map(|l| {
        l.split_once("servers diverged at ")
            .map(|(_, r)| r.trim().to_string())
    });
    let no_rewind = text.contains("no rewind required");
    let summary = text
        .lines()
        .map(|l| l.trim().trim_start_matches("pg_rewind: "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    RewindReport {
        needed: !no_rewind,
        divergence,
        summary,
    }
}

pg_text_enum! {
    /// The control file's "Database cluster state": what the server was
    /// doing when it last wrote it.
    ///
    /// Never enough alone to say what a stopped data directory is: a base
    /// backup says `in production` too (the state of the primary when the
    /// copy began), like a primary that crashed. [`DataOrigin::of`] decides,
    /// and looks at `backup_label` first.
    ControlState {
        /// The postmaster was starting.
        StartingUp = "starting up",
        /// A primary stopped cleanly.
        ShutDown = "shut down",
        /// A standby stopped cleanly (a restartpoint was written).
        ShutDownInRecovery = "shut down in recovery",
        /// A shutdown had begun.
        ShuttingDown = "shutting down",
        /// Crash recovery was running.
        InCrashRecovery = "in crash recovery",
        /// A standby (archive or streaming recovery) was running.
        InArchiveRecovery = "in archive recovery",
        /// A primary was running, or this is a base backup of one.
        InProduction = "in production",
    }
}

/// The parts of `pg_controldata` the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// "Database cluster state".
    pub state: ControlState,
    /// Latest checkpoint's TimeLineID.
    pub timeline: u32,
    /// Latest checkpoint location.
    pub checkpoint: super::Lsn,
    /// "Min recovery ending loc's timeline" (0 when none is set).
    pub min_recovery_timeline: u32,
    /// "Minimum recovery ending location" (0/0 when none is set).
    pub min_recovery: super::Lsn,
    /// Database system identifier.
    pub system_identifier: String,
}

impl ControlData {
    /// Where this stopped data directory's WAL ends, for the history check.
    pub fn local_end(&self) -> super::history::LocalEnd {
        super::history::LocalEnd {
            timeline: self.newest_timeline(),
            checkpoint: self.checkpoint,
            min_recovery: self.min_recovery,
        }
    }

    /// The newest timeline this data directory has WAL of, as far as the
    /// control file says.
    pub fn newest_timeline(&self) -> u32 {
        self.timeline.max(self.min_recovery_timeline)
    }
}

/// What a stopped data directory was last, from what it says before it
/// starts: its control file, `backup_label` and `standby.signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrigin {
    /// A base backup not yet started. Its control file says `in production`
    /// (the state of the primary when the copy began), but it is no crashed
    /// primary: its recovery starts from the `backup_label`, in standby mode,
    /// and single-user crash recovery would refuse to run with
    /// `standby.signal` (`pg_basebackup -R`).
    BaseBackup,
    /// A primary that crashed or lost power (`in production`).
    CrashedPrimary,
    /// A primary that was stopped cleanly, or data with no `standby.signal`.
    Primary,
    /// A standby.
    Standby,
}

impl DataOrigin {
    /// Classifies a stopped data directory (pure).
    ///
    /// `backup_label` is looked at before the control state, whatever that
    /// says: a base backup's `in production` is the copied primary's, and
    /// taking it for a crashed primary once sent a fresh base backup into
    /// single-user crash recovery.
    pub fn of(control: &ControlData, backup_label: bool, standby_signal: bool) -> DataOrigin {
        if backup_label {
            return DataOrigin::BaseBackup;
        }
        match (&control.state, standby_signal) {
            (ControlState::InProduction, _) => DataOrigin::CrashedPrimary,
            // A primary that lost power while it shut down, started up or
            // ran crash recovery is no cleaner than one that crashed:
            // pg_rewind refuses it ("target server must be shut down
            // cleanly"; seen in CI, cluster_split: the cut-off primary was
            // fenced during its shutdown checkpoint and could never rejoin).
            (
                ControlState::ShuttingDown
                | ControlState::StartingUp
                | ControlState::InCrashRecovery,
                false,
            ) => DataOrigin::CrashedPrimary,
            (ControlState::ShutDown, _) | (_, false) => DataOrigin::Primary,
            (_, true) => DataOrigin::Standby,
        }
    }
}

/// Parses `pg_controldata` output in the C locale (pure, for tests).
pub fn parse_controldata(text: &str) -> Result<ControlData, PgError> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(key)
                .map(|v| v.trim_start_matches(':').trim().to_string())
        })
    };
    let state = get("Database cluster state")
        .ok_or_else(|| PgError::parse("pg_controldata output", text))?;
    let timeline = get("Latest checkpoint's TimeLineID")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PgError::parse("pg_controldata output", text))?;
    let checkpoint = get("Latest checkpoint location")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PgError::parse("pg_controldata output", text))?;
    Ok(ControlData {
        state: state.as_str().into(),
        timeline,
        checkpoint,
        min_recovery_timeline: get("Min recovery ending loc's timeline")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        min_recovery: get("Minimum recovery ending location")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default(),
        system_identifier: get("Database system identifier").unwrap_or_default(),
    })
}

/// Removes the `name = ...` lines of `names` from a postgresql.auto.conf
/// text, as ALTER SYSTEM RESET does.
pub fn unset_auto_conf(old: &str, names: &[&str]) -> String {
    let mut out = String::new();
    for line in old.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if names.contains(&key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Replaces or appends `name = 'value'` lines in a postgresql.auto.conf text.
pub fn set_auto_conf(old: &str, settings: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for line in old.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if settings.iter().any(|(n, _)| *n == key) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n");
    }
    for (n, v) in settings {
        out.push_str(&format!("{n} = {}\n", guc_string(v)));
    }
    out
}

/// Quotes a string for a configuration file, as ALTER SYSTEM does: in
/// single quotes, with `'` doubled and `\` doubled (PostgreSQL's
/// configuration parser reads `\` as an escape; a single one would be
/// dropped, and `\'` would end the string early).
pub fn guc_string(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// Quotes a conninfo value: single quotes, with `\` and `'` escaped.
pub fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether `pid` is a PostgreSQL process of this data directory (its working
/// directory is the data directory), so a recycled pid is not mistaken for
/// the postmaster.
fn is_postgres(pid: i32, pgdata: &Path) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    match (cwd, fs::canonicalize(pgdata)) {
        (Ok(c), Ok(d)) => c == d,
        // Without /proc access, trust the signal check.
        (Err(_), _) => true,
        (_, Err(_)) => false,
    }
}

/// The state letter of `/proc/<pid>/stat` (after the command's closing
/// parenthesis, which may itself contain spaces or parentheses).
fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether `pid` has exited and waits for its parent to reap it.
fn is_zombie(pid: i32) -> bool {
    proc_state(pid) == Some('Z')
}

/// Pids of processes whose working directory is `dir`.
fn processes_in(dir: &Path) -> Vec<i32> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd"))
                .map(|c| c == dir)
                .unwrap_or(false)
        })
        .collect()
}

/// How often [`Server::start`] reads `postmaster.pid`: a file read.
pub const START_POLL: Duration = Duration::from_millis(5);

/// How long a launched postmaster may take to write `postmaster.pid`
/// before [`Server::start`] takes it for a postmaster that exited at once
/// (a configuration error: it exits before it writes its lock file, and
/// `pg_ctl -W` has returned already). It is written within milliseconds.
pub const PIDFILE_GRACE: Duration = Duration::from_secs(5);

/// What `postmaster.pid` says ([`Server::postmaster_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostmasterStatus {
    /// No file.
    Absent,
    /// A file without a pid yet (being written).
    Partial,
    /// A live postmaster that is not ready yet (`starting`, or `stopping`).
    Starting(i32),
    /// A live postmaster whose status line says `ready` or `standby`.
    Ready(i32),
    /// The file names a process that is not a live postmaster.
    Exited(i32),
}

/// One look of [`Server::start`]'s wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartWait {
    Ready,
    Wait,
    Failed(String),
}

/// What [`Server::start`] does after one look at `postmaster.pid`,
/// `since` the launch (pure).
pub fn decide_start_wait(status: PostmasterStatus, since: Duration) -> StartWait {
    match status {
        PostmasterStatus::Ready(_) => StartWait::Ready,
        PostmasterStatus::Starting(_) => StartWait::Wait,
        PostmasterStatus::Exited(pid) => {
            StartWait::Failed(format!("postmaster {pid} exited while starting"))
        }
        PostmasterStatus::Absent | PostmasterStatus::Partial if since < PIDFILE_GRACE => {
            StartWait::Wait
        }
        PostmasterStatus::Absent | PostmasterStatus::Partial => StartWait::Failed(format!(
            "no postmaster.pid {} s after the launch: the postmaster exited at once",
            PIDFILE_GRACE.as_secs()
        )),
    }
}

/// The pid (line 1) and the status (line 8, `LOCK_FILE_LINE_PM_STATUS`,
/// padded with spaces) of a `postmaster.pid`'s text; `None` without a pid.
pub fn parse_pidfile_status(text: &str) -> Option<(i32, Option<&str>)> {
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse::<i32>().ok()?;
    Some((pid, lines.nth(6).map(str::trim)))
}

/// Waits until `f` holds, polling every 50 ms, or the deadline passes.
pub fn wait_until(deadline: &Deadline, f: impl FnMut() -> bool) -> bool {
    wait_until_every(deadline, Duration::from_millis(50), f)
}

/// [`wait_until`], looking every `interval`.
pub fn wait_until_every(
    deadline: &Deadline,
    interval: Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    loop {
        if f() {
            return true;
        }
        if deadline.expired() {
            return false;
        }
        std::thread::sleep(interval.min(deadline.remaining()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PostgreSQL 15 standby's `postmaster.pid` once it accepts
    /// read-only connections.
    const PIDFILE_STANDBY: &str = "4242\n/var/lib/postgresql/15/main\n1796320000\n5432\n\
                                   /var/run/postgresql\n*\n  5432001    983041\nstandby \n";

    #[test]
    fn the_pidfile_gives_the_pid_and_the_padded_status_line() {
        assert_eq!(
            parse_pidfile_status(PIDFILE_STANDBY),
            Some((4242, Some("standby")))
        );
        let starting = PIDFILE_STANDBY.replace("standby ", "starting");
        assert_eq!(
            parse_pidfile_status(&starting),
            Some((4242, Some("starting")))
        );
        // Being written: the pid alone, or nothing yet.
        assert_eq!(parse_pidfile_status("4242\n"), Some((4242, None)));
        assert_eq!(parse_pidfile_status(""), None);
        assert_eq!(parse_pidfile_status("42x\n"), None);
    }

    #[test]
    fn start_waits_for_ready_or_standby_and_fails_on_an_exited_or_missing_postmaster() {
        use PostmasterStatus::*;
        let soon = Duration::from_millis(20);
        let late = PIDFILE_GRACE + Duration::from_millis(1);
        assert_eq!(decide_start_wait(Ready(7), soon), StartWait::Ready);
        assert_eq!(decide_start_wait(Starting(7), late), StartWait::Wait);
        assert_eq!(decide_start_wait(Absent, soon), StartWait::Wait);
        assert_eq!(decide_start_wait(Partial, soon), StartWait::Wait);
        for status in [Exited(7), Absent, Partial] {
            let at = if status == Exited(7) { soon } else { late };
            assert!(
                matches!(decide_start_wait(status, at), StartWait::Failed(_)),
                "{status:?}"
            );
        }
    }

    const CONTROLDATA: &str = "pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7310000000000000000
Database cluster state:               shut down in recovery
pg_control last modified:             Wed 25 Nov 2026 21:00:00 UTC
Latest checkpoint location:           0/3000060
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Minimum recovery ending location:     0/3000110
Min recovery ending loc's timeline:   2
";

    #[test]
    fn controldata_gives_state_timeline_and_checkpoint() {
        let c = parse_controldata(CONTROLDATA).unwrap();
        assert_eq!(c.state, ControlState::ShutDownInRecovery);
        assert_eq!(c.timeline, 1);
        assert_eq!(c.checkpoint.to_string(), "0/3000060");
        assert_eq!(c.system_identifier, "7310000000000000000");
        assert_eq!(c.min_recovery_timeline, 2);
        assert_eq!(c.newest_timeline(), 2);
    }

    #[test]
    fn truncated_controldata_is_an_error() {
        assert!(parse_controldata("Database cluster state: in production\n").is_err());
        assert!(parse_controldata("").is_err());
    }

    #[test]
    fn auto_conf_settings_are_replaced_not_duplicated() {
        let old =
            "# Do not edit this file manually!\nprimary_conninfo = 'host=a'\nwork_mem = '8MB'\n";
        let new = set_auto_conf(old, &[("primary_conninfo", "host=b password='x'")]);
        assert_eq!(new.matches("primary_conninfo").count(), 1);
        assert!(new.contains("work_mem = '8MB'"));
        assert!(new.contains("primary_conninfo = 'host=b password=''x'''"));
    }

    /// A demote's read-only setting is gone from the file a start writes,
    /// and only that line.
    #[test]
    fn a_start_removes_the_demotes_read_only_setting() {
        let old = "# Do not edit this file manually!\nwork_mem = '8MB'\n\
                   default_transaction_read_only = 'on'\nprimary_conninfo = 'host=a'\n";
        let new = set_auto_conf(
            &unset_auto_conf(old, &[WRITES_OFF_SETTING]),
            &[("primary_conninfo", "host=b")],
        );
        assert!(!new.contains(WRITES_OFF_SETTING), "{new}");
        assert!(new.contains("work_mem = '8MB'"), "{new}");
        assert!(new.contains("primary_conninfo = 'host=b'"), "{new}");
        let kept = "work_mem = '8MB'\n";
        assert_eq!(unset_auto_conf(kept, &[WRITES_OFF_SETTING]), kept);
    }

    /// PostgreSQL's configuration parser reads `''` as `'` and `\\` as `\`;
    /// a password with both must reach libpq unchanged.
    #[test]
    fn auto_conf_values_keep_quotes_and_backslashes() {
        let conninfo = conninfo_value(r"a'b\c");
        assert_eq!(conninfo, r"'a\'b\\c'");
        let new = set_auto_conf("", &[("primary_conninfo", &format!("password={conninfo}"))]);
        assert!(
            new.contains(r"primary_conninfo = 'password=''a\\''b\\\\c'''"),
            "{new}"
        );
        assert_eq!(guc_string("plain"), "'plain'");
    }

    fn control(state: &ControlState) -> ControlData {
        ControlData {
            state: state.clone(),
            timeline: 1,
            checkpoint: "0/3000060".parse().unwrap(),
            min_recovery_timeline: 0,
            min_recovery: Default::default(),
            system_identifier: "1".into(),
        }
    }

    #[test]
    fn control_states_parse_from_and_print_as_postgresqls_texts() {
        let texts = [
            "starting up",
            "shut down",
            "shut down in recovery",
            "shutting down",
            "in crash recovery",
            "in archive recovery",
            "in production",
        ];
        assert_eq!(ControlState::ALL.len(), texts.len());
        for (v, t) in ControlState::ALL.iter().zip(texts) {
            assert_eq!(v.to_string(), t);
            assert_eq!(&ControlState::from(t), v);
            let text = CONTROLDATA.replace("shut down in recovery", t);
            assert_eq!(&parse_controldata(&text).unwrap().state, v, "{t}");
        }
        let text = CONTROLDATA.replace("shut down in recovery", "unrecognized status code");
        let c = parse_controldata(&text).unwrap();
        assert_eq!(
            c.state,
            ControlState::Unknown("unrecognized status code".into())
        );
        assert_eq!(c.state.to_string(), "unrecognized status code");
    }

    /// The decision table of what a stopped data directory was, over every
    /// control state (and an unknown one) × backup_label × standby.signal.
    #[test]
    fn a_base_backup_is_not_a_crashed_primary() {
        use ControlState::*;
        use DataOrigin::*;
        let unknown = Unknown("unrecognized status code".into());
        // state -> (origin without standby.signal, origin with it), when
        // there is no backup_label.
        let table = [
            (StartingUp, CrashedPrimary, Standby),
            (ShutDown, Primary, Primary),
            (ShutDownInRecovery, Primary, Standby),
            (ShuttingDown, CrashedPrimary, Standby),
            (InCrashRecovery, CrashedPrimary, Standby),
            (InArchiveRecovery, Primary, Standby),
            (InProduction, CrashedPrimary, CrashedPrimary),
            (unknown, Primary, Standby),
        ];
        assert_eq!(table.len(), ControlState::ALL.len() + 1);
        for (state, without_signal, with_signal) in table {
            let c = control(&state);
            for (signal, want) in [(false, without_signal), (true, with_signal)] {
                assert_eq!(
                    DataOrigin::of(&c, false, signal),
                    want,
                    "{state}, no backup_label, standby.signal {signal}"
                );
                // A backup_label decides, whatever the control file says.
                assert_eq!(
                    DataOrigin::of(&c, true, signal),
                    BaseBackup,
                    "{state}, backup_label, standby.signal {signal}"
                );
            }
        }
    }

    #[test]
    fn rewind_reports_are_read() {
        let r = parse_rewind("pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\npg_rewind: rewinding from last common checkpoint at 0/3000060 on timeline 1\npg_rewind: Done!\n");
        assert!(r.needed);
        assert_eq!(
            r.divergence.as_deref(),
            Some("WAL location 0/3000148 on timeline 1")
        );
        let r = parse_rewind("pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\npg_rewind: no rewind required\n");
        assert!(!r.needed);
        let r = parse_rewind("pg_rewind: source and target cluster are on the same timeline\npg_rewind: no rewind required\n");
        assert!(!r.needed && r.divergence.is_none());
    }

    #[test]
    fn conninfo_values_escape_quotes_and_backslashes() {
        assert_eq!(conninfo_value("pa ss'w\\d"), "'pa ss\\'w\\\\d'");
    }
}
