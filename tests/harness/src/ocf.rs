//! Names of the environment variables Pacemaker sets for an OCF agent and of
//! the agent's own parameters, each spelled once.
//!
//! The names follow the OCF resource-agent API 1.1 and Pacemaker's
//! `OCF_RESKEY_CRM_meta_*` convention; the parameter keys match
//! `rapidpro_ha::config::names` (the harness does not depend on the library,
//! so that a broken library still lets the harness build and report). A typo
//! here would otherwise hide behind the agent's defaults (drbd-reactor's
//! `monitor_inverval` is the cautionary tale in `style.md`).

/// Prefix of every resource parameter: `OCF_RESKEY_<name>`.
pub const RESKEY_PREFIX: &str = "OCF_RESKEY_";
/// Prefix of every meta attribute: `OCF_RESKEY_CRM_meta_<name>`.
pub const META_PREFIX: &str = "OCF_RESKEY_CRM_meta_";
/// Prefix of every notification variable: `OCF_RESKEY_CRM_meta_notify_<name>`.
pub const NOTIFY_PREFIX: &str = "OCF_RESKEY_CRM_meta_notify_";

/// Fixed part of the environment Pacemaker gives every action of our resource.
pub const FIXED_ENV: &[(&str, &str)] = &[
    ("OCF_ROOT", "/usr/lib/ocf"),
    ("OCF_RA_VERSION_MAJOR", "1"),
    ("OCF_RA_VERSION_MINOR", "1"),
    ("OCF_RESOURCE_TYPE", "stack"),
    ("OCF_RESOURCE_PROVIDER", "rapidpro"),
];
/// `OCF_RESOURCE_INSTANCE`: the resource (clone instance) name.
pub const RESOURCE_INSTANCE: &str = "OCF_RESOURCE_INSTANCE";

/// Meta attributes set on every action, as Pacemaker would for a promotable
/// clone with `clone-max=2 promoted-max=1 notify=true` (names without
/// [`META_PREFIX`]).
pub const DEFAULT_META: &[(&str, &str)] = &[
    (META_TIMEOUT, "60000"),
    (META_INTERVAL, "0"),
    ("clone_max", "2"),
    ("promoted_max", "1"),
    ("notify", "true"),
];
/// Meta attribute: the action timeout in milliseconds.
pub const META_TIMEOUT: &str = "timeout";
/// Meta attribute: the monitor interval in milliseconds (0 for a probe).
pub const META_INTERVAL: &str = "interval";
/// Meta attribute: the node the action runs on.
pub const META_ON_NODE: &str = "on_node";

/// `notify_type`: `pre` or `post`.
pub const NOTIFY_TYPE: &str = "type";
/// `notify_operation`: `start`, `stop`, `promote` or `demote`.
pub const NOTIFY_OPERATION: &str = "operation";
/// Every list Pacemaker (2.1+, `pcmk__create_notification_keys`) passes with a
/// notification. It sets all of them on every notification, and an empty list
/// is a single space, so [`crate::Agent::notify`] starts from that.
pub const NOTIFY_LISTS: &[&str] = &[
    "start_resource",
    "start_uname",
    "stop_resource",
    "stop_uname",
    "promote_resource",
    "promote_uname",
    "demote_resource",
    "demote_uname",
    "active_resource",
    "active_uname",
    "inactive_resource",
    "unpromoted_resource",
    "unpromoted_uname",
    "slave_resource",
    "slave_uname",
    "promoted_resource",
    "promoted_uname",
    "master_resource",
    "master_uname",
    "available_uname",
    "all_uname",
];
/// How Pacemaker spells an empty notification list.
pub const EMPTY_LIST: &str = " ";

/// Directories the agent's `PATH` always contains (Pacemaker's execd runs
/// agents with a system `PATH`; `crm_attribute` lives in `/usr/sbin`).
pub const SYSTEM_PATH: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The stderr line prefix of `ocf_exit_reason` (OCF 1.1).
pub const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";

/// Agent parameter names (without [`RESKEY_PREFIX`]): the agent's own
/// constants, so a name is spelt once.
pub use rapidpro_ha::config::names as param;
