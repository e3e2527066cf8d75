//! The environment Pacemaker gives an agent, read once.
//!
//! Parameters arrive as `OCF_RESKEY_<name>`, meta attributes as
//! `OCF_RESKEY_CRM_meta_<name>` (intervals and timeouts in milliseconds).
//! Malformed meta values never abort an action: they count as unset and the
//! caller falls back to a default.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::time::Duration;

use crate::cluster::{Cluster, CIB_FILE_ENV};

use super::notify::{Notify, TransitionLists};

/// Prefix of parameters.
pub const PARAM_PREFIX: &str = "OCF_RESKEY_";
/// Prefix of meta attributes, after [`PARAM_PREFIX`].
pub const META_PREFIX: &str = "CRM_meta_";
/// The resource instance name (for clones, possibly with a `:N` suffix).
pub const RESOURCE_INSTANCE: &str = "OCF_RESOURCE_INSTANCE";
/// Check depth for monitor.
pub const CHECK_LEVEL: &str = "OCF_CHECK_LEVEL";
/// Set by ocf-tester while it probes with "all binaries missing".
pub const TESTER_FAIL_HAVE_BINARY: &str = "OCF_TESTER_FAIL_HAVE_BINARY";
/// Pacemaker's debug switch, also set by `ocf-tester -d`.
pub const HA_DEBUG: &str = "HA_debug";

/// Meta attribute names (after `OCF_RESKEY_CRM_meta_`).
pub mod meta {
    /// Operation interval, milliseconds; 0 for a probe.
    pub const INTERVAL: &str = "interval";
    /// Operation timeout, milliseconds.
    pub const TIMEOUT: &str = "timeout";
    /// The node the operation runs on.
    pub const ON_NODE: &str = "on_node";
    /// Number of clone instances.
    pub const CLONE_MAX: &str = "clone_max";
    /// Number of promoted instances allowed.
    pub const PROMOTED_MAX: &str = "promoted_max";
    /// Legacy name of [`PROMOTED_MAX`].
    pub const MASTER_MAX: &str = "master_max";
    /// Whether clone notifications are enabled.
    pub const NOTIFY: &str = "notify";
}

/// What Pacemaker told this invocation. Its `Debug` shows `<redacted>` for
/// the value of every secret parameter ([`crate::config::is_secret_param`]).
#[derive(Clone, Default)]
pub struct OcfEnv {
    instance: String,
    params: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    check_level: Option<u32>,
    debug: bool,
    tester_fail_have_binary: bool,
    /// Parameters whose value was not UTF-8 (kept lossily in `params`).
    not_utf8: BTreeSet<String>,
    /// The cluster the agent works on: a CIB file when `CIB_file` is set
    /// (tests, benchmarks), else the live one.
    cluster: Cluster,
}

