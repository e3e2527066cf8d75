//! `rapidproctl rebuild NODE`: re-clone a standby from the current primary,
//! the equivalent of `patronictl reinit`.
//!
//! A standby whose data diverged from the primary's (the agent refused its
//! start: "rebuild it", fail-count INFINITY) or whose data directory is
//! broken cannot come back by itself. Done by hand, the repair takes a
//! dozen commands and one wrong one (standby mode for the whole node, an
//! `rm -rf` of the only copy, a `pg_basebackup` as root) costs more than the
//! fault. This command does it like a careful administrator, on NODE itself
//! (it moves local files), step by step:
//!
//! 1. `crm_resource --ban --resource <clone> --node NODE`: only that node's
//!    instance stops (never standby mode: the node's other resources and
//!    the cluster stay as they are); waits until crm_mon shows it stopped
//!    and no postmaster runs for `pgdata`;
//! 2. renames `pgdata` to `<pgdata>.rebuild-<UTC YYYYmmddTHHMMSSZ>` (kept:
//!    the only copy of whatever the node had) and creates an empty `pgdata`
//!    owned by `system_user`, mode 0700, through file descriptors that never
//!    follow a symbolic link (the directories belong to `system_user`);
//! 3. `pg_basebackup -X stream -c fast` from `primary_host:primary_port` as
//!    `repl_user`, run as `system_user` with the password, if any, only in
//!    the child's `PGPASSWORD` (else libpq reads `system_user`'s `.pgpass`);
//!    then puts back the node's own `postgresql.conf`, `pg_hba.conf` and
//!    `pg_ident.conf` when they live in `pgdata` (`datadir` = `pgdata`), as
//!    the agent's `pg_rewind` path does, and writes an empty
//!    `standby.signal` (the agent's start writes `primary_conninfo`);
//! 4. `crm_resource --clear` and `--cleanup` for the clone on NODE;
//! 5. waits until the instance is Unpromoted there, PostgreSQL streams
//!    (`pg_stat_wal_receiver`) and Redis' link to its master is up; with
//!    `--discard`, only then deletes the old directory.
//!
//! [`judge`] decides from what was read (pure, every refusal tested);
//! `--dry-run` prints the plan with the real paths and commands. A failure
//! after the ban says what state is left and the commands that recover.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::unistd::{Gid, Uid, User};
use serde::Serialize;

use crate::cluster::{admin, Cluster, ClusterStatus, NodeName, Role};
use crate::cmd::{self, Spec};
use crate::config::Config;
use crate::deadline::Deadline;
use crate::owned_dir::{self, at, OwnedDir};
use crate::postgres::db::{Db, Host, Reach, Target};
use crate::postgres::queries::WalReceiverStatus;
use crate::postgres::server::{ProcessState, Server};
use crate::postgres::tls::PgTls;
use crate::postgres::PgError;
use crate::redis::{self, Endpoint, LinkStatus};

use super::status::Sources;
use super::{human_bytes, Error, Outcome};

/// How long each wait (the instance stopping, then streaming again) may
/// take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `pg_basebackup` may take by default: a copy of the whole
/// database, which on a real server takes far longer than any wait.
pub const DEFAULT_BACKUP_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// How often the cluster and the servers are polled while waiting.
const POLL: Duration = Duration::from_millis(500);
/// How long rebuild waits for a transition or an operation in flight to
/// end before it refuses (at most half its timeout).
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// libpq's connect timeout for `pg_basebackup` (`PGCONNECT_TIMEOUT`).
const BACKUP_CONNECT_TIMEOUT_SECS: &str = "10";
/// The node's own configuration files, kept when they live in the data
/// directory. Not `postgresql.auto.conf`: it comes from the primary, and
/// the agent's start rewrites its `primary_conninfo`.
pub const NODE_CONFIG_FILES: [&str; 3] = ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"];
/// Free space wanted beyond the primary's databases: the WAL streamed
/// during the copy and a margin, as a fraction of the databases' size.
const SPACE_MARGIN: f64 = 0.10;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Delete the old data directory once the new copy streams.
    pub discard: bool,
    /// Only observe, judge and print the plan.
    pub dry_run: bool,
    /// Bound of each wait.
    pub timeout: Duration,
    /// Bound of `pg_basebackup`.
    pub backup_timeout: Duration,
}

/// The data directory as found on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// A real directory.
    Directory {
        /// Entries of `pg_tblspc`: tablespaces, which `pg_basebackup`
        /// would write to their original paths, in use on this node.
        tablespaces: Vec<String>,
        /// The node's own configuration files inside it (only when
        /// `datadir` = `pgdata`), from [`NODE_CONFIG_FILES`].
        config_files: Vec<String>,
    },
    /// Nothing at `pgdata` (a broken node): nothing to move aside.
    Missing,
    /// A symbolic link: renaming it would move the link, not the data.
    Symlink(PathBuf),
    /// Something else than a directory.
    NotADirectory,
}

/// What answered at `primary_host:primary_port` for `repl_user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrimaryAnswer {
    /// A writable PostgreSQL: a base backup can be taken from it.
    Writable,
    /// A standby.
    Standby,
    /// Nothing accepted the connection, or it was refused (authentication,
    /// `pg_hba.conf`...).
    Unreachable(String),
}

/// Free space against the primary's size, when both could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Sum of `pg_database_size` on the primary.
    pub needed: u64,
    /// Free bytes for `system_user`'s files where `pgdata` lives.
    pub free: u64,
}

/// The parameters of the stack that the plan names: no password here, so
/// no plan, text or JSON can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Params {
    /// `pgdata`.
    pub pgdata: PathBuf,
    /// `datadir`.
    pub datadir: PathBuf,
    /// `bindir`.
    pub bindir: PathBuf,
    /// `system_user`.
    pub system_user: String,
    /// `primary_host`.
    pub primary_host: String,
    /// `primary_port`.
    pub primary_port: u16,
    /// `repl_user`.
    pub repl_user: String,
    /// Whether `repl_password` is set (else `.pgpass`).
    pub has_password: bool,
    /// `sslmode` and `sslrootcert`.
    pub pg_tls: PgTls,
}

impl Params {
    /// The subset of `cfg` the plan names.
    pub fn from_config(cfg: &Config) -> Params {
        Params {
            pgdata: cfg.pgdata.clone(),
            datadir: cfg.datadir.clone(),
            bindir: cfg.bindir.clone(),
            system_user: cfg.system_user.clone(),
            primary_host: cfg.primary_host.clone(),
            primary_port: cfg.primary_port,
            repl_user: cfg.repl_user.clone(),
            has_password: cfg.repl_password.is_some(),
            pg_tls: cfg.pg_tls.clone(),
        }
    }
}

/// What was read before deciding.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    /// crm_mon.
    pub cluster: &'a ClusterStatus,
    /// The promotable clone of the stack.
    pub clone: Option<&'a str>,
    /// The DC's controller state, if read.
    pub controller_state: Option<&'a str>,
    /// This node's name (`crm_node -n`).
    pub local_node: &'a str,
    /// The stack's parameters.
    pub params: &'a Params,
    /// `pgdata` on this node.
    pub data_dir: &'a DataDir,
    /// What answers at primary_host.
    pub primary: &'a PrimaryAnswer,
    /// Free space against the primary's size, if known.
    pub space: Option<Space>,
    /// The time stamp of the old directory's name (`YYYYmmddTHHMMSSZ`).
    pub stamp: &'a str,
}

