//! Deadlines: every external call of an action shares one budget.
//!
//! Pacemaker kills an agent whose action outlives `OCF_RESKEY_CRM_meta_timeout`
//! and records a timeout, which for a stop means fencing. So each action gets a
//! [`Deadline`] a little shorter than that timeout, and every query, connection
//! and child process takes its own timeout from what is left.

use std::time::{Duration, Instant};

/// What the agent keeps for itself out of Pacemaker's timeout: time to report
/// a clean failure (exit reason, log line) before Pacemaker kills it.
pub const SAFETY_MARGIN_FRACTION: u32 = 10;
/// Never keep less than this for the final report.
pub const MIN_MARGIN: Duration = Duration::from_millis(500);

/// A point in time after which an action must stop waiting.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        Deadline {
            at: Instant::now() + d,
        }
    }

    /// The deadline for an action whose Pacemaker timeout is `meta_timeout`
    /// (from `OCF_RESKEY_CRM_meta_timeout`; `default` when Pacemaker gave none):
    /// the timeout minus a tenth, and at least [`MIN_MARGIN`] less.
    pub fn for_action(meta_timeout: Option<Duration>, default: Duration) -> Self {
        let total = meta_timeout.unwrap_or(default);
        let margin = (total / SAFETY_MARGIN_FRACTION).max(MIN_MARGIN);
        Deadline::after(total.saturating_sub(margin))
    }

    /// Time left, zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// `d`, or what is left if that is shorter: the timeout for one call.
    pub fn cap(&self, d: Duration) -> Duration {
        d.min(self.remaining())
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_deadline_keeps_a_tenth_of_pacemakers_timeout() {
        let d = Deadline::for_action(Some(Duration::from_secs(20)), Duration::from_secs(60));
        let left = d.remaining();
        assert!(left <= Duration::from_secs(18), "{left:?}");
        assert!(left > Duration::from_millis(17_900), "{left:?}");
    }

    #[test]
    fn short_timeouts_keep_at_least_the_minimum_margin() {
        let d = Deadline::for_action(Some(Duration::from_secs(2)), Duration::from_secs(60));
        assert!(d.remaining() <= Duration::from_millis(1500));
    }

    #[test]
    fn cap_never_exceeds_what_is_left() {
        let d = Deadline::after(Duration::from_millis(100));
        assert!(d.cap(Duration::from_secs(5)) <= Duration::from_millis(100));
        assert_eq!(
            Deadline::after(Duration::from_secs(5)).cap(Duration::from_millis(1)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn a_passed_deadline_is_expired() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.expired());
        assert_eq!(d.remaining(), Duration::ZERO);
    }
}
