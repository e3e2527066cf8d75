//! `rapidproctl pgdump FILE`: a dump of the primary's data, the
//! replacement of `rapidpro-pgdump-to FILE` ("a quick backup just in case").
//!
//! - On the primary, the local server is dumped over its unix socket as
//!   `system_user` (peer authentication, as the agent connects).
//! - Elsewhere, the primary is dumped through `primary_host` (the VIP) and
//!   `primary_port` as `--user` (default `system_user`); the password comes
//!   from `PGPASSWORD` or root's `~/.pgpass`, as for any libpq client.
//! - With `--local`, this node's server is dumped whatever its role: a hot
//!   standby gives a consistent dump too, as of what it has replayed.
//!
//! `pg_dump` takes one consistent snapshot of its database by itself.
//! With `--database DB` one database is dumped (`--format plain` SQL, or
//! `custom` for `pg_restore`); without it, `pg_dumpall` dumps the roles and
//! every database as plain SQL, each database consistent on its own.
//!
//! The dump is written to `FILE.partial` (mode 0600) and renamed to `FILE`
//! once complete, so a failed dump never leaves a truncated `FILE`. An
//! existing `FILE` is refused unless `--force`.
//!
//! JSON: `file`, `bytes`, `source` (`local` or `host:port`), `role` (of
//! the server dumped, when local: `primary` or `standby`), `database`
//! (`null`: all, with `pg_dumpall`), `format`, `program`, `seconds`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::cmd::{self, Spec};
use crate::config::Config;
use crate::deadline::Deadline;

use super::postgres::{connect_local, local_config};
use super::{human_bytes, Error, Outcome};

/// The default time a dump may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The environment variable carrying the output path to the shell.
const OUT_ENV: &str = "RAPIDPROCTL_DUMP_OUT";

/// The dump's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SQL (`pg_dump -Fp`), for psql.
    Plain,
    /// pg_dump's archive (`-Fc`), for pg_restore.
    Custom,
}

/// What to dump and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The output file.
    pub file: PathBuf,
    /// Overwrite an existing file.
    pub force: bool,
    /// One database; `None`: all, with `pg_dumpall`.
    pub database: Option<String>,
    /// Plain or custom (custom needs a database).
    pub format: Format,
    /// Role for a dump through `primary_host` (default `system_user`).
    pub user: Option<String>,
    /// How long the dump may take.
    pub timeout: Duration,
    /// Dump this node's server, primary or standby.
    pub local: bool,
}

/// Where the dump comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This node is the primary: its socket, as `system_user`.
    Local,
    /// The primary at `primary_host`.
    Remote {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Role.
        user: String,
    },
}

/// The command that writes the dump to `out` (pure, for tests): a shell
/// that redirects the dump program's stdout to the file (opened by root,
/// so the directory need not be the postgres user's), the program run as
/// `system_user` with `runuser` for a local dump.
pub fn command(cfg: &Config, src: &Source, o: &Options, out: &Path) -> Result<Spec, Error> {
    if o.format == Format::Custom && o.database.is_none() {
        return Err(Error::Usage(
            "--format custom needs --database (pg_dumpall writes plain SQL only)".into(),
        ));
    }
    let program = cfg.bindir.join(if o.database.is_some() {
        "pg_dump"
    } else {
        "pg_dumpall"
    });
    let mut args: Vec<String> = Vec::new();
    let mut spec = Spec::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec \"$@\" > \"${OUT_ENV}\""))
        .arg("sh")
        .env(OUT_ENV, out)
        .env("PGCONNECT_TIMEOUT", "10")
        .current_dir("/")
        .timeout(o.timeout);
    match src {
        Source::Local => {
            args.extend(["/usr/sbin/runuser", "-u", &cfg.system_user, "--"].map(String::from));
            args.push(program.display().to_string());
            args.extend([
                "-h".into(),
                cfg.pghost.display().to_string(),
                "-p".into(),
                cfg.pgport.to_string(),
                "-U".into(),
                cfg.system_user.clone(),
            ]);
        }
        Source::Remote { host, port, user } => {
            // The operator's libpq settings (PGPASSWORD, PGPASSFILE,
            // PGSSLMODE...) and HOME (root's ~/.pgpass), as for any libpq
            // client run from their shell: the child environment is
            // otherwise cleared (cmd.rs).
            spec = spec.inherit_prefixed("PG").inherit("HOME");
            // The agent's sslmode and sslrootcert, for libpq (through its
            // environment: -d is the database).
            let tls = &cfg.pg_tls;
            let mode = tls.effective_mode();
            spec = spec.env("PGSSLMODE", mode.as_str());
            if let (true, Some(root)) = (mode.verifies(), &tls.rootcert) {
                spec = spec.env("PGSSLROOTCERT", root);
            }
            args.push(program.display().to_string());
            args.extend([
                "-h".into(),
                host.clone(),
                "-p".into(),
                port.to_string(),
                "-U".into(),
                user.clone(),
            ]);
        }
    }
    args.push("--no-password".into());
    if let Some(db) = &o.database {
        args.extend(["-d".into(), db.clone()]);
        args.push(match o.format {
            Format::Plain => "-Fp".into(),
            Format::Custom => "-Fc".into(),
        });
    }
    spec = spec.args(args);
    Ok(spec)
}

