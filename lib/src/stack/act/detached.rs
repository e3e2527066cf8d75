//! The agent run again as a long-lived helper of an action: the sync
//! watcher ([`super::watch`]) and the quorum guard ([`super::guard`]).
//!
//! Pacemaker's execd kills what an action leaves in its process group when
//! the action's timeout expires, and an action must return before its
//! timeout; a helper that outlives the action is therefore the agent's own
//! binary, run again with its own first argument, in its own session, with
//! a cleared environment, no inherited descriptor, and its order (the OCF
//! variables it needs) on its standard input: never in argv or the
//! environment, where `ps` and `/proc/PID/environ` would show a secret. A
//! lock in the state directory keeps two of a kind from running at once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;

use nix::unistd::Uid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cmd;
use crate::owned_dir::OwnedDir;
use crate::stack::{Ctx, Error};

/// The most an order on a helper's standard input may weigh.
const MAX_ORDER: u64 = 60 * 1024;

/// The variables a helper gets from the agent's environment: the OCF ones
/// (parameters, meta attributes, the instance's name), `CIB_file` and
/// `HA_debug`; of the secret parameters ([`crate::config::is_secret_param`])
/// only those named in `secrets`, which the helper needs. Pure: `vars` is
/// the agent's environment.
pub(super) fn helper_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    secrets: &[&str],
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| match k.strip_prefix("OCF_RESKEY_") {
            Some(param) => !crate::config::is_secret_param(param) || secrets.contains(&param),
            None => k.starts_with("OCF_") || k == "CIB_file" || k == "HA_debug",
        })
        .collect()
}

/// Starts the agent's binary again with `arg` as its only argument and
/// `order` on its standard input; `what` names the helper in the log.
/// Returns its process id, or `None` (logged) when it could not start.
pub(super) fn spawn_self(arg: &str, order: &impl Serialize, what: &str) -> Option<u32> {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            log::warn!("cannot start the {what}: the agent's path: {e}");
            return None;
        }
    };
    // A serde_json error names a type, never a value.
    let input = match serde_json::to_vec(order) {
        Ok(i) if i.len() as u64 <= MAX_ORDER => i,
        Ok(_) => {
            log::warn!("cannot start the {what}: its parameters are too large");
            return None;
        }
        Err(e) => {
            log::warn!("cannot start the {what}: {e}");
            return None;
        }
    };
    match cmd::spawn_detached(&cmd::Spec::new(&exe).arg(arg), &input) {
        Ok(pid) => Some(pid),
        Err(e) => {
            log::warn!("cannot start the {what}: {e}");
            None
        }
    }
}

/// The start of a helper's `main`: out of execd's session and process
/// group (a stop of the agent's group does not reach it, nor it the
/// agent's), every inherited descriptor closed, and its order read from
/// standard input, which is then `/dev/null`. `None` when the order cannot
/// be read.
pub(super) fn read_order<T: DeserializeOwned>() -> Option<T> {
    let _ = nix::unistd::setsid();
    close_inherited_fds();
    let mut input = Vec::new();
    let read = std::io::stdin().take(MAX_ORDER + 1).read_to_end(&mut input);
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    }
    read.ok()
        .filter(|n| (*n as u64) <= MAX_ORDER)
        .and_then(|_| serde_json::from_slice(&input).ok())
}

/// The helper's lock `<resource>.<kind>.lock` in the state directory,
/// under [`OwnedDir`]'s rules: `None` when another holds it.
pub(super) fn lock(
    ctx: &Ctx<'_>,
    kind: &str,
) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, Error> {
    let dir = &ctx.cfg.state_dir;
    let fail = |e: String| Error::Failed(format!("the {kind} lock in {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let owned = OwnedDir::open(dir, Uid::effective()).map_err(|e| fail(e.to_string()))?;
    owned
        .try_lock(&format!("{}.{kind}.lock", ctx.env.resource()))
        .map_err(|e| fail(e.to_string()))
}

/// Closes every descriptor but the standard three: whatever execd or the
/// agent left open without close-on-exec.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    // The directory's own descriptor is among them, closed already: EBADF.
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(OsString, OsString)> {
        [
            ("OCF_RESKEY_pgdata", "/var/lib/postgresql/15/main"),
            ("OCF_RESKEY_repl_password", "s3cret"),
            ("OCF_RESKEY_redis_password", "r3dis"),
            ("OCF_RESKEY_CRM_meta_on_node", "node1"),
            ("OCF_RESOURCE_INSTANCE", "stack:0"),
            ("OCF_ROOT", "/usr/lib/ocf"),
            ("CIB_file", "/tmp/cib.xml"),
            ("HA_debug", "1"),
            ("PGPASSWORD", "s3cret"),
            ("HOME", "/root"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .to_vec()
    }

    #[test]
    fn a_helper_gets_the_ocf_variables_but_never_a_secret_it_does_not_need() {
        let got = helper_vars(vars(), &[]);
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "CIB_file",
                "HA_debug",
                "OCF_RESKEY_CRM_meta_on_node",
                "OCF_RESKEY_pgdata",
                "OCF_RESOURCE_INSTANCE",
                "OCF_ROOT"
            ]
        );
        assert!(!got
            .values()
            .any(|v| v.contains("s3cret") || v.contains("r3dis")));
    }

    #[test]
    fn a_helper_gets_the_one_secret_it_is_given_and_no_other() {
        let got = helper_vars(vars(), &["redis_password"]);
        assert_eq!(got["OCF_RESKEY_redis_password"], "r3dis");
        assert!(!got.values().any(|v| v.contains("s3cret")));
        assert!(!got.contains_key("PGPASSWORD"));
    }
}
