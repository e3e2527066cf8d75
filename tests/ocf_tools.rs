//! The agent as Pacemaker's own tools see it: meta-data validation,
//! validate-all on bad input, ocf-tester.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rapidpro_ha_harness::{free_port, Pair};

use super::bin;

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

#[test]
fn meta_data_equals_the_checked_in_file_and_validates() {
    let out = run(Command::new(bin()).arg("meta-data"));
    assert!(out.status.success());
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../ocf-metadata/stack.xml");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(file).unwrap(),
        "regenerate ocf-metadata/stack.xml with `rapidpro-agent meta-data`"
    );
    // ocf-tester's own check: DTD from the DOCTYPE line, read on stdin
    // from resource-agents' directory.
    let dtd = run(Command::new("sh")
        .arg("-c")
        .arg(format!("xmllint --noout --valid - < {file}"))
        .current_dir("/usr/share/resource-agents"));
    assert!(
        dtd.status.success(),
        "{}",
        String::from_utf8_lossy(&dtd.stderr)
    );
    let rng = run(Command::new("xmllint").args([
        "--noout",
        "--relaxng",
        "/usr/share/resource-agents/metadata.rng",
        file,
    ]));
    assert!(
        rng.status.success(),
        "{}",
        String::from_utf8_lossy(&rng.stderr)
    );
}

#[test]
fn an_unknown_action_is_unimplemented_and_says_so() {
    let out = run(Command::new(bin()).arg("migrate_to"));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ocf-exit-reason:action \"migrate_to\""));
}

#[test]
fn validate_all_names_every_malformed_parameter() {
    let pair = Pair::new("validate");
    let n1 = &pair.nodes[0];
    n1.agent(bin()).run("validate-all").assert_code(0);
    let cases: &[(&str, &str)] = &[
        ("pgport", "0"),
        ("pgport", "not-a-port"),
        ("primary_port", "65536"),
        ("redis_port", "-1"),
        ("redis_primary_port", "x"),
        ("pgdata", "relative"),
        ("datadir", "relative"),
        ("bindir", "bin"),
        ("pghost", "sock"),
        ("pg_logfile", "pg.log"),
        ("redis_server", "redis-server"),
        ("redis_config", "redis.conf"),
        ("redis_socket", "redis.sock"),
        ("state_dir", "run"),
        ("primary_host", "two words"),
        ("repl_user", "o'brien"),
        ("system_user", "a b"),
        ("redis_user", "a;b"),
        ("maxlag", "-5"),
        ("sync_replication", "sometimes"),
        ("rewind", "maybe"),
        ("connect_timeout", "0"),
        ("query_timeout", "forever"),
    ];
    for (name, value) in cases {
        let out = n1.agent(bin()).param(name, *value).run("validate-all");
        out.assert_code(6);
        out.assert_reason_contains(&format!("parameter {name}="));
        out.assert_reason_contains("expected");
    }
    let out = n1
        .agent(bin())
        .unset_param("primary_host")
        .run("validate-all");
    out.assert_code(6);
    out.assert_reason_contains("primary_host");
}

#[test]
fn validate_all_reports_host_problems_with_their_codes() {
    let pair = Pair::new("validate_host");
    let n1 = &pair.nodes[0];
    let out = n1
        .agent(bin())
        .param("bindir", "/nonexistent/bin")
        .run("validate-all");
    out.assert_code(5);
    out.assert_reason_contains("bindir");
    let out = n1
        .agent(bin())
        .param("redis_server", "/nonexistent/redis-server")
        .run("validate-all");
    out.assert_code(5);
    out.assert_reason_contains("redis_server");
    let out = n1
        .agent(bin())
        .param("system_user", "no-such-user")
        .run("validate-all");
    out.assert_code(2);
    out.assert_reason_contains("system_user");
    let out = n1
        .agent(bin())
        .param("pgdata", "/nonexistent/pgdata")
        .run("validate-all");
    out.assert_code(2);
    out.assert_reason_contains("pgdata");
    std::fs::set_permissions(&n1.pgdata, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = n1.agent(bin()).run("validate-all");
    out.assert_code(4);
    out.assert_reason_contains("0700");
    std::fs::set_permissions(&n1.pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&n1.pgdata, Some(0), None).unwrap();
    let out = n1.agent(bin()).run("validate-all");
    out.assert_code(4);
    out.assert_reason_contains("owned by");
}

#[test]
fn ocf_tester_passes_against_the_installed_agent_and_real_servers() {
    let pair = Pair::new("ocf_tester");
    let n1 = &pair.nodes[0];
    // Installed as Pacemaker would find it: <OCF root>/resource.d/rapidpro/stack.
    let root = pair.dir.path().join("ocf");
    let agent_dir = root.join("resource.d/rapidpro");
    std::fs::create_dir_all(&agent_dir).unwrap();
    for d in [&root, &root.join("resource.d"), &agent_dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let installed = agent_dir.join("stack");
    std::fs::copy(bin(), &installed).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();

    // No primary answers at primary_host: promote and demote cycles are
    // legal on a lone node.
    let mut cmd = Command::new("ocf-tester");
    cmd.arg("-n").arg("stack");
    for (k, v) in n1.params() {
        let v = match k.as_str() {
            "primary_port" => free_port().to_string(),
            _ => v,
        };
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    cmd.arg(&installed)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("passed all tests"),
        "ocf-tester failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(n1.postmaster_pid().is_none() && n1.redis_pid().is_none());
}
