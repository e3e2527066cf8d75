//! `validate-all`.

use crate::config::Config;
use crate::ocf::env::OcfEnv;
use crate::stack::{Error, Outcome};

/// `validate-all`: form of every parameter (6), then this host (5, 2, 4).
///
/// Then, as warnings only (Pacemaker must not fail a start for them), what
/// would start PostgreSQL or Redis at boot behind Pacemaker's back: enabled
/// systemd units, Debian's `start.conf` saying `auto` ([`crate::systemd`]).
/// Only local files are read: validate-all stays cheap and uses no network.
pub fn validate_all(env: &OcfEnv) -> Result<Outcome, Error> {
    let cfg = Config::from_env(env)?;
    cfg.check_host()?;
    for w in crate::systemd::verdict(&crate::systemd::observe(
        &crate::systemd::default_roots(),
        &cfg.datadir,
    )) {
        log::warn!("validate-all: {w}");
    }
    Ok(Outcome::ok())
}
