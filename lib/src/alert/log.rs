//! Logging for the alert agent: syslog (daemon facility) and stderr, tagged
//! `rapidpro-alert`.
//!
//! Pacemaker logs an alert agent's exit code and output when it fails, and
//! administrators grep syslog for the tag. Same shape as
//! [`crate::ocf::log::AgentLogger`], whose tag is fixed to `stack(...)`.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// The syslog tag and stderr prefix.
pub const TAG: &str = "rapidpro-alert";

/// The logger behind the `log` macros in the alert agent.
pub struct AlertLogger {
    level: LevelFilter,
    syslog: Mutex<Syslog>,
}

enum Syslog {
    Unopened,
    Open(Box<syslog::Logger<LoggerBackend, Formatter3164>>),
    Unavailable,
}

impl AlertLogger {
    /// Logs at info level, or debug when `debug`.
    pub fn new(debug: bool) -> Self {
        AlertLogger {
            level: if debug {
                LevelFilter::Debug
            } else {
                LevelFilter::Info
            },
            syslog: Mutex::new(Syslog::Unopened),
        }
    }

    /// Installs this logger for the process; a second call is ignored.
    pub fn install(self) {
        let level = self.level;
        if log::set_boxed_logger(Box::new(self)).is_ok() {
            log::set_max_level(level);
        }
    }

    fn to_syslog(&self, level: Level, msg: &str) {
        let Ok(mut state) = self.syslog.lock() else {
            return;
        };
        if let Syslog::Unopened = *state {
            let formatter = Formatter3164 {
                facility: Facility::LOG_DAEMON,
                hostname: None,
                process: TAG.to_string(),
                pid: std::process::id(),
            };
            *state = match syslog::unix(formatter) {
                Ok(l) => Syslog::Open(Box::new(l)),
                Err(_) => Syslog::Unavailable,
            };
        }
        if let Syslog::Open(l) = &mut *state {
            let _ = match level {
                Level::Error => l.err(msg),
                Level::Warn => l.warning(msg),
                Level::Info => l.info(msg),
                Level::Debug | Level::Trace => l.debug(msg),
            };
        }
    }
}

impl Log for AlertLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARNING",
            Level::Info => "INFO",
            Level::Debug | Level::Trace => "DEBUG",
        };
        let msg = format!("{level}: {}", record.args());
        let _ = writeln!(std::io::stderr().lock(), "{TAG}: {msg}");
        self.to_syslog(record.level(), &msg);
    }

    fn flush(&self) {}
}
