//! Running the agent the way Pacemaker's execd does, and asserting on what it
//! did (the `Output` of sudo-rs `test-framework/sudo-test`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd::{describe_status, exit_code, run_command};
use crate::node::Node;
use crate::ocf::{self, param};

/// Deadline for one agent action, on the harness side. Longer than the
/// default `OCF_RESKEY_CRM_meta_timeout` (60 s): the agent is meant to keep
/// its own deadline, and we want to see it fail to, not cut it short.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Rust's exit status for a panic that unwound out of `main`.
const PANIC_EXIT: i32 = 101;

/// The `PATH` agents and clients get: the test process's own `PATH`, plus
/// the system directories Pacemaker's execd always has.
pub(crate) fn agent_path() -> String {
    let inherited = std::env::var("PATH").unwrap_or_default();
    let mut dirs: Vec<&str> = inherited.split(':').filter(|d| !d.is_empty()).collect();
    for d in ocf::SYSTEM_PATH {
        if !dirs.contains(d) {
            dirs.push(d);
        }
    }
    dirs.join(":")
}

/// One invocation of the agent, built up like Pacemaker would: a cleared
/// environment except `PATH`, the OCF variables, the meta attributes of a
/// promotable clone (`clone_max=2`, `promoted_max=1`, `notify=true`,
/// `timeout=60000`, `interval=0`, `on_node=<node>`), and `OCF_RESKEY_<k>` for
/// every [`Node::params`] entry.
///
/// Build it with [`Node::agent`]; each builder method returns the agent, and
/// [`Agent::run`] can be called any number of times.
#[derive(Debug, Clone)]
pub struct Agent {
    bin: PathBuf,
    node: String,
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    prefix: Vec<String>,
    timeout: Duration,
}

impl Agent {
    pub(crate) fn for_node(bin: &Path, node: &Node) -> Agent {
        let mut agent = Agent {
            bin: bin.to_owned(),
            node: node.name.clone(),
            cwd: node.dir.clone(),
            env: BTreeMap::new(),
            prefix: Vec::new(),
            timeout: AGENT_TIMEOUT,
        };
        agent = agent.env("PATH", agent_path());
        for (k, v) in ocf::FIXED_ENV {
            agent = agent.env(*k, *v);
        }
        agent = agent.env(ocf::RESOURCE_INSTANCE, node.instance.as_str());
        for (k, v) in ocf::DEFAULT_META {
            agent = agent.meta(k, *v);
        }
        agent = agent.meta(ocf::META_ON_NODE, node.name.as_str());
        for (k, v) in node.params() {
            agent = agent.param(&k, v);
        }
        agent
    }

    /// Sets (or overrides) the parameter `OCF_RESKEY_<name>`.
    pub fn param(self, name: &str, value: impl Into<String>) -> Agent {
        self.env(format!("{}{name}", ocf::RESKEY_PREFIX), value)
    }

    /// Turns Redis TLS on with `tls`'s files (see [`crate::RedisTls`]).
    pub fn redis_tls(mut self, tls: &crate::RedisTls) -> Agent {
        for (k, v) in tls.params() {
            self = self.param(k, v);
        }
        self
    }

    /// Removes the parameter `OCF_RESKEY_<name>`, as if it were not
    /// configured.
    pub fn unset_param(self, name: &str) -> Agent {
        self.unset_env(&format!("{}{name}", ocf::RESKEY_PREFIX))
    }

    /// Sets (or overrides) the meta attribute `OCF_RESKEY_CRM_meta_<name>`.
    pub fn meta(self, name: &str, value: impl Into<String>) -> Agent {
        self.env(format!("{}{name}", ocf::META_PREFIX), value)
    }

    /// Sets (or overrides) any environment variable.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Agent {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Removes an environment variable.
    pub fn unset_env(mut self, name: &str) -> Agent {
        self.env.remove(name);
        self
    }

    /// Points this node at `primary`: `primary_port` and
    /// `redis_primary_port` become that node's ports (`primary_host` is
    /// 127.0.0.1 for every node).
    pub fn primary(self, primary: &Node) -> Agent {
        self.param(param::PRIMARY_PORT, primary.pgport.to_string())
            .param(param::REDIS_PRIMARY_PORT, primary.redis_port.to_string())
    }

