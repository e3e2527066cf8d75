//! Waiting for a condition, bounded and named (drbd-reactor's `poll_nodes`).

use std::thread;
use std::time::{Duration, Instant};

/// How long to sleep between two tries.
const INTERVAL: Duration = Duration::from_millis(100);

/// Calls `f` every 100 ms until it returns `Some`, and returns that value.
/// `f` is always called at least once, and once more at or after the
/// deadline. Panics with "timed out after Ns waiting for: `what`" if `timeout`
/// passes first, so a failing test says what never happened.
#[track_caller]
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            panic!(
                "timed out after {}s waiting for: {what}",
                timeout.as_secs_f64()
            );
        }
        thread::sleep(INTERVAL.min(timeout - elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "timed out after 0.3s waiting for: the impossible")]
    fn poll_times_out_naming_its_condition() {
        poll("the impossible", Duration::from_millis(300), || None::<()>);
    }

    #[test]
    fn poll_returns_the_first_value() {
        let mut tries = 0;
        let v = poll("three tries", Duration::from_secs(5), || {
            tries += 1;
            (tries == 3).then_some(tries * 10)
        });
        assert_eq!(v, 30);
    }

    #[test]
    fn poll_tries_once_more_at_the_deadline() {
        let start = Instant::now();
        let waited = poll("the deadline", Duration::from_millis(250), || {
            let elapsed = start.elapsed();
            (elapsed >= Duration::from_millis(250)).then_some(elapsed)
        });
        assert!(waited < Duration::from_secs(1), "{waited:?}");
    }
}
