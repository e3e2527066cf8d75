//! `ocf:rapidpro:stack`: the agent's actions over PostgreSQL and Redis.
//!
//! Each action reads its configuration once into a [`Ctx`], reads the
//! world into typed facts ([`observe`]), asks the pure functions of
//! [`decide`] what to do, then acts ([`act`], one file per action). Failures travel as
//! [`Error`]; states (stopped, promoted, degraded...) are values of
//! [`Outcome`]. The exit code of every error is chosen in one place,
//! [`ocf_rc`], and that of every monitor verdict in another, `From<Verdict>`.

pub mod act;
pub mod decide;
#[cfg(test)]
mod model;
pub mod observe;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError, NodeName};
use crate::config::{Config, ConfigError};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;
use crate::ocf::{self, Action, OcfRc};
use crate::postgres::server::Server;
use crate::postgres::PgError;
use crate::redis::{RedisError, ServerSpec};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// PostgreSQL failed.
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A cluster tool failed where its answer was needed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Promotion refused to keep data safe (a better node, another primary).
    #[error("promotion refused: {0}")]
    PromotionRefused(String),
    /// The old primary's history diverged from the primary's.
    #[error("{0}")]
    Diverged(String),
    /// Anything else, said in words.
    #[error("{0}")]
    Failed(String),
}

/// The exit code of a failed action: the one place errors become codes.
pub fn ocf_rc(e: &Error) -> OcfRc {
    match e {
        Error::Config(c) => c.rc(),
        Error::Postgres(PgError::Command(crate::cmd::CommandError::NotFound { .. }))
        | Error::Redis(RedisError::Command(crate::cmd::CommandError::NotFound { .. })) => {
            OcfRc::ErrInstalled
        }
        // A link, FIFO or stranger's file planted where the agent reads or
        // writes as root: an attack or a corruption that no retry on this
        // node fixes. A hard error keeps the resource off this node until
        // an administrator looked and cleaned up.
        Error::Postgres(PgError::Files(f)) | Error::Redis(RedisError::Files(f))
            if f.is_refusal() =>
        {
            OcfRc::ErrPerm
        }
        _ => OcfRc::ErrGeneric,
    }
}

/// The exit code of a monitor's verdict: the one place verdicts become codes.
impl From<decide::Verdict> for Outcome {
    fn from(v: decide::Verdict) -> Outcome {
        use decide::Verdict as V;
        match v {
            V::NotRunning => Outcome::code(OcfRc::NotRunning),
            V::Unpromoted => Outcome::ok(),
            V::Promoted => Outcome::code(OcfRc::RunningPromoted),
            V::Degraded(r) => Outcome::because(OcfRc::Degraded, r),
            V::DegradedPromoted(r) => Outcome::because(OcfRc::DegradedPromoted, r),
            V::Failed {
                promoted: true,
                reason,
            } => Outcome::because(OcfRc::FailedPromoted, reason),
            V::Failed {
                promoted: false,
                reason,
            } => Outcome::because(OcfRc::ErrGeneric, reason),
        }
    }
}

/// What an action reports when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code.
    pub rc: OcfRc,
    /// An exit reason, for non-zero codes.
    pub reason: Option<String>,
}

impl Outcome {
    /// Success with nothing to say.
    pub fn ok() -> Self {
        Outcome::code(OcfRc::Success)
    }

    /// A code with no reason.
    pub fn code(rc: OcfRc) -> Self {
        Outcome { rc, reason: None }
    }

    /// A code with a reason.
    pub fn because(rc: OcfRc, reason: impl Into<String>) -> Self {
        Outcome {
            rc,
            reason: Some(reason.into()),
        }
    }
}

/// Everything an action needs, built once.
pub struct Ctx<'a> {
    /// What Pacemaker passed.
    pub env: &'a OcfEnv,
    /// The validated parameters.
    pub cfg: Config,
    /// The cluster: the live one, or the CIB file `CIB_file` named.
    pub cluster: Cluster,
    /// This node's name.
    pub node: NodeName,
    /// The action's deadline.
    pub deadline: Deadline,
    /// The PostgreSQL server.
    pub pg: Server,
    /// The Redis server.
    pub redis: ServerSpec,
    /// The state file.
    pub state_path: PathBuf,
    /// The password `system_user`'s `~/.pgpass` gives for `repl_user` at
    /// primary_host, read once when first needed (see
    /// [`Ctx::primary_password`]).
    pgpass: std::cell::OnceCell<Option<String>>,
}

