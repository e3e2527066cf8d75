//! The cluster's network: a bridge in a network namespace of its own, held by
//! a `sleep infinity` under `unshare --net`, and one veth pair per node
//! (`eth0` inside the node, `v<n>` enslaved to the bridge).
//!
//! The addresses (`10.200.<id>.<n>/24`) exist only inside these namespaces:
//! nothing is routed to the root namespace, let alone off this machine. Every
//! `ip` call runs under `timeout`, through [`super::node::in_netns`].

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cmd::{clean_command, must, run_command};
use crate::proc;

use super::node::{in_namespaces, spawn_background, NS_TIMEOUT};

/// Name of the bridge inside its namespace.
const BRIDGE: &str = "br0";

/// The bridge namespace and its holder process.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// Host pid of the `sleep infinity` that holds the namespace.
    holder: i32,
}

impl Bridge {
    /// Creates the namespace and the bridge in it. `log` receives the
    /// holder's output.
    pub(crate) fn new(log: &std::path::Path) -> Bridge {
        let mut cmd = clean_command("/usr/bin/setsid");
        cmd.args(["/usr/bin/unshare", "--net", "--", "/bin/sleep", "infinity"]);
        // Found and stopped by its working directory if the test process
        // dies without its teardown (`template::remove_stale_dirs`).
        if let Some(dir) = log.parent() {
            cmd.current_dir(dir);
        }
        let holder = spawn_background(cmd, log);
        let bridge = Bridge { holder };
        // unshare has exec'd sleep once /proc shows it (same pid).
        crate::poll("the bridge namespace holder runs sleep", NS_TIMEOUT, || {
            (proc::exe_name(holder).as_deref() == Some("sleep")).then_some(())
        });
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "link", "add", BRIDGE, "type", "bridge"],
            vec!["ip", "link", "set", BRIDGE, "up"],
        ] {
            must(bridge.ip(&args), NS_TIMEOUT);
        }
        bridge
    }

    /// Gives the bridge an address, so that threads that join its
    /// namespace (the writer, the watcher) reach the nodes and the VIP.
    pub(crate) fn add_address(&self, cidr: &str) {
        must(
            self.ip(&["ip", "addr", "add", cidr, "dev", BRIDGE]),
            NS_TIMEOUT,
        );
    }

    /// Host pid of the process holding the bridge's network namespace.
    pub(crate) fn holder(&self) -> i32 {
        self.holder
    }

    fn ip(&self, args: &[&str]) -> Command {
        in_namespaces(self.holder, &["-n"], args, NS_TIMEOUT)
    }

    /// Name of node `n`'s veth end on the bridge.
    fn port(n: usize) -> String {
        format!("v{n}")
    }

    /// Connects node `n` (whose PID 1 is `init_pid` on the host) to the
    /// bridge: its end appears as `eth0` in the node's namespace.
    pub(crate) fn attach(&self, n: usize, init_pid: i32) {
        self.wait_port_gone(n);
        let port = Self::port(n);
        let pid = init_pid.to_string();
        must(
            self.ip(&[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &pid,
            ]),
            NS_TIMEOUT,
        );
        must(
            self.ip(&["ip", "link", "set", &port, "master", BRIDGE, "up"]),
            NS_TIMEOUT,
        );
    }

    /// After a node's namespaces died, the kernel removes its veth pair
    /// asynchronously: wait for that before adding it again.
    pub(crate) fn wait_port_gone(&self, n: usize) {
        let port = Self::port(n);
        crate::poll(
            &format!("veth {port} gone from the bridge"),
            Duration::from_secs(20),
            || match run_command(self.ip(&["ip", "link", "show", &port]), NS_TIMEOUT) {
                Ok(out) if !out.success() => Some(()),
                _ => None,
            },
        );
    }

    /// Takes node `n`'s bridge port down (`up == false`) or up again: a
    /// network partition that leaves the node itself running.
    pub(crate) fn set_port(&self, n: usize, up: bool) {
        let port = Self::port(n);
        let state = if up { "up" } else { "down" };
        must(self.ip(&["ip", "link", "set", &port, state]), NS_TIMEOUT);
    }

    /// Kills the holder (the namespace, bridge and remaining ports go with
    /// it) and waits until it is reaped. Never panics.
    pub(crate) fn stop(&mut self) -> Vec<String> {
        if self.holder <= 0 {
            return Vec::new();
        }
        let pid = std::mem::replace(&mut self.holder, 0);
        proc::signal(pid, Signal::SIGKILL);
        if proc::wait_reaped(pid, Duration::from_secs(10)) {
            Vec::new()
        } else {
            vec![format!(
                "bridge holder (pid {pid}) still there after SIGKILL"
            )]
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for line in self.stop() {
            eprintln!("harness: {line}");
        }
    }
}
