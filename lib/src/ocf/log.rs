//! Logging to syslog (daemon facility) and stderr, tagged with the resource.
//!
//! Pacemaker's executor copies an agent's stderr into its own log, and
//! administrators grep syslog for `stack(<resource>)`, as for the shell
//! agents' `pgsqlms(pgsqld)` lines. The syslog socket is opened on the first
//! message only, so a quiet monitor opens nothing; when there is no syslog
//! (a bare container, a test), stderr alone is used.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// The logger behind the `log` macros for an agent invocation.
pub struct AgentLogger {
    tag: String,
    level: LevelFilter,
    syslog: Mutex<SyslogState>,
}

enum SyslogState {
    Unopened,
    Open(Box<syslog::Logger<LoggerBackend, Formatter3164>>),
    Unavailable,
}

impl AgentLogger {
    /// A logger tagging lines `stack(<instance>)`.
    pub fn new(instance: &str, debug: bool) -> Self {
        Self::with_tag(&format!("stack({instance})"), debug)
    }

    /// A logger tagging lines `tag` (e.g. `rapidpro-alert`).
    pub fn with_tag(tag: &str, debug: bool) -> Self {
        AgentLogger {
            tag: tag.to_owned(),
            level: if debug {
                LevelFilter::Debug
            } else {
                LevelFilter::Info
            },
            syslog: Mutex::new(SyslogState::Unopened),
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
        if let SyslogState::Unopened = *state {
            let formatter = Formatter3164 {
                facility: Facility::LOG_DAEMON,
                hostname: None,
                process: self.tag.clone(),
                pid: std::process::id(),
            };
            *state = match syslog::unix(formatter) {
                Ok(l) => SyslogState::Open(Box::new(l)),
                Err(_) => SyslogState::Unavailable,
            };
        }
        if let SyslogState::Open(l) = &mut *state {
            let _ = match level {
                Level::Error => l.err(msg),
                Level::Warn => l.warning(msg),
                Level::Info => l.info(msg),
                Level::Debug | Level::Trace => l.debug(msg),
            };
        }
    }
}

impl Log for AgentLogger {
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
        let _ = writeln!(std::io::stderr().lock(), "{}: {msg}", self.tag);
        self.to_syslog(record.level(), &msg);
    }

    fn flush(&self) {}
}