/// Default timeout when Pacemaker gives none (ocf-tester gives 20 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl<'a> Ctx<'a> {
    /// Builds the context: parameters checked for form (errors are
    /// OCF_ERR_CONFIGURED), users looked up (errors are host problems).
    /// The one place an action parses its parameters.
    pub fn new(env: &'a OcfEnv, deadline: Deadline) -> Result<Ctx<'a>, Error> {
        Ctx::build(env, deadline, false)
    }

    /// [`Ctx::new`] for the actions that change something (start, promote,
    /// demote): the host is checked too ([`Config::check_host`]: programs,
    /// directories), before the users are looked up, so its errors and
    /// their exit codes come first, as they always did.
    pub fn checked(env: &'a OcfEnv, deadline: Deadline) -> Result<Ctx<'a>, Error> {
        Ctx::build(env, deadline, true)
    }

    fn build(env: &'a OcfEnv, deadline: Deadline, check_host: bool) -> Result<Ctx<'a>, Error> {
        let cfg = Config::from_env(env)?;
        if check_host {
            cfg.check_host()?;
        }
        let pg = cfg.pg_server()?;
        let cluster = env.cluster().clone();
        let node = cluster.local_node_name(env.on_node(), &deadline);
        let redis = ServerSpec {
            redis_server: cfg.redis_server.clone(),
            config: cfg.redis_config.clone(),
            port: cfg.redis_port,
            socket: cfg.redis_socket.clone(),
            password: cfg.redis_password.clone(),
            user: cfg.redis_user.clone(),
            run_dir: cfg.state_dir.join("redis"),
            instance: env.resource().to_string(),
            replicaof: Some((cfg.primary_host.clone(), cfg.redis_primary_port)),
            tls: cfg.redis_tls.clone(),
        };
        let state_path = state::State::path(&cfg.state_dir, env.resource());
        Ok(Ctx {
            env,
            cfg,
            cluster,
            node,
            deadline,
            pg,
            redis,
            state_path,
            pgpass: std::cell::OnceCell::new(),
        })
    }

    /// The password of `repl_user` for the `postgres` database at
    /// primary_host: `repl_password`, or else what `system_user`'s
    /// `~/.pgpass` says, as libpq finds it for the WAL receiver, pg_rewind
    /// and pg_basebackup. Without it the agent's own checks of primary_host
    /// would fail authentication and report "cannot tell".
    pub fn primary_password(&self) -> Option<&str> {
        if let Some(p) = self.cfg.repl_password.as_deref() {
            return Some(p);
        }
        self.pgpass
            .get_or_init(|| {
                self.cfg.repl_password_for(
                    &self.cfg.primary_host,
                    self.cfg.primary_port,
                    "postgres",
                )
            })
            .as_deref()
    }
}

/// Runs an action and returns its exit code and exit reason. Prints nothing
/// but logs; the binary prints the reason.
pub fn run(action: Action, env: &OcfEnv) -> Outcome {
    let deadline = Deadline::for_action(env.timeout(), DEFAULT_TIMEOUT);
    let result = match action {
        Action::MetaData | Action::Usage => Ok(Outcome::ok()),
        Action::ValidateAll => act::validate_all(env),
        Action::Notify => Ok(act::notify(env, deadline)),
        Action::Monitor => act::monitor(env, deadline),
        Action::Stop => act::stop(env, deadline),
        Action::Start => act::start(env, deadline),
        Action::Promote => act::promote(env, deadline),
        Action::Demote => act::demote(env, deadline),
    };
    match result {
        Ok(o) => o,
        Err(e) => {
            let rc = ocf_rc(&e);
            // crm_mon shows the action beside the reason: keep all 128
            // characters for what went wrong.
            let reason = e.to_string();
            log::error!("{} failed ({rc}): {reason}", action.name());
            Outcome::because(rc, reason)
        }
    }
}

/// Formats the exit reason line of an outcome, if it has one.
pub fn exit_reason(o: &Outcome) -> Option<String> {
    o.reason.as_deref().map(ocf::exit_reason_line)
}

/// The agent's `main`: reads the action and the environment, runs it,
/// prints the exit reason, and returns the exit code. `meta-data` and
/// `usage` answer before anything else is read, so they work as any user.
pub fn agent_main(args: &[String]) -> i32 {
    let program = args.first().map(String::as_str).unwrap_or("stack");
    let Some(name) = args.get(1) else {
        eprint!("{}", ocf::usage(program));
        eprintln!("{}", ocf::exit_reason_line("no action given"));
        return OcfRc::ErrArgs.code();
    };
    if name == act::WATCH_ARG {
        return act::watcher_main();
    }
    if name == act::GUARD_ARG {
        return act::guard_main();
    }
    let Some(action) = Action::parse(name) else {
        eprint!("{}", ocf::usage(program));
        eprintln!(
            "{}",
            ocf::exit_reason_line(&format!("action {name:?} is not implemented"))
        );
        return OcfRc::ErrUnimplemented.code();
    };
    match action {
        Action::MetaData => {
            print!("{}", ocf::metadata::xml());
            return 0;
        }
        Action::Usage => {
            print!("{}", ocf::usage(program));
            return 0;
        }
        _ => {}
    }
    let env = OcfEnv::from_process();
    ocf::log::AgentLogger::new(env.instance(), env.debug()).install();
    let outcome = run(action, &env);
    if outcome.rc != OcfRc::Success {
        if let Some(line) = exit_reason(&outcome) {
            eprintln!("{line}");
        }
    }
    outcome.rc.code()
}
