//! The stand-in RapidPro app (`app/` in the project) in a namespaced
//! cluster: every node gets its own `standin.env` and `nginx.conf`, written
//! by the app's own `bin/rapidpro-standin-setup` into the node's
//! `etc-standin/` directory, which the node's init script bind-mounts at
//! [`STANDIN_ETC`]. Pacemaker then runs the app tier of
//! `pcs-examples/rapidpro-cluster.pcs.sh` (`VARIANT=sandbox`, `APP=yes`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::node::NsNode;
use super::WORKSPACE;
use crate::cmd::{clean_command, must};
use crate::dir::make_dir;
use crate::workload::{WRITER_PASSWORD, WRITER_USER};

/// The app's configuration directory inside every node.
pub const STANDIN_ETC: &str = "/etc/rapidpro-standin";
/// The uwsgi socket of the app inside every node (what `check-tcp` probes).
pub const UWSGI_SOCKET: &str = "127.0.0.1:3031";
/// The python environment with celery (`scripts/install-deps`).
pub const STANDIN_VENV: &str = "/opt/rapidpro-ha-standin/venv";

/// The project's `app/` directory.
pub fn app_dir() -> PathBuf {
    Path::new(WORKSPACE).join("app")
}

/// What a cluster with the app tier needs on this machine.
pub(crate) fn preflight() {
    let app = app_dir();
    for p in [
        app.join("bin/rapidpro-standin-setup"),
        app.join("bin/rapidpro-standin-uwsgi"),
        app.join("bin/rapidpro-standin-celery"),
        app.join("bin/rapidpro-standin-celerybeat"),
        app.join("bin/check-tcp"),
    ] {
        assert!(p.exists(), "{} is missing", p.display());
    }
    for p in [
        "/usr/sbin/nginx",
        "/usr/bin/uwsgi",
        "/usr/lib/uwsgi/plugins/python3_plugin.so",
        "/usr/lib/ocf/resource.d/heartbeat/anything",
        "/usr/lib/ocf/resource.d/heartbeat/nginx",
        "/usr/bin/curl",
    ] {
        assert!(
            Path::new(p).exists(),
            "{p} is missing: run scripts/install-deps (nginx, uwsgi, uwsgi-plugin-python3, curl)"
        );
    }
    let celery = Path::new(STANDIN_VENV).join("bin/celery");
    assert!(
        celery.exists(),
        "{} is missing: run scripts/install-deps (the stand-in app's celery venv)",
        celery.display()
    );
}

/// Writes node `n`'s app configuration: PostgreSQL and Redis on the node's
/// own loopback (the app runs where the Promoted instance runs), nginx on
/// port 80 of the node's network namespace, outgoing SMS to `gateway_url`.
pub(crate) fn configure_node(n: &NsNode, gateway_url: &str) {
    let out = n.dir.join("etc-standin");
    make_dir(&out, 0o755);
    let mut cmd = clean_command(app_dir().join("bin/rapidpro-standin-setup"));
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("STANDIN_PG_HOST", "127.0.0.1")
        .env("STANDIN_PG_PORT", "5432")
        .env("STANDIN_PG_USER", WRITER_USER)
        .env("STANDIN_PG_PASSWORD", WRITER_PASSWORD)
        .env("STANDIN_PG_DB", "postgres")
        .env("STANDIN_REDIS_URL", "redis://127.0.0.1:6379/0")
        .env("STANDIN_UWSGI_SOCKET", UWSGI_SOCKET)
        .env("STANDIN_HTTP_LISTEN", "80")
        .env("STANDIN_GATEWAY_URL", gateway_url)
        .env("STANDIN_RUN_DIR", "/run/rapidpro-standin")
        .env("STANDIN_LOG_DIR", "/var/log/rapidpro-standin")
        .arg(&out);
    must(cmd, Duration::from_secs(20));
}

// The cluster is `Debug`; so are the sinks it holds (by address).
impl std::fmt::Debug for crate::sinks::HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpSink({})", self.url())
    }
}

impl std::fmt::Debug for crate::sinks::SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SmtpSink({})", self.addr())
    }
}