/// Why a rebuild is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `ocf:rapidpro:stack` clone is configured or shown by crm_mon.
    NoStack,
    /// The node is not a cluster node.
    UnknownNode {
        /// The node named.
        node: String,
        /// The nodes there are.
        known: Vec<String>,
    },
    /// The node named is the primary: its data is the one to keep.
    TargetIsPrimary(String),
    /// Run on another node: the data directory to replace is NODE's.
    NotLocal {
        /// The node named.
        node: String,
        /// This node.
        local: String,
    },
    /// No node is Promoted: no primary to copy from.
    NoPrimary,
    /// More than one node is Promoted.
    SeveralPrimaries(Vec<String>),
    /// The node is not an online, active member.
    NodeNotAvailable {
        /// The node.
        node: String,
        /// Why (in standby, in maintenance...).
        state: String,
        /// What to do first.
        fix: String,
    },
    /// Operations are in flight.
    InFlight(Vec<String>),
    /// The DC is not idle.
    TransitionInProgress(String),
    /// `pgdata` is a symbolic link.
    DataDirSymlink {
        /// `pgdata`.
        pgdata: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// `pgdata` is not a directory.
    DataDirNotADirectory(PathBuf),
    /// The data directory has tablespaces.
    Tablespaces(Vec<String>),
    /// No writable PostgreSQL answers at primary_host.
    PrimaryUnreachable {
        /// `host:port`.
        at: String,
        /// Why.
        reason: String,
    },
    /// A standby answers at primary_host.
    PrimaryNotWritable(String),
    /// Not enough room for the new copy beside the old one.
    NoSpace {
        /// Where.
        pgdata: PathBuf,
        /// Bytes wanted.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
}

impl Refusal {
    /// A stable identifier for scripts (`--json` `refusal`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoStack => "no_stack",
            Refusal::UnknownNode { .. } => "unknown_node",
            Refusal::TargetIsPrimary(_) => "target_is_primary",
            Refusal::NotLocal { .. } => "not_local",
            Refusal::NoPrimary => "no_primary",
            Refusal::SeveralPrimaries(_) => "several_primaries",
            Refusal::NodeNotAvailable { .. } => "node_not_available",
            Refusal::InFlight(_) => "in_flight",
            Refusal::TransitionInProgress(_) => "transition_in_progress",
            Refusal::DataDirSymlink { .. } => "data_dir_symlink",
            Refusal::DataDirNotADirectory(_) => "data_dir_not_a_directory",
            Refusal::Tablespaces(_) => "tablespaces",
            Refusal::PrimaryUnreachable { .. } => "primary_unreachable",
            Refusal::PrimaryNotWritable(_) => "primary_not_writable",
            Refusal::NoSpace { .. } => "no_space",
        }
    }

    /// Whether waiting a little may make it go away.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Refusal::InFlight(_) | Refusal::TransitionInProgress(_)
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoStack => write!(f, "no promotable ocf:rapidpro:stack clone is running"),
            Refusal::UnknownNode { node, known } => write!(
                f,
                "{node} is not a cluster node (nodes: {})",
                known.join(", ")
            ),
            Refusal::TargetIsPrimary(n) => write!(
                f,
                "{n} is the primary: its data is the one the standbys copy; move the primary \
                 away first (`rapidproctl switchover`) if {n} must be rebuilt"
            ),
            Refusal::NotLocal { node, local } => write!(
                f,
                "this is {local}: rebuild replaces the local data directory, run it on {node}"
            ),
            Refusal::NoPrimary => {
                write!(f, "no node is Promoted: there is no primary to copy from")
            }
            Refusal::SeveralPrimaries(n) => write!(
                f,
                "several nodes are Promoted ({}): fix that first",
                n.join(", ")
            ),
            Refusal::NodeNotAvailable { node, state, fix } => {
                write!(f, "{node} is {state}: {fix}")
            }
            Refusal::InFlight(a) => write!(
                f,
                "operations are in flight: {}; wait and retry",
                a.join("; ")
            ),
            Refusal::TransitionInProgress(s) => write!(
                f,
                "the cluster is in a transition (DC state {s}); wait and retry"
            ),
            Refusal::DataDirSymlink { pgdata, target } => write!(
                f,
                "pgdata {} is a symbolic link to {}: moving it aside would move the link, not \
                 the data; set the stack's pgdata to the real directory first",
                pgdata.display(),
                target.display()
            ),
            Refusal::DataDirNotADirectory(p) => write!(
                f,
                "pgdata {} is not a directory: move it away by hand first",
                p.display()
            ),
            Refusal::Tablespaces(t) => write!(
                f,
                "the data directory has tablespaces (pg_tblspc: {}): pg_basebackup would write \
                 them to their paths on this node, still in use; rebuild this node by hand \
                 (pg_basebackup --tablespace-mapping)",
                t.join(", ")
            ),
            Refusal::PrimaryUnreachable { at, reason } => write!(
                f,
                "no primary answers at {at} (primary_host, primary_port) for repl_user: \
                 {reason}; pg_basebackup would fail the same way"
            ),
            Refusal::PrimaryNotWritable(at) => write!(
                f,
                "the PostgreSQL at {at} (primary_host) is a standby, not the primary"
            ),
            Refusal::NoSpace {
                pgdata,
                needed,
                free,
            } => write!(
                f,
                "not enough free space beside {}: the primary's databases take {} ({} with the \
                 WAL margin) and {} is free, while the old data directory is kept until the new \
                 copy streams; free some space first",
                pgdata.display(),
                human_bytes(*needed),
                human_bytes(with_margin(*needed)),
                human_bytes(*free)
            ),
        }
    }
}

fn with_margin(n: u64) -> u64 {
    n + (n as f64 * SPACE_MARGIN) as u64
}

/// A rebuild that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The promotable clone.
    pub clone: String,
    /// The node rebuilt (this one).
    pub node: String,
    /// The Promoted node, copied from through primary_host.
    pub primary: String,
    /// Where the old data directory goes; `None` when there is none.
    pub old_data_dir: Option<PathBuf>,
    /// The node's own configuration files put back after the copy.
    pub config_files_kept: Vec<String>,
    /// Whether the old directory is deleted once the new copy streams.
    pub discard: bool,
    /// The parameters used.
    pub params: Params,
}

/// One step of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Ban the node's instance and wait until it stopped.
    Ban,
    /// Move the old data directory aside, create the new one.
    MoveAside,
    /// `pg_basebackup`.
    BaseBackup,
    /// Put back the node's configuration files, write `standby.signal`.
    Configure,
    /// Clear the ban and the failures.
    GiveBack,
    /// Wait until it is Unpromoted and streams.
    WaitStreaming,
    /// Delete the old data directory.
    Discard,
}

/// A step as planned: what it does, with the real paths and commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Which step.
    pub step: StepKind,
    /// What it does.
    pub action: String,
}

impl Plan {
    /// `pg_basebackup`'s arguments: TCP to primary_host as repl_user, WAL
    /// streamed during the copy, an immediate checkpoint on the primary, and
    /// never a password prompt. `sslmode` and `sslrootcert` go in the
    /// connection string of `-d` (no password there: PGPASSWORD carries it).
    pub fn basebackup_args(&self) -> Vec<String> {
        let p = &self.params;
        vec![
            "-d".into(),
            p.pg_tls.conninfo().trim_start().to_string(),
            "-h".into(),
            p.primary_host.clone(),
            "-p".into(),
            p.primary_port.to_string(),
            "-U".into(),
            p.repl_user.clone(),
            "-D".into(),
            p.pgdata.display().to_string(),
            "-X".into(),
            "stream".into(),
            "-c".into(),
            "fast".into(),
            "--no-password".into(),
        ]
    }

    /// The whole `pg_basebackup` command line, for people.
    pub fn basebackup_command(&self) -> String {
        let mut s = self
            .params
            .bindir
            .join("pg_basebackup")
            .display()
            .to_string();
        for a in self.basebackup_args() {
            s.push(' ');
            s.push_str(&a);
        }
        s
    }

    /// The steps, in order, as they will run.
    pub fn steps(&self) -> Vec<Step> {
        let p = &self.params;
        let pgdata = p.pgdata.display();
        let mut steps = vec![Step {
            step: StepKind::Ban,
            action: format!(
                "crm_resource --ban --resource {} --node {}, then wait until the instance on {} \
                 is stopped and no postmaster runs for {pgdata}",
                self.clone, self.node, self.node
            ),
        }];
        steps.push(Step {
            step: StepKind::MoveAside,
            action: match &self.old_data_dir {
                Some(old) => format!(
                    "move {pgdata} to {} ({}), create an empty {pgdata} owned by {}, mode 0700",
                    old.display(),
                    if self.discard {
                        "deleted once the new copy streams"
                    } else {
                        "kept"
                    },
                    p.system_user
                ),
                None => format!(
                    "{pgdata} does not exist: create it empty, owned by {}, mode 0700",
                    p.system_user
                ),
            },
        });
        steps.push(Step {
            step: StepKind::BaseBackup,
            action: format!(
                "as {}: {} (password: {})",
                p.system_user,
                self.basebackup_command(),
                if p.has_password {
                    "repl_password, in PGPASSWORD"
                } else {
                    "none given: libpq reads the user's ~/.pgpass"
                }
            ),
        });
        let mut configure = String::new();
        if !self.config_files_kept.is_empty() {
            if let Some(old) = &self.old_data_dir {
                configure = format!(
                    "put back this node's {} from {}, then ",
                    self.config_files_kept.join(", "),
                    old.display()
                );
            }
        }
        configure.push_str(&format!(
            "write an empty {}/standby.signal owned by {}",
            pgdata, p.system_user
        ));
        steps.push(Step {
            step: StepKind::Configure,
            action: configure,
        });
        steps.push(Step {
            step: StepKind::GiveBack,
            action: format!(
                "crm_resource --clear --resource {c} --node {n}; crm_resource --cleanup \
                 --resource {c} --node {n}",
                c = self.clone,
                n = self.node
            ),
        });
        steps.push(Step {
            step: StepKind::WaitStreaming,
            action: format!(
                "wait until the instance on {} is Unpromoted, PostgreSQL streams from {}:{} and \
                 Redis' link to its master is up",
                self.node, p.primary_host, p.primary_port
            ),
        });
        if self.discard {
            if let Some(old) = &self.old_data_dir {
                steps.push(Step {
                    step: StepKind::Discard,
                    action: format!("delete {}", old.display()),
                });
            }
        }
        steps
    }
}