fn partial_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// `rapidproctl pgdump FILE`.
pub fn pgdump(cluster: &Cluster, o: &Options) -> Result<Outcome, Error> {
    let started = Instant::now();
    if o.file.exists() && !o.force {
        return Err(Error::Usage(format!(
            "{} exists: choose another file or add --force",
            o.file.display()
        )));
    }
    let deadline = Deadline::after(Duration::from_secs(30));
    let cfg = local_config(cluster, &deadline);
    let local_role = match connect_local(&cfg, &deadline) {
        Ok(db) => match db.in_recovery() {
            Ok(false) => Some("primary"),
            Ok(true) => Some("standby"),
            Err(e) => {
                log::info!("local PostgreSQL: {e}");
                None
            }
        },
        Err(e) => {
            log::info!("local PostgreSQL: {e}");
            None
        }
    };
    if o.local && local_role.is_none() {
        return Err(Error::Failed(
            "--local: the local PostgreSQL does not answer".into(),
        ));
    }
    let src = if o.local || local_role == Some("primary") {
        Source::Local
    } else {
        Source::Remote {
            host: cfg.primary_host.clone(),
            port: cfg.primary_port,
            user: o.user.clone().unwrap_or(cfg.system_user.clone()),
        }
    };
    let partial = partial_path(&o.file);
    // Reserve the partial file with restrictive permissions: a dump holds
    // every row (and, from pg_dumpall, password hashes).
    let _ = std::fs::remove_file(&partial);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| Error::io(&partial, e))?;
    let spec = command(&cfg, &src, o, &partial)?;
    let program = if o.database.is_some() {
        "pg_dump"
    } else {
        "pg_dumpall"
    };
    if let Err(e) = cmd::run(&spec) {
        let _ = std::fs::remove_file(&partial);
        // The shell is only the redirection: name the dump program.
        return Err(match e {
            cmd::CommandError::Failed { status, stderr, .. } => {
                let hint = match &src {
                    Source::Remote { user, .. } if stderr.contains("password") => format!(
                        "\n(set PGPASSWORD or root's ~/.pgpass for {user}, or use --local to dump \
                         this node's own server)"
                    ),
                    _ => String::new(),
                };
                Error::Failed(format!(
                    "{program} failed ({status}): {}{hint}",
                    stderr.trim()
                ))
            }
            cmd::CommandError::TimedOut { timeout, .. } => Error::Timeout(format!(
                "{program} did not finish within {} s",
                timeout.as_secs()
            )),
            other => other.into(),
        });
    }
    std::fs::rename(&partial, &o.file).map_err(|e| Error::io(&o.file, e))?;
    let bytes = std::fs::metadata(&o.file)
        .map_err(|e| Error::io(&o.file, e))?
        .len();
    let source = match &src {
        Source::Local => "local".to_string(),
        Source::Remote { host, port, .. } => format!("{host}:{port}"),
    };
    let program = if o.database.is_some() {
        "pg_dump"
    } else {
        "pg_dumpall"
    };
    let format = match o.format {
        Format::Plain => "plain",
        Format::Custom => "custom",
    };
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "{}: {} ({} bytes), {program} of {} from {} ({format}) in {secs:.1} s\n",
        o.file.display(),
        human_bytes(bytes),
        bytes,
        o.database
            .as_deref()
            .map(|d| format!("database {d}"))
            .unwrap_or_else(|| "all databases".into()),
        if src == Source::Local {
            format!("the local {}", local_role.unwrap_or("server"))
        } else {
            format!("the primary at {source}")
        },
    );
    let json = serde_json::json!({
        "file": o.file,
        "bytes": bytes,
        "source": source,
        "role": if src == Source::Local { local_role } else { None },
        "database": o.database,
        "format": format,
        "program": program,
        "seconds": (secs * 100.0).round() / 100.0,
    });
    Ok(Outcome::ok(json, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocf::env::OcfEnv;

    fn cfg() -> Config {
        Config::from_env(&OcfEnv::from_vars([
            ("OCF_RESKEY_primary_host", "10.0.0.100"),
            ("OCF_RESKEY_pghost", "/run/postgresql"),
        ]))
        .unwrap()
    }

    fn opts(database: Option<&str>, format: Format) -> Options {
        Options {
            file: "/tmp/x.sql".into(),
            force: false,
            database: database.map(str::to_string),
            format,
            user: None,
            timeout: DEFAULT_TIMEOUT,
            local: false,
        }
    }

    #[test]
    fn a_local_dump_runs_pg_dump_as_the_postgres_user_over_the_socket() {
        let s = command(
            &cfg(),
            &Source::Local,
            &opts(Some("temba"), Format::Custom),
            Path::new("/tmp/x.partial"),
        )
        .unwrap();
        assert_eq!(
            s.display(),
            "/bin/sh -c exec \"$@\" > \"$RAPIDPROCTL_DUMP_OUT\" sh /usr/sbin/runuser -u postgres -- \
             /usr/lib/postgresql/15/bin/pg_dump -h /run/postgresql -p 5432 -U postgres --no-password \
             -d temba -Fc"
        );
    }

    #[test]
    fn a_remote_dump_of_everything_uses_pg_dumpall_through_primary_host() {
        let src = Source::Remote {
            host: "10.0.0.100".into(),
            port: 5432,
            user: "postgres".into(),
        };
        let s = command(
            &cfg(),
            &src,
            &opts(None, Format::Plain),
            Path::new("/tmp/x"),
        )
        .unwrap();
        assert!(s.display().ends_with(
            "sh /usr/lib/postgresql/15/bin/pg_dumpall -h 10.0.0.100 -p 5432 -U postgres --no-password"
        ), "{}", s.display());
    }

    #[test]
    fn a_remote_dump_gets_the_agents_sslmode_and_sslrootcert() {
        let src = Source::Remote {
            host: "10.0.0.100".into(),
            port: 5432,
            user: "postgres".into(),
        };
        let mut c = cfg();
        c.pg_tls = crate::postgres::tls::PgTls {
            mode: crate::postgres::tls::SslMode::VerifyFull,
            rootcert: Some("/etc/rapidpro/ca.crt".into()),
        };
        let s = command(&c, &src, &opts(None, Format::Plain), Path::new("/tmp/x")).unwrap();
        let debug = format!("{s:?}");
        assert!(
            debug.contains("PGSSLMODE") && debug.contains("PGSSLROOTCERT"),
            "{debug}"
        );
    }

    #[test]
    fn a_custom_format_needs_a_database() {
        let e = command(
            &cfg(),
            &Source::Local,
            &opts(None, Format::Custom),
            Path::new("/tmp/x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--database"), "{e}");
    }

    #[test]
    fn an_existing_file_is_refused_without_force() {
        let f = std::env::temp_dir().join(format!("rapidproctl-dump-{}", std::process::id()));
        std::fs::write(&f, "keep").unwrap();
        let mut o = opts(None, Format::Plain);
        o.file = f.clone();
        let e = pgdump(&Cluster::live(), &o).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "keep");
        std::fs::remove_file(&f).unwrap();
    }
}
