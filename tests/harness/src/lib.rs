//! Test harness for `ocf:rapidpro:stack`: real PostgreSQL 15 and Redis 7 on
//! loopback, one private directory and private ports per test, torn down by
//! PID.
//!
//! The shape follows sudo-rs `test-framework/` (a builder that yields an
//! isolated environment, `#[track_caller]` assertions that dump stdout and
//! stderr) and ripgrep `tests/util.rs` (a unique directory per test from an
//! atomic counter).
//!
//! ```no_run
//! use rapidpro_ha_harness::{poll, Pair};
//! use std::time::Duration;
//!
//! let pair = Pair::new("promote_and_demote");
//! let n1 = &pair.nodes[0];
//! n1.agent("/path/to/rapidpro-agent")
//!     .primary(&pair.nodes[1])
//!     .run("start")
//!     .assert_code(0);
//! poll("node1 answers SQL", Duration::from_secs(30), || n1.try_psql("select 1").ok());
//! ```
//!
//! Nothing here kills by process name: every signal goes to a PID read from
//! `postmaster.pid`, from the Redis pidfile, or found through `/proc` by its
//! working directory inside the test's own directory, and only after `/proc`
//! confirms the process is what we expect. Other tests and other people's
//! servers on the same machine are never touched.
//!
//! [`NsCluster`] (module [`netns`]) goes further: a real Pacemaker and
//! Corosync cluster whose nodes live in Linux namespaces on this machine,
//! with private addresses that exist only inside those namespaces.
//!
//! Everything must run as root (the agent does, under Pacemaker); the harness
//! panics with a clear message otherwise instead of skipping.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod agent;
pub mod bench;
mod cib;
mod cluster;
mod cmd;
mod dir;
pub mod netns;
mod node;
pub mod ocf;
mod poll;
mod port;
mod proc;
mod reaper;
#[cfg(test)]
mod selftest;
pub mod sinks;
mod template;
pub mod tls;
pub mod workload;

pub use agent::{Agent, AgentOutput, AGENT_TIMEOUT};
pub use cib::offline_cib;
pub use cluster::{Cluster, Pair};
pub use cmd::{run_command, CmdError, CmdOutput};
pub use dir::TestDir;
pub use netns::{
    CrmNode, CrmResource, CrmStatus, FenceEvent, NodeInits, NsCluster, NsClusterBuilder, NsNode,
    STACK_AGENT, VIP_AGENT,
};
pub use node::Node;
pub use poll::poll;
pub use port::free_port;
pub use sinks::{
    HttpRequest, HttpSink, SmtpMessage, SmtpMisbehaviour, SmtpSink, SmtpSinkOptions, SmtpTlsMode,
};
pub use tls::{Issued, RedisTls, TestCa};

/// Where PostgreSQL 15's programs live (Debian's `postgresql-15`).
pub const PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";
/// The Redis server binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The Redis command-line client.
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// The system user PostgreSQL runs as.
pub const PG_USER: &str = "postgres";
/// The system user Redis runs as.
pub const REDIS_USER: &str = "redis";
/// The replication role created in the template, and its password.
pub const REPL_USER: &str = "replicator";
/// Password of [`REPL_USER`].
pub const REPL_PASSWORD: &str = "secret";
/// The only address anything listens on or connects to.
pub const LOOPBACK: &str = "127.0.0.1";
/// Parent of every test directory and of the per-process template.
pub const TEST_ROOT: &str = "/tmp/rapidpro-ha-tests";
/// When set (to anything), test directories are kept after the test.
pub const KEEP_DIRS_ENV: &str = "RAPIDPRO_KEEP_TEST_DIRS";
