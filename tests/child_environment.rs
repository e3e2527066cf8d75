//! The agent's children start with a cleared environment: PostgreSQL and
//! redis-server, started by the agent as Pacemaker runs it (every
//! parameter, both passwords included, in `OCF_RESKEY_*`), keep nothing of
//! the agent's environment but the search path and the locale. Before the
//! fix, both servers kept `OCF_RESKEY_repl_password` and
//! `OCF_RESKEY_redis_password` for their whole life, readable by a database
//! superuser through `/proc/self/environ` (`pg_read_binary_file`).

use rapidpro_ha_harness::{Node, Pair, REPL_PASSWORD};

use super::agent_node::{post_promote, OCF_SUCCESS};
use super::{agent, wait_streaming};

/// A value planted in the agent's own environment that no child needs.
const CANARY: &str = "SECRET_CANARY";
const CANARY_VALUE: &str = "canary-6f1d2a";
/// The Redis password given to the agent and required by both servers.
const REDIS_PASSWORD: &str = "redis-pw-93c1e0";

/// `/proc/PID/environ` as `NAME=value` strings.
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/environ: {e}"));
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Panics, showing the whole environment, if `what` holds a secret, a
/// parameter or the canary, or anything beyond the path, the locale, the
/// login variables and what PostgreSQL sets for itself.
#[track_caller]
fn assert_clean(what: &str, pid: i32) {
    let env = environ(pid);
    for v in &env {
        let (name, value) = v.split_once('=').unwrap_or((v, ""));
        assert!(
            !name.starts_with("OCF_")
                && !name.starts_with("CRM_")
                && name != CANARY
                && name != "PGPASSWORD"
                && !value.contains(REPL_PASSWORD)
                && !value.contains(REDIS_PASSWORD)
                && !value.contains(CANARY_VALUE),
            "{what} (pid {pid}) inherited {name}: {env:#?}"
        );
        let expected = matches!(
            name,
            "PATH" | "LANG" | "LANGUAGE" | "TZ" | "HOME" | "USER" | "LOGNAME"
        ) || name.starts_with("LC_")
            // Set by PostgreSQL itself (pg_ctl, the postmaster) and by the
            // shell through which pg_ctl starts it.
            || name.starts_with("PG_")
            || matches!(name, "PGDATA" | "PGSYSCONFDIR" | "PGLOCALEDIR" | "PWD");
        assert!(expected, "{what} (pid {pid}) has {name}: {env:#?}");
    }
    assert!(
        env.iter().any(|v| v.starts_with("PATH=")),
        "{what} (pid {pid}) has no PATH: {env:#?}"
    );
}

fn with_secrets(node: &Node, primary: &Node) -> rapidpro_ha_harness::Agent {
    agent(node, primary)
        .param("redis_password", REDIS_PASSWORD)
        .env(CANARY, CANARY_VALUE)
}

#[test]
fn postgres_and_redis_started_by_the_agent_inherit_no_secret() {
    let pair = Pair::new("child_environment");
    let (n1, n2) = (&pair.nodes[0], &pair.nodes[1]);
    for n in [n1, n2] {
        let mut conf = std::fs::read_to_string(&n.redis_config).unwrap();
        // set-proc-title no: otherwise redis-server writes its title over
        // the memory /proc/PID/environ shows, which then reads empty.
        conf.push_str(&format!(
            "requirepass {REDIS_PASSWORD}\nset-proc-title no\n"
        ));
        std::fs::write(&n.redis_config, conf).unwrap();
    }
    let a1 = with_secrets(n1, n1);
    assert!(a1.environment().contains_key("OCF_RESKEY_repl_password"));
    a1.run("start").assert_code(OCF_SUCCESS);
    with_secrets(n2, n1).run("start").assert_code(OCF_SUCCESS);
    with_secrets(n1, n1).run("promote").assert_code(OCF_SUCCESS);
    post_promote(&[n1, n2], n1);
    wait_streaming(n2);
    // The harness's redis-cli has no password: the agent's monitor says
    // whether the Redis link is up.
    with_secrets(n2, n1).run("monitor").assert_code(OCF_SUCCESS);
    for n in [n1, n2] {
        let pg = n.postmaster_pid().expect("a running postmaster");
        assert_clean(&format!("{}'s postmaster", n.name), pg);
        let redis = n.redis_pid().expect("a running redis-server");
        assert_clean(&format!("{}'s redis-server", n.name), redis);
    }
}