/// `<pgdata>.rebuild-<stamp>`, beside `pgdata`.
pub fn old_data_dir_name(pgdata: &Path, stamp: &str) -> PathBuf {
    let mut name = pgdata
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".rebuild-{stamp}"));
    pgdata.with_file_name(name)
}

/// `YYYYmmddTHHMMSSZ`, in UTC.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::alert::smtp::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Decides whether `node` may be rebuilt here, from what was read. Failed
/// actions are no reason to refuse: a refused start is why one rebuilds.
pub fn judge(s: &Situation<'_>, node: &str, discard: bool) -> Result<Plan, Refusal> {
    let st = s.cluster;
    let clone_id = s.clone.ok_or(Refusal::NoStack)?;
    let clone = st.find_clone(clone_id).ok_or(Refusal::NoStack)?;
    let Some(member) = st.node(node) else {
        return Err(Refusal::UnknownNode {
            node: node.to_string(),
            known: st.nodes.iter().map(|n| n.name.to_string()).collect(),
        });
    };
    let promoted = clone.promoted_nodes();
    if promoted.iter().any(|p| p.as_str() == node) {
        return Err(Refusal::TargetIsPrimary(node.to_string()));
    }
    if node != s.local_node {
        return Err(Refusal::NotLocal {
            node: node.to_string(),
            local: s.local_node.to_string(),
        });
    }
    let primary = match promoted.as_slice() {
        [] => return Err(Refusal::NoPrimary),
        [one] => one.to_string(),
        many => {
            return Err(Refusal::SeveralPrimaries(
                many.iter().map(|n| n.to_string()).collect(),
            ))
        }
    };
    let unavailable = if !member.online {
        Some((
            "offline",
            "start the cluster on it first (pcs cluster start)",
        ))
    } else if member.standby || member.standby_onfail {
        Some((
            "in standby mode",
            "bring it back first (pcs node unstandby), then rebuild",
        ))
    } else if member.maintenance || st.maintenance_mode {
        Some((
            "in maintenance",
            "Pacemaker would not stop its instance; end the maintenance first",
        ))
    } else if member.unclean {
        Some(("unclean", "wait for it to be fenced and rejoin"))
    } else {
        None
    };
    if let Some((state, fix)) = unavailable {
        return Err(Refusal::NodeNotAvailable {
            node: node.to_string(),
            state: state.to_string(),
            fix: fix.to_string(),
        });
    }
    let pending = super::in_flight(st);
    if !pending.is_empty() {
        return Err(Refusal::InFlight(pending));
    }
    if let Some(state) = s.controller_state {
        if state != admin::CONTROLLER_IDLE {
            return Err(Refusal::TransitionInProgress(state.to_string()));
        }
    }
    let pgdata = &s.params.pgdata;
    let (old_data_dir, config_files_kept) = match s.data_dir {
        DataDir::Symlink(target) => {
            return Err(Refusal::DataDirSymlink {
                pgdata: pgdata.clone(),
                target: target.clone(),
            })
        }
        DataDir::NotADirectory => return Err(Refusal::DataDirNotADirectory(pgdata.clone())),
        DataDir::Directory { tablespaces, .. } if !tablespaces.is_empty() => {
            return Err(Refusal::Tablespaces(tablespaces.clone()))
        }
        DataDir::Directory { config_files, .. } => (
            Some(old_data_dir_name(pgdata, s.stamp)),
            config_files.clone(),
        ),
        DataDir::Missing => (None, Vec::new()),
    };
    let at = format!("{}:{}", s.params.primary_host, s.params.primary_port);
    match s.primary {
        PrimaryAnswer::Writable => {}
        PrimaryAnswer::Standby => return Err(Refusal::PrimaryNotWritable(at)),
        PrimaryAnswer::Unreachable(reason) => {
            return Err(Refusal::PrimaryUnreachable {
                at,
                reason: reason.clone(),
            })
        }
    }
    if let Some(space) = s.space {
        if space.free < with_margin(space.needed) {
            return Err(Refusal::NoSpace {
                pgdata: pgdata.clone(),
                needed: space.needed,
                free: space.free,
            });
        }
    }
    Ok(Plan {
        clone: clone_id.to_string(),
        node: node.to_string(),
        primary,
        old_data_dir,
        config_files_kept,
        discard,
        params: s.params.clone(),
    })
}

// ---------------------------------------------------------------------------
// Observing.