    /// Makes the next run a notification: `notify_type=kind` (`pre` or
    /// `post`), `notify_operation=op` (`start`, `stop`, `promote`, `demote`),
    /// every list Pacemaker sends set to its empty value (a single space),
    /// then `lists` on top, e.g. `("promote_uname", "node1")` sets
    /// `OCF_RESKEY_CRM_meta_notify_promote_uname=node1`. Call
    /// `.run("notify")` afterwards.
    pub fn notify(mut self, kind: &str, op: &str, lists: &[(&str, &str)]) -> Agent {
        let key = |name: &str| format!("{}{name}", ocf::NOTIFY_PREFIX);
        self = self
            .env(key(ocf::NOTIFY_TYPE), kind)
            .env(key(ocf::NOTIFY_OPERATION), op);
        for name in ocf::NOTIFY_LISTS {
            self = self.env(key(name), ocf::EMPTY_LIST);
        }
        for (name, value) in lists {
            self = self.env(key(name), *value);
        }
        self
    }

    /// Changes the harness-side deadline (default [`AGENT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Agent {
        self.timeout = timeout;
        self
    }

    /// Runs every later [`Agent::run`] under
    /// `strace -f -e trace=execve -o <log>`, to see which programs the agent
    /// executes. strace exits with the agent's status.
    pub fn strace(mut self, log: impl AsRef<Path>) -> Agent {
        self.prefix = [
            "strace",
            "-f",
            "-e",
            "trace=execve,fork,vfork,clone,clone3",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([log.as_ref().display().to_string()])
        .collect();
        self
    }

    /// The environment the agent will get.
    pub fn environment(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Runs `<bin> <action>` and returns what happened. Panics (naming the
    /// action and the node) if it cannot be started, runs past the deadline
    /// (it is killed first), panicked (exit 101) or was killed by a signal:
    /// none of those is an OCF answer.
    #[track_caller]
    pub fn run(&self, action: &str) -> AgentOutput {
        let prefix: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        self.run_under(&prefix, action)
    }

    /// Like [`Agent::run`], but runs `prefix… <bin> <action>`, e.g.
    /// `&["strace", "-f", "-e", "trace=execve", "-o", "/tmp/x"]`. An empty
    /// prefix runs the agent directly.
    #[track_caller]
    pub fn run_under(&self, prefix: &[&str], action: &str) -> AgentOutput {
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg(action)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.cwd);
        let what = format!("agent `{action}` on {}", self.node);
        // A timeout (the process group was killed) or a failure to start.
        let out = run_command(cmd, self.timeout).unwrap_or_else(|e| panic!("{what}: {e}"));
        let output = AgentOutput {
            action: action.to_owned(),
            node: self.node.clone(),
            code: exit_code(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
        };
        if out.status.code() == Some(PANIC_EXIT) {
            panic!("{what} panicked (exit {PANIC_EXIT})\n{output}");
        }
        if out.status.code().is_none() {
            panic!("{what} {}\n{output}", describe_status(out.status));
        }
        output
    }
}

/// What one agent action did.
#[derive(Debug, Clone)]
pub struct AgentOutput {
    /// The action, e.g. `monitor`.
    pub action: String,
    /// The node it ran for.
    pub node: String,
    /// The exit code (an OCF return code).
    pub code: i32,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl AgentOutput {
    /// Panics unless the exit code is `expected`, printing the action, both
    /// codes, stdout and stderr. Returns `self` for chaining.
    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        if self.code != expected {
            panic!(
                "agent `{}` on {}: expected exit code {expected}, got {}\n{self}",
                self.action, self.node, self.code
            );
        }
        self
    }

    /// The text after the last stderr line that starts with
    /// `ocf-exit-reason:` (trimmed), if any.
    pub fn exit_reason(&self) -> Option<String> {
        self.stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(ocf::EXIT_REASON_PREFIX))
            .map(|r| r.trim().to_owned())
    }

    /// Panics unless [`AgentOutput::exit_reason`] contains `needle`.
    #[track_caller]
    pub fn assert_reason_contains(&self, needle: &str) -> &Self {
        match self.exit_reason() {
            Some(reason) if reason.contains(needle) => self,
            Some(reason) => panic!(
                "agent `{}` on {}: exit reason {reason:?} does not contain {needle:?}\n{self}",
                self.action, self.node
            ),
            None => panic!(
                "agent `{}` on {}: no `{}` line (wanted one containing {needle:?})\n{self}",
                self.action,
                self.node,
                ocf::EXIT_REASON_PREFIX
            ),
        }
    }
}

impl fmt::Display for AgentOutput {
    /// The full story, for failure messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--- agent `{}` on {} exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.action,
            self.node,
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}
