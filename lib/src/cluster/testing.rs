//! Offline CIBs for tests: a CIB XML file in a private temporary directory,
//! made and edited with the real `cibadmin`, removed on drop.
//!
//! The file is handed to each tool by a [`Cluster`] handle (`CIB_file` on
//! the child only), so tests running in parallel threads never touch the
//! process environment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cmd::{run, Output, Spec};

use super::Cluster;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A CIB file with nodes `node_names` (ids 1, 2, ...), all online.
pub(crate) struct OfflineCib {
    dir: PathBuf,
    file: PathBuf,
    nodes: Vec<String>,
}

impl OfflineCib {
    /// An empty CIB (`cibadmin --empty`) with these nodes, all members.
    #[track_caller]
    pub fn new(node_names: &[&str]) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("rapidpro-ha-cluster-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let file = dir.join("cib.xml");
        let empty = run(&Spec::new("cibadmin")
            .arg("--empty")
            .timeout(Duration::from_secs(10)))
        .expect("cibadmin --empty (is pacemaker-cli-utils installed?)");
        std::fs::write(&file, empty.stdout).expect("write the CIB file");
        let cib = OfflineCib {
            dir,
            file,
            nodes: node_names.iter().map(|n| n.to_string()).collect(),
        };
        for (i, name) in node_names.iter().enumerate() {
            let id = i + 1;
            cib.cibadmin(&[
                "--create",
                "--scope=nodes",
                &format!("--xml-text=<node id=\"{id}\" uname=\"{name}\"/>"),
            ]);
            cib.cibadmin(&[
                "--create",
                "--scope=status",
                &format!(
                    "--xml-text=<node_state id=\"{id}\" uname=\"{name}\" in_ccm=\"true\" crmd=\"online\" join=\"member\" expected=\"member\"/>"
                ),
            ]);
        }
        cib
    }

    /// The CIB file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// A handle on this file, for the functions under test.
    pub fn cluster(&self) -> Cluster {
        Cluster::from_cib_file(&self.file)
    }

    /// Marks `node` as a member with a running controller, or as down.
    #[track_caller]
    pub fn set_node_state(&self, node: &str, online: bool) {
        let i = self
            .nodes
            .iter()
            .position(|n| n == node)
            .expect("a node of this CIB");
        let (ccm, crmd) = if online {
            ("true", "online")
        } else {
            ("false", "offline")
        };
        self.cibadmin(&[
            "--modify",
            "--scope=status",
            &format!(
                "--xml-text=<node_state id=\"{}\" in_ccm=\"{ccm}\" crmd=\"{crmd}\"/>",
                i + 1
            ),
        ]);
    }

    /// Runs a Pacemaker tool on this CIB and returns its output, panicking
    /// with its stderr when it fails.
    #[track_caller]
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        let spec = self
            .cluster()
            .tool(program, Duration::from_secs(10))
            .args(args);
        match run(&spec) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }

    #[track_caller]
    fn cibadmin(&self, args: &[&str]) -> Output {
        self.tool("cibadmin", args)
    }
}

impl Drop for OfflineCib {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