/// Reads what `pgdata` is, without following it if it is a link.
pub fn observe_data_dir(pgdata: &Path, datadir: &Path) -> DataDir {
    let meta = match fs::symlink_metadata(pgdata) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DataDir::Missing,
        Err(_) => return DataDir::NotADirectory,
    };
    if meta.file_type().is_symlink() {
        return DataDir::Symlink(fs::read_link(pgdata).unwrap_or_default());
    }
    if !meta.is_dir() {
        return DataDir::NotADirectory;
    }
    let mut tablespaces: Vec<String> = fs::read_dir(pgdata.join("pg_tblspc"))
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    tablespaces.sort();
    let config_files = if same_dir(pgdata, datadir) {
        NODE_CONFIG_FILES
            .iter()
            .filter(|f| {
                fs::symlink_metadata(pgdata.join(f))
                    .map(|m| m.file_type().is_file())
                    .unwrap_or(false)
            })
            .map(|f| f.to_string())
            .collect()
    } else {
        Vec::new()
    };
    DataDir::Directory {
        tablespaces,
        config_files,
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (fs::canonicalize(a), fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Asks primary_host whether it is a writable PostgreSQL, as repl_user
/// over TCP (the way `pg_basebackup` will connect), and how big its
/// databases are (`None` when `pg_database_size` is not allowed).
fn observe_primary(cfg: &Config, deadline: &Deadline) -> (PrimaryAnswer, Option<u64>) {
    let password = cfg.repl_password_for(&cfg.primary_host, cfg.primary_port, "postgres");
    let target = Target {
        host: Host::Tcp(&cfg.primary_host),
        port: cfg.primary_port,
        user: &cfg.repl_user,
        password: password.as_deref(),
        dbname: "postgres",
        peer_uid: None,
        tls: &cfg.pg_tls,
    };
    let reach = Db::reach(
        &target,
        super::CONNECT_TIMEOUT,
        super::QUERY_TIMEOUT,
        deadline,
    );
    let db = match reach {
        Ok(Reach::Connected(db)) => db,
        Ok(Reach::NoAnswer(r)) => return (PrimaryAnswer::Unreachable(r), None),
        Ok(Reach::Refused(e)) => return (PrimaryAnswer::Unreachable(e.to_string()), None),
        Ok(Reach::Tls(e)) => return (PrimaryAnswer::Unreachable(e.to_string()), None),
        Err(e) => return (PrimaryAnswer::Unreachable(e.to_string()), None),
    };
    match db.in_recovery() {
        Ok(false) => {}
        Ok(true) => return (PrimaryAnswer::Standby, None),
        Err(e) => return (PrimaryAnswer::Unreachable(e.to_string()), None),
    }
    let size = db
        .row(
            "the size of the databases",
            "SELECT sum(pg_database_size(oid))::bigint::text FROM pg_database \
             WHERE datallowconn",
        )
        .ok()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<u64>().ok());
    (PrimaryAnswer::Writable, size)
}

/// Free bytes (for an unprivileged user) on the filesystem of `pgdata`'s
/// parent.
fn free_space(pgdata: &Path) -> Option<u64> {
    let parent = pgdata.parent()?;
    let v = nix::sys::statvfs::statvfs(parent).ok()?;
    Some(v.blocks_available() as u64 * v.fragment_size() as u64)
}

/// Everything read before deciding.
struct Observed {
    src: Sources,
    cfg: Config,
    clone: String,
    local: String,
    data_dir: DataDir,
    primary: PrimaryAnswer,
    space: Option<Space>,
}

fn observe(cluster: &Cluster, deadline: &Deadline) -> Result<Observed, Error> {
    let src = Sources::read(cluster, deadline)?;
    let cfg = src.config()?;
    let clone = src.cib.require_stack()?.promotable_id().to_string();
    let local = cluster.local_node_name(None, deadline).to_string();
    let data_dir = observe_data_dir(&cfg.pgdata, &cfg.datadir);
    let (primary, size) = observe_primary(&cfg, deadline);
    let space = match (size, free_space(&cfg.pgdata)) {
        (Some(needed), Some(free)) => Some(Space { needed, free }),
        _ => None,
    };
    Ok(Observed {
        src,
        cfg,
        clone,
        local,
        data_dir,
        primary,
        space,
    })
}

// ---------------------------------------------------------------------------
// Acting on the file system without following links.

/// Opens the directory `path` with no symbolic link followed, except those
/// owned by root: see [`owned_dir::open_dir_nofollow`]. The directories
/// below `/var/lib/postgresql` belong to `system_user`, who could otherwise
/// plant a link that turns root's rename or mkdir elsewhere.
fn open_dir_safely(path: &Path) -> std::io::Result<File> {
    owned_dir::open_dir_nofollow(path)
}

/// The open flags std does not name.
mod libc_flags {
    /// `O_DIRECTORY`.
    pub const O_DIRECTORY: i32 = nix::fcntl::OFlag::O_DIRECTORY.bits();
    /// `O_NOFOLLOW`.
    pub const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();
}

/// `pgdata`'s parent, opened safely, and `pgdata`'s own name.
struct Place {
    parent: File,
    name: String,
    old_name: Option<String>,
}

impl Place {
    fn open(plan: &Plan) -> Result<Place, Error> {
        let pgdata = &plan.params.pgdata;
        let parent_path = pgdata
            .parent()
            .ok_or_else(|| Error::Usage(format!("pgdata {} has no parent", pgdata.display())))?;
        let parent = open_dir_safely(parent_path).map_err(|e| Error::io(parent_path, e))?;
        let name = file_name(pgdata)?;
        let old_name = match &plan.old_data_dir {
            Some(p) => Some(file_name(p)?),
            None => None,
        };
        Ok(Place {
            parent,
            name,
            old_name,
        })
    }

    /// Renames pgdata to the old name, never replacing anything.
    fn move_aside(&self, plan: &Plan) -> Result<(), Error> {
        let Some(old) = &self.old_name else {
            return Ok(());
        };
        let meta = fs::symlink_metadata(at(&self.parent, &self.name))
            .map_err(|e| Error::io(&plan.params.pgdata, e))?;
        if !meta.is_dir() {
            return Err(Error::Failed(format!(
                "{} is no longer a directory",
                plan.params.pgdata.display()
            )));
        }
        let fd = self.parent.as_raw_fd();
        nix::fcntl::renameat2(
            Some(fd),
            self.name.as_str(),
            Some(fd),
            old.as_str(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| Error::io(&plan.params.pgdata, e.into()))
    }

    /// Creates the empty data directory, owned by system_user, mode 0700.
    fn create_new(&self, plan: &Plan, uid: Uid, gid: Gid) -> Result<(), Error> {
        let pgdata = &plan.params.pgdata;
        fs::DirBuilder::new()
            .mode(0o700)
            .create(at(&self.parent, &self.name))
            .map_err(|e| Error::io(pgdata, e))?;
        let dir = self.open_new().map_err(|e| Error::io(pgdata, e))?;
        std::os::unix::fs::fchown(&dir, Some(uid.as_raw()), Some(gid.as_raw()))
            .map_err(|e| Error::io(pgdata, e))?;
        dir.set_permissions(fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(pgdata, e))
    }

    fn open_new(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::O_DIRECTORY | libc_flags::O_NOFOLLOW)
            .open(at(&self.parent, &self.name))
    }

    fn open_old(&self) -> std::io::Result<Option<File>> {
        let Some(old) = &self.old_name else {
            return Ok(None);
        };
        OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::O_DIRECTORY | libc_flags::O_NOFOLLOW)
            .open(at(&self.parent, old))
            .map(Some)
    }

    /// Puts back the node's configuration files from the old directory and
    /// writes `standby.signal`: files created exclusively, never through a
    /// link, owned by system_user.
    fn configure(&self, plan: &Plan, uid: Uid, gid: Gid) -> Result<(), Error> {
        let pgdata = &plan.params.pgdata;
        let files = |e: owned_dir::Error| Error::from(PgError::from(e));
        let new = self.open_new().map_err(|e| Error::io(pgdata, e))?;
        let new = OwnedDir::from_open(new, pgdata.clone(), uid);
        if let Some(old) = self.open_old().map_err(|e| Error::io(pgdata, e))? {
            let old_dir = plan.old_data_dir.clone().unwrap_or_else(|| pgdata.clone());
            let old = OwnedDir::from_open(old, old_dir, uid);
            for f in &plan.config_files_kept {
                let (content, mode) = old.read_with_mode(f).map_err(files)?.ok_or_else(|| {
                    Error::io(
                        old_path(plan, f),
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    )
                })?;
                new.write(f, &content, uid, gid, mode).map_err(files)?;
            }
        }
        if !new.check("standby.signal").map_err(files)? {
            new.write("standby.signal", b"", uid, gid, 0o600)
                .map_err(files)?;
        }
        Ok(())
    }

    /// Deletes the old directory (std's `remove_dir_all` never follows a
    /// link inside it).
    fn discard(&self, plan: &Plan) -> Result<(), Error> {
        let (Some(old), Some(path)) = (&self.old_name, &plan.old_data_dir) else {
            return Ok(());
        };
        fs::remove_dir_all(at(&self.parent, old)).map_err(|e| Error::io(path, e))
    }
}

fn old_path(plan: &Plan, f: &str) -> PathBuf {
    plan.old_data_dir
        .as_deref()
        .unwrap_or(&plan.params.pgdata)
        .join(f)
}

fn file_name(p: &Path) -> Result<String, Error> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("{} has no usable file name", p.display())))
}

// ---------------------------------------------------------------------------
// Acting on the cluster and the servers.

/// What has been done, for the report and for the recovery advice.
#[derive(Debug, Default)]
struct Progress {
    banned: bool,
    moved: bool,
    created: bool,
    copied: bool,
    configured: bool,
    given_back: bool,
}

impl Progress {
    /// What state a failure leaves, and the commands that recover from it.
    fn advice(&self, plan: &Plan) -> String {
        let pgdata = plan.params.pgdata.display();
        let clear = format!(
            "`crm_resource --clear --resource {c} --node {n}` (or `pcs resource clear {c} {n}`)",
            c = plan.clone,
            n = plan.node
        );
        let mut s = Vec::new();
        if self.given_back {
            s.push(format!(
                "the instance on {} was given back to the cluster (no ban left); see \
                 `crm_mon -1` and `rapidproctl status`",
                plan.node
            ));
        } else if self.banned {
            s.push(format!(
                "the ban is still there: the instance stays stopped on {}; once the data \
                 directory is right, run {clear}, then `crm_resource --cleanup --resource {} \
                 --node {}`",
                plan.node, plan.clone, plan.node
            ));
        }
        match (&plan.old_data_dir, self.moved) {
            (Some(old), true) => {
                let old = old.display();
                if self.configured {
                    s.push(format!(
                        "the new copy is complete in {pgdata}; the old data is kept at {old}"
                    ));
                } else if self.created {
                    s.push(format!(
                        "the old data is at {old}; {pgdata} holds an incomplete copy: run \
                         `rapidproctl rebuild {}` again, or put the old data back with `rm -rf \
                         {pgdata} && mv {old} {pgdata}`",
                        plan.node
                    ));
                } else {
                    s.push(format!(
                        "the old data is at {old} and {pgdata} does not exist: put it back with \
                         `mv {old} {pgdata}`"
                    ));
                }
            }
            _ if self.created && !self.configured => s.push(format!(
                "{pgdata} holds an incomplete copy: run `rapidproctl rebuild {}` again",
                plan.node
            )),
            _ => {}
        }
        if s.is_empty() {
            "nothing was changed".to_string()
        } else {
            s.join("; ")
        }
    }
}

