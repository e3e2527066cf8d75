//! A test cluster of nodes, torn down on drop.

use std::time::Duration;

use crate::dir::TestDir;
use crate::node::Node;
use crate::proc;
use crate::template;

/// How long a server gets to stop cleanly on teardown before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log lines shown per file when a test fails.
const LOG_TAIL: usize = 40;

/// Two nodes, `node1` and `node2`, in one [`TestDir`]. `node1`'s data
/// directory is a freshly initialised, cleanly shut down PostgreSQL 15
/// cluster; `node2`'s is a cold copy of the same, hence a valid standby base.
/// Nothing runs until the agent starts it.
///
/// On drop (also when the test panics) every server of every node is stopped
/// by PID (see [`Node::stop_everything`]), then the directory is removed. A
/// panicking test also gets the tails of the nodes' logs on stderr.
#[derive(Debug)]
pub struct Pair {
    /// The test's directory; the nodes live in `node1/` and `node2/`.
    pub dir: TestDir,
    /// `node1` and `node2`.
    pub nodes: Vec<Node>,
}

impl Pair {
    /// Sets up the two nodes for the test `name`.
    #[track_caller]
    pub fn new(name: &str) -> Pair {
        let (dir, nodes) = build(name, 2);
        Pair { dir, nodes }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        teardown(&self.nodes);
    }
}

/// Like [`Pair`], with any number of nodes `node1` … `node<n>`.
#[derive(Debug)]
pub struct Cluster {
    /// The test's directory; node `i` lives in `node<i>/`.
    pub dir: TestDir,
    /// `node1` … `node<n>`.
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Sets up `n` nodes for the test `name`.
    #[track_caller]
    pub fn new(name: &str, n: usize) -> Cluster {
        assert!(n >= 1, "a cluster needs at least one node");
        let (dir, nodes) = build(name, n);
        Cluster { dir, nodes }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        teardown(&self.nodes);
    }
}

#[track_caller]
fn build(name: &str, n: usize) -> (TestDir, Vec<Node>) {
    let template = template::pgdata();
    let dir = TestDir::new(name);
    let nodes = (1..=n)
        .map(|i| Node::create(dir.path(), &format!("node{i}"), template))
        .collect();
    (dir, nodes)
}

/// Stops every node's servers, then any stray process in a node directory.
/// Runs in `Drop`, so it reports instead of panicking.
fn teardown(nodes: &[Node]) {
    if std::thread::panicking() {
        for node in nodes {
            eprintln!("harness: {} logs\n{}", node.name, node.log_tails(LOG_TAIL));
        }
    }
    let servers: Vec<_> = nodes.iter().flat_map(Node::server_targets).collect();
    let mut left = proc::stop_all(&servers, STOP_GRACE);
    let strays: Vec<_> = nodes.iter().flat_map(Node::stray_targets).collect();
    for s in &strays {
        eprintln!(
            "harness: stopping {} (pid {}), found by its working directory",
            s.label, s.pid
        );
    }
    left.extend(proc::stop_all(&strays, STOP_GRACE));
    for line in left {
        eprintln!("harness: teardown: {line}");
    }
    for t in servers.iter().chain(&strays) {
        proc::wait_reaped(t.pid, Duration::from_secs(1));
    }
}
