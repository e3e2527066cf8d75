//! The quorum device's arbiter: `corosync-qnetd` on a host of its own, a set
//! of namespaces on the cluster's bridge that is not a cluster node (the
//! small third host of a two-server deployment: the SMS gateway's host or a
//! VM).
//!
//! It is built as an administrator builds one, from Debian's packages:
//! `corosync-qnetd-certutil -i` makes its certificate authority, then each
//! node's qdevice gets its certificate through the procedure of
//! corosync-qdevice-net-certutil(8), which is what `pcs quorum device add`
//! does through pcsd (the sandbox has no pcsd). TLS stays on, as in
//! production.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cmd::{clean_command, run_command, CmdOutput};
use crate::dir::make_dir;
use crate::proc;

use super::node::{in_namespaces, start_namespaces, NS_TIMEOUT, UNSHARE_HOST};

/// The init of the qnetd host: its own `/run` and `/etc/corosync`, then
/// `sleep infinity` under tini.
const QNETD_INIT: &str = r#"set -eu
hostname qnetd
mount --make-rprivate /
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/corosync-qnetd
mount --bind "$QNETD_DIR/etc-corosync" /etc/corosync
ip link set lo up
touch "$READY"
exec sleep infinity
"#;

/// The bridge port number of the qnetd host (nodes use 1 to 3).
pub(crate) const QNETD_PORT: usize = 9;
/// Host part of the qnetd host's address on the cluster network.
pub(crate) const QNETD_HOST_PART: u8 = 250;

/// The qnetd host: its namespaces' PID 1 and its directory.
#[derive(Debug)]
pub(crate) struct QnetdHost {
    dir: PathBuf,
    /// Its address on the cluster network.
    pub(crate) addr: String,
    /// `(unshare, PID 1)` while it is up.
    procs: std::sync::Mutex<Option<(i32, i32)>>,
}

impl QnetdHost {
    /// Lays out `<parent>/qnetd`; nothing runs yet.
    pub(crate) fn create(parent: &Path, addr: String) -> QnetdHost {
        let dir = parent.join("qnetd");
        make_dir(&dir, 0o755);
        make_dir(&dir.join("etc-corosync"), 0o755);
        QnetdHost {
            dir,
            addr,
            procs: std::sync::Mutex::new(None),
        }
    }

    /// Host pid of its PID 1, if up.
    pub(crate) fn init_pid(&self) -> Option<i32> {
        self.procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|(_, i)| i)
    }

    /// Starts its namespaces (not yet connected: see
    /// [`QnetdHost::start_daemon`]).
    pub(crate) fn power_on(&self) {
        let ready = self.dir.join("ready");
        let _ = fs::remove_file(&ready);
        let mut cmd = clean_command("/usr/bin/setsid");
        cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("QNETD_DIR", &self.dir)
            .env("READY", &ready)
            .current_dir(&self.dir)
            .args(UNSHARE_HOST)
            .args(["-c", QNETD_INIT]);
        let (unshare, init) = start_namespaces(cmd, &self.dir.join("init.out"), &ready, "qnetd");
        *self.procs.lock().unwrap_or_else(|e| e.into_inner()) = Some((unshare, init));
    }

    /// Runs `args` in the qnetd host.
    pub(crate) fn exec(&self, args: &[&str]) -> Result<CmdOutput, String> {
        let pid = self.init_pid().ok_or("the qnetd host is powered off")?;
        let cmd = in_namespaces(pid, &["-m", "-u", "-i", "-n", "-p"], args, NS_TIMEOUT);
        run_command(cmd, NS_TIMEOUT + Duration::from_secs(5)).map_err(|e| format!("on qnetd: {e}"))
    }

    /// Like [`QnetdHost::exec`], `Ok(stdout)` on exit 0 only; panics
    /// otherwise.
    #[track_caller]
    pub(crate) fn must(&self, args: &[&str]) -> String {
        match self.exec(args).and_then(CmdOutput::into_result) {
            Ok(out) => out,
            Err(e) => panic!("qnetd host: {args:?}: {e}"),
        }
    }

    /// Gives it its address, makes its certificate authority on first use
    /// (`corosync-qnetd-certutil -i`), and starts `corosync-qnetd` (as
    /// Debian's unit runs it: user coroqnetd, TLS on).
    pub(crate) fn start_daemon(&self, prefix: u8) {
        self.must(&[
            "ip",
            "addr",
            "add",
            &format!("{}/{prefix}", self.addr),
            "dev",
            "eth0",
        ]);
        self.must(&["ip", "link", "set", "eth0", "up"]);
        if !self.ca_cert().exists() {
            self.must(&["corosync-qnetd-certutil", "-i"]);
            // What Debian's postinst does for the host's own database:
            // qnetd runs as coroqnetd and reads it through its group.
            self.must(&["chgrp", "-R", "coroqnetd", "/etc/corosync/qnetd/nssdb"]);
            self.must(&["chmod", "-R", "g+rX", "/etc/corosync/qnetd/nssdb"]);
        }
        self.must(&["chown", "coroqnetd:coroqnetd", "/run/corosync-qnetd"]);
        // Daemonizes; tini adopts it. -d: debug log, for failing tests.
        self.must(&[
            "/usr/sbin/runuser",
            "-u",
            "coroqnetd",
            "--",
            "/usr/bin/corosync-qnetd",
        ]);
        crate::poll("corosync-qnetd answers its tool", NS_TIMEOUT, || {
            self.exec(&["corosync-qnetd-tool", "-s"])
                .ok()
                .filter(CmdOutput::success)
                .map(|_| ())
        });
    }

    /// Host path of the certificate authority's certificate, to give every
    /// node (`qnetd-cacert.crt`).
    pub(crate) fn ca_cert(&self) -> PathBuf {
        self.dir.join("etc-corosync/qnetd/nssdb/qnetd-cacert.crt")
    }

    /// Signs a node's certificate request (`corosync-qnetd-certutil -s`):
    /// `crq` is a host path; returns the host path of the certificate.
    pub(crate) fn sign(&self, crq: &Path, cluster: &str) -> PathBuf {
        let local = "/etc/corosync/qnetd/nssdb/request.crq";
        fs::copy(crq, self.dir.join("etc-corosync/qnetd/nssdb/request.crq"))
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", crq.display()));
        self.must(&["corosync-qnetd-certutil", "-s", "-c", local, "-n", cluster]);
        self.dir
            .join(format!("etc-corosync/qnetd/nssdb/cluster-{cluster}.crt"))
    }

    /// `corosync-qnetd-tool -l -v`: the clusters and clients qnetd sees.
    pub(crate) fn status(&self) -> String {
        match self.exec(&["corosync-qnetd-tool", "-l", "-v"]) {
            Ok(out) => out.stdout,
            Err(e) => e,
        }
    }

    /// Cuts its power (SIGKILL to its PID 1). Never panics.
    pub(crate) fn power_off(&self) -> Vec<String> {
        let Some((unshare, init)) = self.procs.lock().unwrap_or_else(|e| e.into_inner()).take()
        else {
            return Vec::new();
        };
        proc::signal(init, Signal::SIGKILL);
        let mut left = Vec::new();
        for (what, pid) in [("PID 1", init), ("unshare", unshare)] {
            if !proc::wait_reaped(pid, Duration::from_secs(20)) {
                left.push(format!("qnetd host: {what} (pid {pid}) still there"));
            }
        }
        left
    }
}

impl Drop for QnetdHost {
    fn drop(&mut self) {
        for line in self.power_off() {
            eprintln!("harness: {line}");
        }
    }
}