/// One step as carried out, for the report.
#[derive(Debug, Clone, Serialize)]
struct Done {
    step: StepKind,
    action: String,
    seconds: f64,
}

/// What a run did, for `--json`.
#[derive(Debug, Clone, Serialize)]
struct Report {
    node: String,
    primary: String,
    clone: String,
    dry_run: bool,
    pgdata: PathBuf,
    old_data_dir: Option<PathBuf>,
    old_data_dir_kept: bool,
    config_files_kept: Vec<String>,
    plan: Vec<Step>,
    steps: Vec<Done>,
    role: Option<String>,
    streaming: bool,
    redis_link: Option<String>,
    seconds_total: Option<f64>,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// The instance's role on `node`, from crm_mon.
fn role_on(cluster: &Cluster, clone: &str, node: &str, deadline: &Deadline) -> Option<Role> {
    let st = cluster.status(deadline).ok()?;
    let c = st.find_clone(clone)?;
    Some(
        c.instance_on(node)
            .map(|i| i.role.clone())
            .unwrap_or(Role::Stopped),
    )
}

/// Waits until crm_mon shows the instance on the node stopped and no
/// postmaster runs for pgdata.
fn wait_stopped(
    cluster: &Cluster,
    plan: &Plan,
    server: &Server,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Deadline::after(timeout);
    loop {
        let role = role_on(cluster, &plan.clone, &plan.node, &deadline);
        let running = matches!(server.process_state(), ProcessState::Running(_));
        if role == Some(Role::Stopped) && !running {
            return Ok(());
        }
        if deadline.expired() {
            return Err(Error::Timeout(format!(
                "the instance on {} is not stopped after {} s ({}{})",
                plan.node,
                timeout.as_secs(),
                match &role {
                    Some(r) => format!("crm_mon: {r}"),
                    None => "crm_mon unreadable".to_string(),
                },
                if running {
                    format!(
                        ", a postmaster still runs for {}",
                        plan.params.pgdata.display()
                    )
                } else {
                    String::new()
                }
            )));
        }
        std::thread::sleep(POLL.min(deadline.remaining()));
    }
}

/// What the final wait saw last.
#[derive(Debug, Clone, Default)]
struct Back {
    role: Option<Role>,
    receiver: Option<WalReceiverStatus>,
    redis_link: Option<LinkStatus>,
}

impl Back {
    fn ok(&self) -> bool {
        self.role == Some(Role::Unpromoted)
            && self.receiver == Some(WalReceiverStatus::Streaming)
            && self.redis_link == Some(LinkStatus::Up)
    }