impl std::fmt::Debug for OcfEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params = crate::config::shown_params(&self.params);
        f.debug_struct("OcfEnv")
            .field("instance", &self.instance)
            .field("params", &params)
            .field("meta", &self.meta)
            .field("check_level", &self.check_level)
            .field("debug", &self.debug)
            .field("tester_fail_have_binary", &self.tester_fail_have_binary)
            .field("not_utf8", &self.not_utf8)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl OcfEnv {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self::from_vars_os(std::env::vars_os())
    }

    /// Builds from names and values that need not be UTF-8. A name that is
    /// not UTF-8 cannot be one of ours and is skipped. A value that is not
    /// UTF-8 is kept with its bad bytes replaced by U+FFFD, and a parameter
    /// given so is remembered ([`OcfEnv::not_utf8_params`]): validation
    /// rejects it, where dropping it would silently apply the default (a
    /// `pgdata` of another cluster).
    pub fn from_vars_os<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut not_utf8 = BTreeSet::new();
        let mut env = Self::from_vars(vars.into_iter().filter_map(|(k, v)| {
            let k = k.as_ref().to_str()?.to_string();
            let v = v.as_ref();
            let v = match v.to_str() {
                Some(v) => {
                    // The last value of a name counts, as in from_vars.
                    not_utf8.remove(&k);
                    v.to_string()
                }
                None => {
                    not_utf8.insert(k.clone());
                    v.to_string_lossy().into_owned()
                }
            };
            Some((k, v))
        }));
        env.not_utf8 = not_utf8
            .iter()
            .filter_map(|k| k.strip_prefix(PARAM_PREFIX))
            .filter(|name| !name.starts_with(META_PREFIX))
            .map(str::to_string)
            .collect();
        env
    }

    /// Builds from name/value pairs (the process environment, or a recorded
    /// one in tests).
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut env = OcfEnv::default();
        for (k, v) in vars {
            let (k, v) = (k.as_ref(), v.as_ref());
            if let Some(name) = k.strip_prefix(PARAM_PREFIX) {
                if let Some(m) = name.strip_prefix(META_PREFIX) {
                    env.meta.insert(m.to_string(), v.to_string());
                } else {
                    env.params.insert(name.to_string(), v.to_string());
                }
            } else if k == RESOURCE_INSTANCE {
                env.instance = v.trim().to_string();
            } else if k == CHECK_LEVEL {
                env.check_level = v.trim().parse().ok();
            } else if k == HA_DEBUG {
                env.debug = matches!(v.trim(), "1" | "yes" | "true" | "on");
            } else if k == CIB_FILE_ENV {
                // The one place the agent reads `CIB_file`.
                env.cluster = Cluster::from_cib_env(Some(OsStr::new(v)));
            } else if k == TESTER_FAIL_HAVE_BINARY {
                env.tester_fail_have_binary = v.trim() == "1";
            }
        }
        env
    }

    /// The cluster this invocation works on (see [`Cluster::from_cib_env`]).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// `OCF_RESOURCE_INSTANCE` as given (`stack`, or `stack:1` for a clone
    /// instance), or `stack` when unset.
    pub fn instance(&self) -> &str {
        if self.instance.is_empty() {
            "stack"
        } else {
            &self.instance
        }
    }

    /// The resource name without any clone suffix: what Pacemaker names the
    /// primitive and its promotion attribute after.
    pub fn resource(&self) -> &str {
        let inst = self.instance();
        match inst.rsplit_once(':') {
            Some((base, n)) if !base.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => inst,
        }
    }

    /// A parameter; an empty value counts as unset, as in the shell agents.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// All parameters given, for checking unknown names.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Parameters whose value was not valid UTF-8 (see
    /// [`OcfEnv::from_vars_os`]).
    pub fn not_utf8_params(&self) -> impl Iterator<Item = &str> {
        self.not_utf8.iter().map(String::as_str)
    }

    /// A meta attribute, empty counting as unset.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta
            .get(name)
            .map(String::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }

    fn meta_ms(&self, name: &str) -> Option<Duration> {
        self.meta(name)?
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
    }

    /// The operation's interval; zero or unset for a probe.
    pub fn interval(&self) -> Duration {
        self.meta_ms(meta::INTERVAL).unwrap_or(Duration::ZERO)
    }

    /// Whether this monitor is a probe (interval 0).
    pub fn is_probe(&self) -> bool {
        self.interval().is_zero()
    }

    /// The operation's timeout, when Pacemaker gave a valid one.
    pub fn timeout(&self) -> Option<Duration> {
        self.meta_ms(meta::TIMEOUT).filter(|d| !d.is_zero())
    }

    /// The node the operation runs on.
    pub fn on_node(&self) -> Option<&str> {
        self.meta(meta::ON_NODE)
    }

    /// How many instances may be promoted (`promoted_max`, legacy
    /// `master_max`), default 1.
    pub fn promoted_max(&self) -> u32 {
        self.meta(meta::PROMOTED_MAX)
            .or_else(|| self.meta(meta::MASTER_MAX))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// Whether the clone has notifications enabled.
    pub fn notify_enabled(&self) -> bool {
        matches!(self.meta(meta::NOTIFY), Some("true" | "yes" | "1" | "on"))
    }

    /// The notification this invocation carries, if any.
    pub fn notification(&self) -> Option<Notify> {
        Notify::from_meta(|name| self.meta.get(name).map(String::as_str))
    }

    /// The transition's lists that Pacemaker gives an action of a clone
    /// with `notify=true` ([`TransitionLists`]); `None` without them.
    pub fn transition(&self) -> Option<TransitionLists> {
        TransitionLists::from_meta(|name| self.meta.get(name).map(String::as_str))
    }

    /// `OCF_CHECK_LEVEL`.
    pub fn check_level(&self) -> Option<u32> {
        self.check_level
    }

    /// Whether debug logging was asked for (`HA_debug=1`).
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Whether ocf-tester is probing with "all binaries missing".
    pub fn tester_fail_have_binary(&self) -> bool {
        self.tester_fail_have_binary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> OcfEnv {
        OcfEnv::from_vars(vars.iter().copied())
    }

    #[test]
    fn the_agent_works_on_the_cib_file_its_environment_names() {
        let e = env(&[("CIB_file", "/var/tmp/cib.xml")]);
        assert_eq!(
            e.cluster(),
            &Cluster::from_cib_file("/var/tmp/cib.xml"),
            "{e:?}"
        );
        // Unset or empty, as Pacemaker's tools read it: the live cluster.
        assert_eq!(env(&[]).cluster(), &Cluster::live());
        assert_eq!(env(&[("CIB_file", "")]).cluster(), &Cluster::live());
        // Not the process environment: a test's own CIB_file changes nothing.
        assert_eq!(
            OcfEnv::from_vars([("OCF_RESKEY_pgport", "5433")]).cluster(),
            &Cluster::live()
        );
    }

    #[test]
    fn parameters_and_meta_attributes_are_told_apart() {
        let e = env(&[
            ("OCF_RESKEY_pgport", "5433"),
            ("OCF_RESKEY_CRM_meta_interval", "15000"),
            ("OCF_RESKEY_CRM_meta_timeout", "30000"),
            ("OCF_RESOURCE_INSTANCE", "stack:1"),
        ]);
        assert_eq!(e.param("pgport"), Some("5433"));
        assert_eq!(e.param("CRM_meta_interval"), None);
        assert_eq!(e.interval(), Duration::from_secs(15));
        assert_eq!(e.timeout(), Some(Duration::from_secs(30)));
        assert!(!e.is_probe());
        assert_eq!(e.resource(), "stack");
        assert_eq!(e.instance(), "stack:1");
    }

    #[test]
    fn malformed_meta_values_count_as_unset() {
        let e = env(&[
            ("OCF_RESKEY_CRM_meta_interval", "soon"),
            ("OCF_RESKEY_CRM_meta_timeout", "-5"),
            ("OCF_RESKEY_CRM_meta_promoted_max", "many"),
        ]);
        assert!(e.is_probe());
        assert_eq!(e.timeout(), None);
        assert_eq!(e.promoted_max(), 1);
    }

    #[test]
    fn empty_parameters_count_as_unset() {
        let e = env(&[("OCF_RESKEY_pgdata", "")]);
        assert_eq!(e.param("pgdata"), None);
    }

    #[test]
    fn resource_names_keep_colons_that_are_not_clone_suffixes() {
        assert_eq!(env(&[("OCF_RESOURCE_INSTANCE", "a:b")]).resource(), "a:b");
        assert_eq!(env(&[("OCF_RESOURCE_INSTANCE", ":3")]).resource(), ":3");
        assert_eq!(env(&[]).resource(), "stack");
    }

    #[test]
    fn a_parameter_that_is_not_utf8_is_kept_and_marked() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"/data\xff".to_vec());
        let e = OcfEnv::from_vars_os([
            (OsString::from("OCF_RESKEY_pgdata"), bad()),
            (OsString::from("OCF_RESKEY_CRM_meta_on_node"), bad()),
            (OsString::from_vec(b"OCF_RESKEY_\xff".to_vec()), bad()),
            (OsString::from("OCF_RESKEY_pgport"), OsString::from("5433")),
        ]);
        assert_eq!(e.param("pgdata"), Some("/data\u{fffd}"));
        assert_eq!(e.not_utf8_params().collect::<Vec<_>>(), ["pgdata"]);
        assert_eq!(e.param("pgport"), Some("5433"));
        assert_eq!(e.params().count(), 2, "a name that is not UTF-8 is skipped");
    }

    #[test]
    fn legacy_master_max_is_honoured() {
        assert_eq!(
            env(&[("OCF_RESKEY_CRM_meta_master_max", "2")]).promoted_max(),
            2
        );
    }

    #[test]
    fn debug_shows_no_secret_parameter() {
        let e = env(&[
            ("OCF_RESKEY_repl_password", "hunter2-repl"),
            ("OCF_RESKEY_redis_password", "hunter2-redis"),
            ("OCF_RESKEY_some_future_password", "hunter2-future"),
            ("OCF_RESKEY_pgdata", "/srv/pg"),
        ]);
        let shown = format!("{e:?} {e:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("\"repl_password\": \"<redacted>\""),
            "{shown}"
        );
        assert!(shown.contains("\"pgdata\": \"/srv/pg\""), "{shown}");
    }
}
