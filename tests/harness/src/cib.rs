//! An offline CIB, for tests of the Pacemaker command-line tools
//! (`crm_attribute`, `crm_node`, `crm_mon`) without a running cluster.
//!
//! The tools read and write the file named by `CIB_file` instead of talking
//! to pacemaker-based. The file must come from `cibadmin --empty`: a
//! hand-written CIB whose `crm_feature_set` or `validate-with` does not match
//! the installed Pacemaker is rejected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::{clean_command, must};

/// The environment variable that points the Pacemaker tools at a file.
pub const CIB_FILE_ENV: &str = "CIB_file";
const CIBADMIN: &str = "/usr/sbin/cibadmin";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `<dir>/cib.xml`, an empty CIB with a `<node>` and a `<node_state>`
/// for each of `nodes` (ids 1, 2, …), and returns its path. Use it with
/// `CIB_file=<path>`, e.g. `Agent::env("CIB_file", path)`.
pub fn offline_cib(dir: &Path, nodes: &[&str]) -> PathBuf {
    let file = dir.join("cib.xml");
    let mut empty = clean_command(CIBADMIN);
    empty.arg("--empty");
    let xml = must(empty, TIMEOUT);
    crate::dir::write_file(&file, &xml, None, 0o644);
    for (i, name) in nodes.iter().enumerate() {
        let id = i + 1;
        for (section, element) in [
            ("nodes", format!(r#"<node id="{id}" uname="{name}"/>"#)),
            (
                "status",
                // Online members, as Pacemaker 2.1 records them.
                format!(
                    r#"<node_state id="{id}" uname="{name}" in_ccm="true" crmd="online" join="member" expected="member"/>"#
                ),
            ),
        ] {
            let mut create = clean_command(CIBADMIN);
            create
                .env(CIB_FILE_ENV, &file)
                .args(["-C", "-o", section, "-X", &element]);
            must(create, TIMEOUT);
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestDir;

    #[test]
    fn crm_attribute_reads_back_what_it_wrote() {
        let dir = TestDir::new("offline_cib");
        let cib = offline_cib(dir.path(), &["node1", "node2"]);
        let xml = std::fs::read_to_string(&cib).unwrap();
        assert!(xml.contains(r#"uname="node2""#), "{xml}");
        let attr = |args: &[&str]| {
            let mut c = clean_command("/usr/sbin/crm_attribute");
            c.env(CIB_FILE_ENV, &cib)
                .args(["-N", "node2", "-n", "master-stack", "-l", "reboot"])
                .args(args);
            must(c, TIMEOUT)
        };
        attr(&["-v", "7"]);
        assert!(attr(&["-G", "-q"]).trim() == "7");
    }
}