    fn describe(&self) -> String {
        format!(
            "role {}, WAL receiver {}, Redis link {}",
            self.role
                .as_ref()
                .map_or("unknown".to_string(), Role::to_string),
            self.receiver
                .as_ref()
                .map_or("not running", WalReceiverStatus::as_str),
            match self.redis_link {
                Some(LinkStatus::Up) => "up",
                Some(_) => "down",
                None => "unknown",
            }
        )
    }
}

/// Waits until the instance is Unpromoted, the local PostgreSQL streams
/// (over its socket) and the local Redis' link is up.
fn wait_streaming(
    cluster: &Cluster,
    plan: &Plan,
    cfg: &Config,
    timeout: Duration,
) -> Result<Back, Error> {
    let deadline = Deadline::after(timeout);
    let mut back = Back::default();
    loop {
        back.role = role_on(cluster, &plan.clone, &plan.node, &deadline);
        back.receiver = super::postgres::connect_local(cfg, &deadline)
            .ok()
            .and_then(|db| db.status().ok())
            .and_then(|s| s.receiver_status);
        back.redis_link = redis::connect(
            &Endpoint::Unix(cfg.redis_socket.clone()),
            cfg.redis_password.as_deref(),
            super::CONNECT_TIMEOUT,
        )
        .and_then(|mut c| {
            c.set_timeout(super::QUERY_TIMEOUT)?;
            c.info_replication()
        })
        .ok()
        .and_then(|i| i.master_link_status);
        if back.ok() {
            return Ok(back);
        }
        if deadline.expired() {
            return Err(Error::Timeout(format!(
                "{} not streaming after {} s: {}",
                plan.node,
                timeout.as_secs(),
                back.describe()
            )));
        }
        std::thread::sleep(Duration::from_secs(1).min(deadline.remaining()));
    }
}

/// Runs `pg_basebackup` as system_user: a cleared libpq environment, HOME
/// set to the user's home (where libpq looks for `.pgpass`), the password
/// in `PGPASSWORD` only.
fn base_backup(
    plan: &Plan,
    cfg: &Config,
    uid: Uid,
    gid: Gid,
    timeout: Duration,
) -> Result<(), Error> {
    let home = User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut spec = Spec::new(plan.params.bindir.join("pg_basebackup"))
        .args(plan.basebackup_args())
        .user(uid, gid)
        .current_dir("/")
        .env("HOME", &home)
        .env("LC_ALL", "C")
        .timeout(timeout);
    // The environment is cleared (cmd.rs): none of the libpq variables
    // rapidproctl inherited (PGHOST, PGSSLMODE, PGPASSFILE, a PGPASSWORD of
    // another role...) reaches pg_basebackup to change where and how it
    // connects; it gets these two alone.
    spec = spec.env("PGCONNECT_TIMEOUT", BACKUP_CONNECT_TIMEOUT_SECS);
    if let Some(p) = &cfg.repl_password {
        spec = spec.env("PGPASSWORD", p);
    }
    cmd::run(&spec).map(drop).map_err(|e| {
        Error::Failed(format!(
            "{e} (from {}:{} as {}; the server log of the primary says more)",
            plan.params.primary_host, plan.params.primary_port, plan.params.repl_user
        ))
    })
}

/// `rapidproctl rebuild NODE`.
pub fn rebuild(cluster: &Cluster, node: &str, opts: &Options) -> Result<Outcome, Error> {
    let started = Instant::now();
    let stamp = utc_stamp(SystemTime::now());
    let settle = Deadline::after(SETTLE_WAIT.min(opts.timeout / 2));
    let mut waited = false;
    let (obs, judged) = loop {
        // Each reading gets its own bound: the settling wait may outlast one.
        let obs = observe(cluster, &Deadline::after(super::DEFAULT_DEADLINE))?;
        let params = Params::from_config(&obs.cfg);
        let situation = Situation {
            cluster: &obs.src.cluster,
            clone: Some(&obs.clone),
            controller_state: obs.src.controller_state.as_deref(),
            local_node: &obs.local,
            params: &params,
            data_dir: &obs.data_dir,
            primary: &obs.primary,
            space: obs.space,
            stamp: &stamp,
        };
        let judged = judge(&situation, node, opts.discard);
        let transient = judged.as_ref().err().is_some_and(Refusal::is_transient);
        if !transient || settle.expired() {
            break (obs, judged);
        }
        waited = true;
        std::thread::sleep(POLL.min(settle.remaining()));
    };
    let plan = match judged {
        Ok(p) => p,
        Err(r) => {
            let json = serde_json::json!({
                "refused": true,
                "refusal": r.code(),
                "reason": r.to_string(),
                "node": node,
            });
            return Ok(Outcome::with(
                json,
                format!("rebuild refused: {r}\n"),
                false,
            ));
        }
    };
    let cfg = obs.cfg;
    let mut text = String::new();
    if waited {
        text.push_str(&format!(
            "waited {:.1} s for the cluster to finish a transition\n",
            started.elapsed().as_secs_f64()
        ));
    }
    text.push_str(&format!(
        "rebuild {} from the primary {} ({}:{}){}:\n",
        plan.node,
        plan.primary,
        plan.params.primary_host,
        plan.params.primary_port,
        if opts.dry_run { ", dry run" } else { "" }
    ));
    let steps = plan.steps();
    for (i, s) in steps.iter().enumerate() {
        text.push_str(&format!("  {}. {}\n", i + 1, s.action));
    }
    let mut report = Report {
        node: plan.node.clone(),
        primary: plan.primary.clone(),
        clone: plan.clone.clone(),
        dry_run: opts.dry_run,
        pgdata: plan.params.pgdata.clone(),
        old_data_dir: plan.old_data_dir.clone(),
        old_data_dir_kept: plan.old_data_dir.is_some(),
        config_files_kept: plan.config_files_kept.clone(),
        plan: steps.clone(),
        steps: Vec::new(),
        role: None,
        streaming: false,
        redis_link: None,
        seconds_total: None,
    };
    if opts.dry_run {
        text.push_str("dry run: nothing changed\n");
        let json = serde_json::to_value(&report).expect("the report serializes");
        return Ok(Outcome::ok(json, text));
    }

    let server = cfg.pg_server()?;
    let node_name = NodeName::new(&plan.node)?;
    let mut progress = Progress::default();
    let result = act(
        cluster,
        &plan,
        &cfg,
        &server,
        &node_name,
        (server.uid, server.gid),
        opts,
        &steps,
        &mut progress,
        &mut report,
        &mut text,
    );
    match result {
        Ok(back) => {
            report.role = back.role.as_ref().map(Role::to_string);
            report.streaming = true;
            report.redis_link = Some("up".into());
            report.old_data_dir_kept = plan.old_data_dir.is_some() && !plan.discard;
            report.seconds_total = Some(secs(started.elapsed()));
            text.push_str(&format!(
                "{} rebuilt in {:.1} s: Unpromoted, streaming from {}, Redis link up{}\n",
                plan.node,
                started.elapsed().as_secs_f64(),
                plan.primary,
                match (&plan.old_data_dir, plan.discard) {
                    (Some(old), false) => format!("; the old data is kept at {}", old.display()),
                    (Some(_), true) => "; the old data was deleted".to_string(),
                    (None, _) => String::new(),
                }
            ));
            let json = serde_json::to_value(&report).expect("the report serializes");
            Ok(Outcome::ok(json, text))
        }
        Err(e) => {
            let done: Vec<&str> = report.steps.iter().map(|d| step_name(d.step)).collect();
            Err(Error::Failed(format!(
                "rebuild of {} failed: {e}. Done: {}. State left: {}",
                plan.node,
                if done.is_empty() {
                    "nothing".to_string()
                } else {
                    done.join("; ")
                },
                progress.advice(&plan)
            )))
        }
    }
}

/// The steps after the checks; `progress` says how far it got.
#[allow(clippy::too_many_arguments)]
fn act(
    cluster: &Cluster,
    plan: &Plan,
    cfg: &Config,
    server: &Server,
    node: &NodeName,
    (uid, gid): (Uid, Gid),
    opts: &Options,
    steps: &[Step],
    progress: &mut Progress,
    report: &mut Report,
    text: &mut String,
) -> Result<Back, Error> {
    let record = |kind: StepKind, t: Instant, report: &mut Report, text: &mut String| {
        let action = steps
            .iter()
            .find(|s| s.step == kind)
            .map(|s| s.action.clone())
            .unwrap_or_default();
        let seconds = secs(t.elapsed());
        text.push_str(&format!("done: {} ({seconds:.1} s)\n", step_name(kind)));
        report.steps.push(Done {
            step: kind,
            action,
            seconds,
        });
    };
    // Live progress on stderr (stdout gets the report, or the JSON, at the
    // end): a base backup of a real database takes a while.
    let begin = |kind: StepKind| {
        if let Some(s) = steps.iter().find(|s| s.step == kind) {
            eprintln!("rapidproctl: rebuild: {}", s.action);
        }
    };
    let call = Deadline::after(Duration::from_secs(30));

    begin(StepKind::Ban);
    let t = Instant::now();
    admin::ban_node(&plan.clone, node, &call)?;
    progress.banned = true;
    wait_stopped(cluster, plan, server, opts.timeout)?;
    record(StepKind::Ban, t, report, text);

    begin(StepKind::MoveAside);
    let t = Instant::now();
    let place = Place::open(plan)?;
    place.move_aside(plan)?;
    progress.moved = plan.old_data_dir.is_some();
    place.create_new(plan, uid, gid)?;
    progress.created = true;
    record(StepKind::MoveAside, t, report, text);

    begin(StepKind::BaseBackup);
    let t = Instant::now();
    base_backup(plan, cfg, uid, gid, opts.backup_timeout)?;
    progress.copied = true;
    record(StepKind::BaseBackup, t, report, text);

    begin(StepKind::Configure);
    let t = Instant::now();
    place.configure(plan, uid, gid)?;
    progress.configured = true;
    record(StepKind::Configure, t, report, text);

    begin(StepKind::GiveBack);
    let t = Instant::now();
    let call = Deadline::after(Duration::from_secs(60));
    admin::clear_node(&plan.clone, node, &call)?;
    progress.given_back = true;
    admin::cleanup_node(&plan.clone, node, &call)?;
    record(StepKind::GiveBack, t, report, text);

    begin(StepKind::WaitStreaming);
    let t = Instant::now();
    let back = wait_streaming(cluster, plan, cfg, opts.timeout)?;
    record(StepKind::WaitStreaming, t, report, text);

    if plan.discard && plan.old_data_dir.is_some() {
        begin(StepKind::Discard);
        let t = Instant::now();
        place.discard(plan)?;
        record(StepKind::Discard, t, report, text);
    }
    Ok(back)
}

fn step_name(k: StepKind) -> &'static str {
    match k {
        StepKind::Ban => "instance banned from the node and stopped",
        StepKind::MoveAside => "old data directory moved aside, new one created",
        StepKind::BaseBackup => "pg_basebackup",
        StepKind::Configure => "configuration files and standby.signal",
        StepKind::GiveBack => "ban cleared, failures cleaned up",
        StepKind::WaitStreaming => "Unpromoted and streaming",
        StepKind::Discard => "old data directory deleted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::parse_crm_mon;
    use crate::ocf::env::OcfEnv;

    const STEADY: &str = include_str!("../cluster/fixtures/crm_mon-live-steady.xml");
    const FAILED: &str = include_str!("../cluster/fixtures/crm_mon-live-failed-monitor.xml");
    const PROMOTING: &str = include_str!("../cluster/fixtures/crm_mon-promoting.xml");
    const STAMP: &str = "20261126T000020Z";
    const PASSWORD: &str = "s3cret-'pw\\";

    fn config(password: Option<&str>) -> Config {
        let mut vars = vec![
            (
                "OCF_RESKEY_primary_host".to_string(),
                "10.0.0.10".to_string(),
            ),
            (
                "OCF_RESKEY_pgdata".to_string(),
                "/var/lib/postgresql/15/main".to_string(),
            ),
            (
                "OCF_RESKEY_datadir".to_string(),
                "/var/lib/postgresql/15/main".to_string(),
            ),
        ];
        if let Some(p) = password {
            vars.push(("OCF_RESKEY_repl_password".to_string(), p.to_string()));
        }
        Config::from_env(&OcfEnv::from_vars(vars)).unwrap()
    }

    fn params() -> Params {
        Params::from_config(&config(Some(PASSWORD)))
    }

    fn data_dir() -> DataDir {
        DataDir::Directory {
            tablespaces: vec![],
            config_files: vec!["postgresql.conf".into(), "pg_hba.conf".into()],
        }
    }

    /// The recorded steady pair: node2 promoted, node1 unpromoted; asked on
    /// node1.
    fn situation<'a>(
        st: &'a ClusterStatus,
        params: &'a Params,
        data_dir: &'a DataDir,
        primary: &'a PrimaryAnswer,
    ) -> Situation<'a> {
        Situation {
            cluster: st,
            clone: Some("stack-clone"),
            controller_state: Some("S_IDLE"),
            local_node: "node1",
            params,
            data_dir,
            primary,
            space: Some(Space {
                needed: 100 << 20,
                free: 10 << 30,
            }),
            stamp: STAMP,
        }
    }

    fn steady() -> ClusterStatus {
        parse_crm_mon(STEADY).unwrap()
    }

    #[test]
    fn pg_basebackup_gets_sslmode_and_sslrootcert_in_its_connection_string() {
        let (st, mut p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        p.pg_tls = PgTls {
            mode: crate::postgres::tls::SslMode::VerifyFull,
            rootcert: Some("/etc/rapidpro/ca.crt".into()),
        };
        let plan = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap();
        let args = plan.basebackup_args();
        assert_eq!(
            args[..2],
            [
                "-d",
                "sslmode=verify-full sslrootcert='/etc/rapidpro/ca.crt'"
            ]
        );
        assert!(!args.iter().any(|a| a.contains(PASSWORD)), "{args:?}");
    }

    #[test]
    fn a_standby_rebuilt_on_itself_gets_a_plan_with_the_real_paths() {
        let (st, p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        let plan = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap();
        assert_eq!(plan.node, "node1");
        assert_eq!(plan.primary, "node2");
        assert_eq!(plan.clone, "stack-clone");
        assert_eq!(
            plan.old_data_dir.as_deref(),
            Some(Path::new(
                "/var/lib/postgresql/15/main.rebuild-20261126T000020Z"
            ))
        );
        assert_eq!(plan.config_files_kept, ["postgresql.conf", "pg_hba.conf"]);
        assert_eq!(
            plan.basebackup_command(),
            "/usr/lib/postgresql/15/bin/pg_basebackup -d sslmode=prefer -h 10.0.0.10 -p 5432 \
             -U replicator -D /var/lib/postgresql/15/main -X stream -c fast --no-password"
        );
        let kinds: Vec<StepKind> = plan.steps().iter().map(|s| s.step).collect();
        assert_eq!(
            kinds,
            [
                StepKind::Ban,
                StepKind::MoveAside,
                StepKind::BaseBackup,
                StepKind::Configure,
                StepKind::GiveBack,
                StepKind::WaitStreaming
            ]
        );
        let steps = plan.steps();
        assert_eq!(
            steps[0].action,
            "crm_resource --ban --resource stack-clone --node node1, then wait until the \
             instance on node1 is stopped and no postmaster runs for /var/lib/postgresql/15/main"
        );
        assert!(
            steps[1]
                .action
                .contains("main.rebuild-20261126T000020Z (kept)"),
            "{}",
            steps[1].action
        );
        assert!(
            steps[3]
                .action
                .starts_with("put back this node's postgresql.conf, pg_hba.conf from"),
            "{}",
            steps[3].action
        );
        // --discard adds the last step, after the wait.
        let plan = judge(&situation(&st, &p, &d, &w), "node1", true).unwrap();
        let last = plan.steps().pop().unwrap();
        assert_eq!(last.step, StepKind::Discard);
        assert_eq!(
            last.action,
            "delete /var/lib/postgresql/15/main.rebuild-20261126T000020Z"
        );
    }

    #[test]
    fn the_plan_never_shows_the_password() {
        let (st, d, w) = (steady(), data_dir(), PrimaryAnswer::Writable);
        let p = params();
        assert!(p.has_password);
        let plan = judge(&situation(&st, &p, &d, &w), "node1", true).unwrap();
        let text: String = plan
            .steps()
            .iter()
            .map(|s| s.action.clone())
            .collect::<Vec<_>>()
            .join("\n");
        let json = serde_json::to_string(&plan).unwrap();
        let debug = format!("{plan:?} {:?}", plan.steps());
        for shown in [&text, &json, &debug] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(text.contains("repl_password, in PGPASSWORD"), "{text}");
        // Without repl_password, libpq reads .pgpass.
        let p = Params::from_config(&config(None));
        let plan = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap();
        assert!(plan.steps()[2].action.contains("~/.pgpass"));
    }

    #[test]
    fn the_primary_is_refused_wherever_it_is_asked() {
        let (st, p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        let mut s = situation(&st, &p, &d, &w);
        for local in ["node1", "node2"] {
            s.local_node = local;
            let r = judge(&s, "node2", false).unwrap_err();
            assert_eq!(r, Refusal::TargetIsPrimary("node2".into()));
            assert_eq!(r.code(), "target_is_primary");
        }
    }

    #[test]
    fn another_node_is_refused_with_where_to_run_it() {
        let (st, p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        let mut s = situation(&st, &p, &d, &w);
        s.local_node = "node2";
        let r = judge(&s, "node1", false).unwrap_err();
        assert_eq!(
            r,
            Refusal::NotLocal {
                node: "node1".into(),
                local: "node2".into()
            }
        );
        assert!(r.to_string().ends_with("run it on node1"), "{r}");
    }

    #[test]
    fn an_unknown_node_no_primary_several_or_no_stack_are_refused() {
        let (p, d, w) = (params(), data_dir(), PrimaryAnswer::Writable);
        let st = steady();
        let r = judge(&situation(&st, &p, &d, &w), "node9", false).unwrap_err();
        assert_eq!(
            r,
            Refusal::UnknownNode {
                node: "node9".into(),
                known: vec!["node1".into(), "node2".into()]
            }
        );
        let mut none = steady();
        none.clones[0].instances[1].role = Role::Unpromoted;
        assert_eq!(
            judge(&situation(&none, &p, &d, &w), "node1", false).unwrap_err(),
            Refusal::NoPrimary
        );
        let mut st3 = steady();
        st3.nodes.push(st3.nodes[0].clone());
        st3.nodes[2].name = NodeName::new("node3").unwrap();
        let mut third = st3.clones[0].instances[1].clone();
        third.nodes = vec![NodeName::new("node3").unwrap()];
        st3.clones[0].instances.push(third);
        assert_eq!(
            judge(&situation(&st3, &p, &d, &w), "node1", false).unwrap_err(),
            Refusal::SeveralPrimaries(vec!["node2".into(), "node3".into()])
        );
        let mut s = situation(&st, &p, &d, &w);
        s.clone = None;
        assert_eq!(judge(&s, "node1", false).unwrap_err(), Refusal::NoStack);
        s.clone = Some("other-clone");
        assert_eq!(judge(&s, "node1", false).unwrap_err(), Refusal::NoStack);
    }

    #[test]
    fn a_failed_or_stopped_instance_is_what_rebuild_is_for() {
        let (p, d, w) = (params(), data_dir(), PrimaryAnswer::Writable);
        // node1's monitor failed: no reason to refuse.
        let st = parse_crm_mon(FAILED).unwrap();
        assert!(!st.failures.is_empty());
        assert!(judge(&situation(&st, &p, &d, &w), "node1", false).is_ok());
        // A refused start: the instance is stopped, the fail-count INFINITY.
        let mut st = steady();
        st.clones[0].instances[0].role = Role::Stopped;
        st.clones[0].instances[0].nodes.clear();
        assert!(judge(&situation(&st, &p, &d, &w), "node1", false).is_ok());
    }

    #[test]
    fn a_node_in_standby_mode_or_maintenance_is_refused_with_the_fix() {
        let (p, d, w) = (params(), data_dir(), PrimaryAnswer::Writable);
        let mut st = steady();
        st.nodes[0].standby = true;
        let r = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap_err();
        assert_eq!(r.code(), "node_not_available");
        assert!(r.to_string().contains("pcs node unstandby"), "{r}");
        let mut st = steady();
        st.nodes[0].maintenance = true;
        let r = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap_err();
        assert!(r.to_string().contains("in maintenance"), "{r}");
        let mut st = steady();
        st.maintenance_mode = true;
        assert_eq!(
            judge(&situation(&st, &p, &d, &w), "node1", false)
                .unwrap_err()
                .code(),
            "node_not_available"
        );
    }

    #[test]
    fn an_operation_in_flight_or_a_busy_dc_is_refused_as_transient() {
        let (p, d, w) = (params(), data_dir(), PrimaryAnswer::Writable);
        let promoting = parse_crm_mon(PROMOTING).unwrap();
        let mut st = steady();
        st.pending = promoting.pending.clone();
        let r = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap_err();
        assert_eq!(r, Refusal::InFlight(vec!["stack promote on node1".into()]));
        assert!(r.is_transient());
        let st = steady();
        let mut s = situation(&st, &p, &d, &w);
        s.controller_state = Some("S_TRANSITION_ENGINE");
        let r = judge(&s, "node1", false).unwrap_err();
        assert_eq!(
            r,
            Refusal::TransitionInProgress("S_TRANSITION_ENGINE".into())
        );
        assert!(r.is_transient());
    }

    #[test]
    fn a_linked_odd_or_tablespaced_data_directory_is_refused_a_missing_one_is_created() {
        let (st, p, w) = (steady(), params(), PrimaryAnswer::Writable);
        let link = DataDir::Symlink("/srv/pg".into());
        let r = judge(&situation(&st, &p, &link, &w), "node1", false).unwrap_err();
        assert_eq!(r.code(), "data_dir_symlink");
        assert!(r.to_string().contains("/srv/pg"), "{r}");
        let file = DataDir::NotADirectory;
        assert_eq!(
            judge(&situation(&st, &p, &file, &w), "node1", false)
                .unwrap_err()
                .code(),
            "data_dir_not_a_directory"
        );
        let ts = DataDir::Directory {
            tablespaces: vec!["16390".into()],
            config_files: vec![],
        };
        assert_eq!(
            judge(&situation(&st, &p, &ts, &w), "node1", false).unwrap_err(),
            Refusal::Tablespaces(vec!["16390".into()])
        );
        let missing = DataDir::Missing;
        let plan = judge(&situation(&st, &p, &missing, &w), "node1", true).unwrap();
        assert_eq!(plan.old_data_dir, None);
        assert!(plan.config_files_kept.is_empty());
        assert!(plan.steps()[1].action.contains("does not exist"));
        assert!(plan.steps().iter().all(|s| s.step != StepKind::Discard));
    }

    #[test]
    fn no_writable_primary_at_primary_host_is_refused() {
        let (st, p, d) = (steady(), params(), data_dir());
        let down = PrimaryAnswer::Unreachable("connection refused".into());
        let r = judge(&situation(&st, &p, &d, &down), "node1", false).unwrap_err();
        assert_eq!(
            r,
            Refusal::PrimaryUnreachable {
                at: "10.0.0.10:5432".into(),
                reason: "connection refused".into()
            }
        );
        let standby = PrimaryAnswer::Standby;
        assert_eq!(
            judge(&situation(&st, &p, &d, &standby), "node1", false).unwrap_err(),
            Refusal::PrimaryNotWritable("10.0.0.10:5432".into())
        );
    }

    #[test]
    fn too_little_free_space_is_refused_unknown_space_is_not() {
        let (st, p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        let mut s = situation(&st, &p, &d, &w);
        s.space = Some(Space {
            needed: 1000 << 20,
            free: 1050 << 20,
        });
        let r = judge(&s, "node1", false).unwrap_err();
        assert_eq!(r.code(), "no_space");
        assert!(r.to_string().contains("1000.0 MiB"), "{r}");
        s.space = Some(Space {
            needed: 1000 << 20,
            free: 1200 << 20,
        });
        assert!(judge(&s, "node1", false).is_ok());
        s.space = None;
        assert!(judge(&s, "node1", false).is_ok());
    }

    #[test]
    fn the_old_directory_is_named_with_a_utc_timestamp() {
        // 2023-11-14 22:13:20 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc_stamp(t), "20231114T221320Z");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            old_data_dir_name(Path::new("/var/lib/postgresql/15/main"), "20231114T221320Z"),
            Path::new("/var/lib/postgresql/15/main.rebuild-20231114T221320Z")
        );
    }

    #[test]
    fn a_failure_says_what_is_left_and_how_to_recover() {
        let (st, p, d, w) = (steady(), params(), data_dir(), PrimaryAnswer::Writable);
        let plan = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap();
        let nothing = Progress::default();
        assert_eq!(nothing.advice(&plan), "nothing was changed");
        let copying = Progress {
            banned: true,
            moved: true,
            created: true,
            ..Progress::default()
        };
        let a = copying.advice(&plan);
        assert!(
            a.contains("`crm_resource --clear --resource stack-clone --node node1`"),
            "{a}"
        );
        assert!(
            a.contains(
                "`rm -rf /var/lib/postgresql/15/main && mv \
                 /var/lib/postgresql/15/main.rebuild-20261126T000020Z /var/lib/postgresql/15/main`"
            ),
            "{a}"
        );
        let waiting = Progress {
            banned: true,
            moved: true,
            created: true,
            copied: true,
            configured: true,
            given_back: true,
        };
        let a = waiting.advice(&plan);
        assert!(a.contains("no ban left"), "{a}");
        assert!(a.contains("the old data is kept at"), "{a}");
    }

    #[test]
    fn every_refusal_has_a_distinct_code() {
        let all = [
            Refusal::NoStack,
            Refusal::UnknownNode {
                node: String::new(),
                known: vec![],
            },
            Refusal::TargetIsPrimary(String::new()),
            Refusal::NotLocal {
                node: String::new(),
                local: String::new(),
            },
            Refusal::NoPrimary,
            Refusal::SeveralPrimaries(vec![]),
            Refusal::NodeNotAvailable {
                node: String::new(),
                state: String::new(),
                fix: String::new(),
            },
            Refusal::InFlight(vec![]),
            Refusal::TransitionInProgress(String::new()),
            Refusal::DataDirSymlink {
                pgdata: PathBuf::new(),
                target: PathBuf::new(),
            },
            Refusal::DataDirNotADirectory(PathBuf::new()),
            Refusal::Tablespaces(vec![]),
            Refusal::PrimaryUnreachable {
                at: String::new(),
                reason: String::new(),
            },
            Refusal::PrimaryNotWritable(String::new()),
            Refusal::NoSpace {
                pgdata: PathBuf::new(),
                needed: 0,
                free: 0,
            },
        ];
        let mut codes: Vec<&str> = all.iter().map(Refusal::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    /// A scratch directory under the target dir, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("rapidpro-rebuild-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A user other than the test's own, when running as root.
    fn owner() -> (Uid, Gid) {
        if Uid::effective().is_root() {
            (Uid::from_raw(65534), Gid::from_raw(65534))
        } else {
            (Uid::effective(), Gid::effective())
        }
    }

    #[test]
    fn the_directory_is_moved_aside_recreated_and_configured_without_following_links() {
        use std::os::unix::fs::MetadataExt;
        let dir = Scratch::new("fs");
        let pgdata = dir.0.join("main");
        fs::create_dir(&pgdata).unwrap();
        fs::write(pgdata.join("postgresql.conf"), "port = 5433\n").unwrap();
        fs::write(pgdata.join("PG_VERSION"), "15\n").unwrap();
        // A planted link in place of pg_hba.conf must not be read through.
        std::os::unix::fs::symlink("/etc/shadow", pgdata.join("pg_hba.conf")).unwrap();
        assert_eq!(
            observe_data_dir(&pgdata, &pgdata),
            DataDir::Directory {
                tablespaces: vec![],
                config_files: vec!["postgresql.conf".into()]
            }
        );
        let mut p = params();
        p.pgdata = pgdata.clone();
        p.datadir = pgdata.clone();
        let (st, w) = (steady(), PrimaryAnswer::Writable);
        let d = observe_data_dir(&pgdata, &pgdata);
        let mut plan = judge(&situation(&st, &p, &d, &w), "node1", false).unwrap();
        let (uid, gid) = owner();
        let place = Place::open(&plan).unwrap();
        place.move_aside(&plan).unwrap();
        place.create_new(&plan, uid, gid).unwrap();
        let old = plan.old_data_dir.clone().unwrap();
        assert!(old.join("PG_VERSION").is_file());
        let meta = fs::symlink_metadata(&pgdata).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700);
        assert_eq!((meta.uid(), meta.gid()), (uid.as_raw(), gid.as_raw()));
        assert_eq!(fs::read_dir(&pgdata).unwrap().count(), 0);
        // The copy brought the primary's postgresql.conf.
        fs::write(pgdata.join("postgresql.conf"), "port = 5432\n").unwrap();
        place.configure(&plan, uid, gid).unwrap();
        assert_eq!(
            fs::read_to_string(pgdata.join("postgresql.conf")).unwrap(),
            "port = 5433\n"
        );
        let conf = fs::metadata(pgdata.join("postgresql.conf")).unwrap();
        assert_eq!((conf.uid(), conf.gid()), (uid.as_raw(), gid.as_raw()));
        let signal = fs::symlink_metadata(pgdata.join("standby.signal")).unwrap();
        assert!(signal.is_file());
        assert_eq!(signal.len(), 0);
        assert_eq!(signal.uid(), uid.as_raw());
        // Asked to keep a file that is a link in the old directory: refused.
        plan.config_files_kept.push("pg_hba.conf".into());
        let e = place.configure(&plan, uid, gid).unwrap_err();
        assert!(e.to_string().contains("pg_hba.conf"), "{e}");
        assert!(!pgdata.join("pg_hba.conf").exists());
        // A second move never replaces the kept directory.
        fs::create_dir(old.join("x")).unwrap();
        let e = place.move_aside(&plan).unwrap_err();
        assert!(e.to_string().contains("exists"), "{e}");
        assert!(old.join("x").is_dir());
        place.discard(&plan).unwrap();
        assert!(!old.exists());
    }

    #[test]
    fn a_link_not_owned_by_root_on_the_way_is_not_followed() {
        let dir = Scratch::new("links");
        let real = dir.0.join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        if Uid::effective().is_root() {
            // Root's own link is followed, as an administrator's would be.
            assert!(open_dir_safely(&link.join(".")).is_ok());
            std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        }
        let e = open_dir_safely(&link).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP), "{e}");
        assert!(open_dir_safely(&real).is_ok());
    }
}
