//! The application tier under Pacemaker, in a real namespaced cluster: the
//! stand-in RapidPro app (`app/`: uwsgi, celery, celerybeat, nginx) as the
//! group `app` of `pcs-examples/rapidpro-cluster.pcs.sh` (sandbox variant),
//! colocated with the Promoted stack instance.

use std::time::{Duration, Instant};

use rapidpro_ha_harness::{poll, NsCluster};

use super::cluster::{
    cluster, fail_count, finish_load, start_load, steady_pair, wait_one_promoted, wait_replicating,
    SETTLE,
};

/// The app group's resources, in start order.
pub const APP_RESOURCES: [&str; 4] = ["uwsgi", "celery", "celerybeat", "nginx"];

/// The nodes where resource `id` is `Started`, as `ask` sees it.
pub fn started_on(c: &NsCluster, ask: &str, id: &str) -> Vec<String> {
    c.status(ask)
        .map(|st| {
            st.resources
                .iter()
                .filter(|r| r.id == id && r.role == "Started")
                .flat_map(|r| r.nodes.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every resource of the app group is `Started` on `node`
/// (and nowhere else), as `ask` sees it.
#[track_caller]
pub fn wait_app_on(c: &NsCluster, ask: &str, node: &str) {
    poll(
        &format!("the app group started on {node}, seen from {ask}"),
        SETTLE,
        || {
            APP_RESOURCES
                .iter()
                .all(|id| started_on(c, ask, id) == [node])
                .then_some(())
        },
    );
}

/// SIGKILL to the celery worker on `node` (its pid file, written by
/// `ocf:heartbeat:anything`); returns its pid.
#[track_caller]
fn kill_celery(c: &NsCluster, node: &str) -> String {
    c.node(node)
        .sh("pid=$(cat /run/rapidpro-standin/pcmk-celery.pid) && kill -KILL \"$pid\" && echo \"$pid\"")
        .unwrap_or_else(|e| panic!("kill celery on {node}: {e}"))
        .trim()
        .to_owned()
}

/// Queues an outgoing SMS through the virtual IP (`POST /send`) and waits
/// until celery has delivered it to the gateway sink; returns the node that
/// sent it.
#[track_caller]
fn send_through_gateway(c: &NsCluster, ask: &str, text: &str) -> String {
    let url = format!("http://{}/send", c.vip());
    let out = c
        .node(ask)
        .run(&[
            "curl",
            "-fsS",
            "--max-time",
            "10",
            "--data-urlencode",
            "to=+255700000009",
            "--data-urlencode",
            &format!("text={text}"),
            &url,
        ])
        .unwrap_or_else(|e| panic!("POST /send through the VIP: {e}"));
    assert!(out.starts_with("queued "), "POST /send answered {out:?}");
    let sent = poll(
        &format!("the gateway received {text:?}"),
        Duration::from_secs(60),
        || {
            let got: Vec<_> = c
                .gateway()
                .requests()
                .into_iter()
                .filter(|r| r.param("text").as_deref() == Some(text))
                .collect();
            (!got.is_empty()).then_some(got)
        },
    );
    // Give a duplicate the time to show up.
    std::thread::sleep(Duration::from_secs(3));
    let all: Vec<_> = c
        .gateway()
        .requests()
        .into_iter()
        .filter(|r| r.param("text").as_deref() == Some(text))
        .collect();
    assert_eq!(all.len(), 1, "{text:?} sent {} times", all.len());
    sent[0].param("node").unwrap_or_default()
}

#[test]
fn killing_celery_twice_within_90_s_moves_the_whole_stack_to_the_other_node() {
    let c = cluster("celery_twice");
    let (old, new) = steady_pair(&c);
    wait_app_on(&c, &old, &old);
    assert_eq!(send_through_gateway(&c, &old, "before the failures"), old);
    let load = start_load(&c);

    let first = Instant::now();
    let pid = kill_celery(&c, &old);
    poll(
        &format!("celery restarted on {old} after the first kill (pid {pid})"),
        SETTLE,
        || {
            let restarted = c
                .node(&old)
                .sh("cat /run/rapidpro-standin/pcmk-celery.pid")
                .ok()
                .is_some_and(|p| p.trim() != pid);
            (restarted
                && fail_count(&c, &old, "celery", &old) == Some(1)
                && started_on(&c, &old, "celery") == [old.clone()])
            .then_some(())
        },
    );
    eprintln!(
        "measured: celery killed on {old}: restarted in place after {:.2} s",
        first.elapsed().as_secs_f64()
    );

    kill_celery(&c, &old);
    let promoted = wait_one_promoted(&c, &new, Some(&new));
    assert_eq!(promoted, new, "{}", c.diagnostics());
    wait_app_on(&c, &new, &new);
    let moved = first.elapsed();
    eprintln!(
        "measured: celery killed twice on {old}: stack, VIP and app on {new} {:.2} s after the first kill",
        moved.as_secs_f64()
    );
    assert!(
        moved < Duration::from_secs(90),
        "the second failure came after failure-timeout: the test proves nothing"
    );
    assert_eq!(
        send_through_gateway(&c, &new, "after the move"),
        new,
        "outgoing SMS must be sent by the new primary's celery"
    );
    finish_load(&c, load, "celery killed twice");
}

#[test]
fn crm_script_configures_a_working_cluster_with_the_app_tier_and_alerts() {
    let c = NsCluster::builder("crmsh")
        .nodes(2)
        .agent(super::bin())
        .app(true)
        .crmsh(true)
        .alerts(&["oncall@example.org,+255700000001"])
        .sbin(env!("CARGO_BIN_EXE_rapidpro-alert"))
        .build();
    let (primary, standby) = steady_pair(&c);
    wait_app_on(&c, &primary, &primary);
    let load = start_load(&c);
    assert_eq!(
        send_through_gateway(&c, &standby, "configured by crmsh"),
        primary
    );
    poll(
        "the promotion alert by email and SMS",
        Duration::from_secs(30),
        || {
            let mail = c.alert_smtp().messages().iter().any(|m| {
                m.to.iter().any(|t| t == "oncall@example.org")
                    && m.data.contains(&format!("promoted on {primary}"))
            });
            let sms = c.alert_sms().requests().iter().any(|r| {
                r.param("to").as_deref() == Some("+255700000001")
                    && r.param("text")
                        .is_some_and(|t| t.contains(&format!("promoted on {primary}")))
            });
            (mail && sms).then_some(())
        },
    );
    finish_load(&c, load, "crmsh configuration");
}

#[test]
fn a_red_health_check_published_by_rapidproctl_moves_the_stack_away_until_green() {
    let c = NsCluster::builder("health")
        .nodes(2)
        .agent(super::bin())
        .app(true)
        .sbin(env!("CARGO_BIN_EXE_rapidproctl"))
        .build();
    let (sick, healthy) = steady_pair(&c);
    wait_app_on(&c, &sick, &sick);
    let set = c.crm(
        &sick,
        &[
            "crm_attribute",
            "--type",
            "crm_config",
            "--name",
            "node-health-strategy",
            "--update",
            "migrate-on-red",
        ],
    );
    assert!(set.success(), "{}", set.failure_message());
    let load = start_load(&c);

    // Memory "red" below 100 % available: always red, as a sick node is.
    let start = Instant::now();
    let red = c
        .node(&sick)
        .exec(
            &[
                "rapidproctl",
                "health",
                "--publish",
                "--memory-yellow",
                "100",
                "--memory-red",
                "100",
            ],
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        red.code(),
        3,
        "a red check exits 3: {}",
        red.failure_message()
    );
    assert!(red.stdout.contains("red"), "{}", red.stdout);
    wait_promoted_on(&c, &healthy);
    wait_app_on(&c, &healthy, &healthy);
    eprintln!(
        "measured: #health-memory=red on {sick}: stack, VIP and app on {healthy} after {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        started_on(&c, &healthy, "celery") == [healthy.clone()],
        "nothing may run on a red node"
    );

    // Green again: the node takes its place back as a standby.
    let green = c
        .node(&sick)
        .exec(
            &["rapidproctl", "health", "--publish"],
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(green.success(), "{}", green.failure_message());
    assert_eq!(wait_one_promoted(&c, &healthy, Some(&healthy)), healthy);
    wait_replicating(c.node(&sick));
    finish_load(&c, load, "red health");
}

/// Waits until `node` is the only Promoted node, with the VIP, whatever
/// the other nodes run (a red node runs nothing), as `node` sees it.
#[track_caller]
fn wait_promoted_on(c: &NsCluster, node: &str) {
    poll(
        &format!("{node} the only Promoted node, with the VIP"),
        SETTLE,
        || {
            let st = c.status(node).ok()?;
            let promoted = st.nodes_with_role(rapidpro_ha_harness::STACK_AGENT, "Promoted");
            let vip = st.nodes_with_role(rapidpro_ha_harness::VIP_AGENT, "Started");
            (promoted == [node] && vip == promoted).then_some(())
        },
    );
}
