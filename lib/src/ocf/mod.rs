//! The OCF resource-agent protocol: actions, exit codes, environment,
//! notification lists, meta-data and logging.
//!
//! Everything Pacemaker passes arrives in environment variables (OCF 1.1,
//! checked against Pacemaker 2.1.5). They are read once, into [`env::OcfEnv`],
//! and nothing else in the crate looks at the process environment.

pub mod env;
pub mod log;
pub mod metadata;
pub mod notify;

use std::fmt;

/// An OCF exit code, as Pacemaker interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OcfRc {
    /// 0: success; for monitor, running unpromoted.
    Success = 0,
    /// 1: generic error; soft recovery (restart or move).
    ErrGeneric = 1,
    /// 2: invalid arguments on this host; hard: this node is banned.
    ErrArgs = 2,
    /// 3: action not implemented.
    ErrUnimplemented = 3,
    /// 4: insufficient permissions on this host.
    ErrPerm = 4,
    /// 5: a required program or file is missing on this host.
    ErrInstalled = 5,
    /// 6: configuration invalid everywhere; fatal, stopped on every node.
    ErrConfigured = 6,
    /// 7: cleanly stopped.
    NotRunning = 7,
    /// 8: running promoted.
    RunningPromoted = 8,
    /// 9: failed while promoted.
    FailedPromoted = 9,
    /// 190: running unpromoted, degraded (no recovery).
    Degraded = 190,
    /// 191: running promoted, degraded (no recovery).
    DegradedPromoted = 191,
}

impl OcfRc {
    /// The numeric exit code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The name Pacemaker's tools print.
    pub fn name(self) -> &'static str {
        match self {
            OcfRc::Success => "OCF_SUCCESS",
            OcfRc::ErrGeneric => "OCF_ERR_GENERIC",
            OcfRc::ErrArgs => "OCF_ERR_ARGS",
            OcfRc::ErrUnimplemented => "OCF_ERR_UNIMPLEMENTED",
            OcfRc::ErrPerm => "OCF_ERR_PERM",
            OcfRc::ErrInstalled => "OCF_ERR_INSTALLED",
            OcfRc::ErrConfigured => "OCF_ERR_CONFIGURED",
            OcfRc::NotRunning => "OCF_NOT_RUNNING",
            OcfRc::RunningPromoted => "OCF_RUNNING_PROMOTED",
            OcfRc::FailedPromoted => "OCF_FAILED_PROMOTED",
            OcfRc::Degraded => "OCF_DEGRADED",
            OcfRc::DegradedPromoted => "OCF_DEGRADED_PROMOTED",
        }
    }
}

impl fmt::Display for OcfRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// The prefix Pacemaker looks for on stderr: it keeps the last such line,
/// cut at 128 characters, and crm_mon, pcs and Hawk show it.
pub const EXIT_REASON_PREFIX: &str = "ocf-exit-reason:";

/// Pacemaker cuts exit reasons at this many characters.
pub const EXIT_REASON_MAX: usize = 128;

/// Formats an exit reason line: one line, no control characters, cut so that
/// the most useful start survives Pacemaker's 128-character limit.
pub fn exit_reason_line(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed: String = one_line.trim().chars().take(EXIT_REASON_MAX).collect();
    format!("{EXIT_REASON_PREFIX}{trimmed}")
}

/// An OCF action, as named on the agent's command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print the meta-data XML.
    MetaData,
    /// Check the parameters.
    ValidateAll,
    /// Start unpromoted.
    Start,
    /// Stop.
    Stop,
    /// Report the state (probe when the interval is 0).
    Monitor,
    /// Promote.
    Promote,
    /// Demote.
    Demote,
    /// Clone notification.
    Notify,
    /// Print usage.
    Usage,
}

impl Action {
    /// Parses an action name; `status` is the LSB-era alias of monitor,
    /// `help` of usage.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "meta-data" | "meta_data" => Action::MetaData,
            "validate-all" => Action::ValidateAll,
            "start" => Action::Start,
            "stop" => Action::Stop,
            "monitor" | "status" => Action::Monitor,
            "promote" => Action::Promote,
            "demote" => Action::Demote,
            "notify" => Action::Notify,
            "usage" | "help" | "--help" | "-h" => Action::Usage,
            _ => return None,
        })
    }

    /// The action's OCF name.
    pub fn name(self) -> &'static str {
        match self {
            Action::MetaData => "meta-data",
            Action::ValidateAll => "validate-all",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
            Action::Promote => "promote",
            Action::Demote => "demote",
            Action::Notify => "notify",
            Action::Usage => "usage",
        }
    }
}

/// The usage text.
pub fn usage(program: &str) -> String {
    format!(
        "usage: {program} {{start|stop|monitor|promote|demote|notify|validate-all|meta-data|usage}}\n\
         \n\
         ocf:rapidpro:stack manages PostgreSQL and Redis replication as one\n\
         promotable clone. It is run by Pacemaker with its parameters in\n\
         OCF_RESKEY_* environment variables; see `{program} meta-data`.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_are_one_line_and_fit_pacemakers_limit() {
        let line = exit_reason_line(&format!("bad\nthing {}", "x".repeat(300)));
        assert!(line.starts_with("ocf-exit-reason:bad thing "));
        assert!(!line.contains('\n'));
        assert_eq!(line.len(), EXIT_REASON_PREFIX.len() + EXIT_REASON_MAX);
    }

    #[test]
    fn every_action_name_parses_back() {
        for a in [
            Action::MetaData,
            Action::ValidateAll,
            Action::Start,
            Action::Stop,
            Action::Monitor,
            Action::Promote,
            Action::Demote,
            Action::Notify,
            Action::Usage,
        ] {
            assert_eq!(Action::parse(a.name()), Some(a));
        }
        assert_eq!(Action::parse("migrate_to"), None);
        assert_eq!(Action::parse("reload"), None);
    }

    #[test]
    fn exit_codes_match_the_ocf_numbers() {
        assert_eq!(OcfRc::NotRunning.code(), 7);
        assert_eq!(OcfRc::FailedPromoted.code(), 9);
        assert_eq!(OcfRc::DegradedPromoted.code(), 191);
        assert_eq!(OcfRc::ErrConfigured.to_string(), "OCF_ERR_CONFIGURED (6)");
    }
}
