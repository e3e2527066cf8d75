use super::*;

/// `corosync-quorumtool -s -p` on node1 with both devices voting, as
/// corosync 3.1.7 prints it (built from `tools/corosync-quorumtool.c`; to
/// be replaced by a recording from the test cluster).
const QT_VOTING: &str = include_str!("../fixtures/quorumtool-qdevice.txt");
/// node1's device alive without a vote, node2's not registered.
const QT_LOST: &str = include_str!("../fixtures/quorumtool-qdevice-lost.txt");
/// A `two_node` cluster without a device.
const QT_TWO_NODE: &str = include_str!("../fixtures/quorumtool-two-node.txt");
/// `corosync-qdevice-tool -sv`, connected, heuristics pass, vote cast, as
/// corosync-qdevice 3.0.3 prints it (built from `qdevice-ipc-cmd.c` and
/// `qdevice-net-ipc-cmd.c`).
const QD_CONNECTED: &str = include_str!("../fixtures/qdevice-tool-connected.txt");
/// The same daemon when qnetd does not answer and its heuristics fail.
const QD_FAILED: &str = include_str!("../fixtures/qdevice-tool-connect-failed.txt");
const CONF_QDEVICE: &str = include_str!("../fixtures/corosync-qdevice.conf");
const CONF_TWO_NODE: &str = include_str!("../fixtures/corosync.conf");

#[test]
fn the_daemon_status_gives_connection_heuristics_and_vote() {
    let s = parse_daemon_status(QD_CONNECTED).unwrap();
    assert_eq!(
        s,
        DaemonStatus {
            model: Some("Net".into()),
            node_id: Some(1),
            heuristics_mode: Some(HeuristicsMode::On),
            qnetd_host: Some("10.200.200.3:5403".into()),
            algorithm: Some(Algorithm::Ffsplit),
            tie_breaker: Some("Node with lowest node ID".into()),
            poll_timer: Some(PollTimer::CastVote),
            connection: Some(Connection::Connected),
            heuristics_result: Some(HeuristicsResult::Pass),
        }
    );
    let f = parse_daemon_status(QD_FAILED).unwrap();
    assert_eq!(f.connection, Some(Connection::ConnectFailed));
    assert_eq!(f.poll_timer, Some(PollTimer::Stopped));
    assert_eq!(f.heuristics_result, Some(HeuristicsResult::Fail));
}

#[test]
fn the_daemon_status_is_read_with_the_man_pages_spaces_too() {
    // corosync-qdevice-tool(8) shows the output aligned with spaces.
    let text = QD_CONNECTED.replace('\t', "    ").replace(
        "Poll timer running:    Yes (cast vote)",
        "Poll timer running:    Yes",
    );
    let s = parse_daemon_status(&text).unwrap();
    assert_eq!(s.connection, Some(Connection::Connected));
    assert_eq!(s.poll_timer, Some(PollTimer::NoVote));
    // "HB interval" of the generic section is not the net one; neither is
    // "State = member" of an indented node list line a State.
    assert_eq!(s.node_id, Some(1));
}

#[test]
fn a_daemon_status_without_its_header_is_an_error() {
    assert!(parse_daemon_status("Error: something\n").is_err());
    assert!(parse_daemon_status("").is_err());
}

#[test]
fn heuristics_results_take_the_latest_word() {
    assert_eq!(
        HeuristicsResult::parse("Fail (regular: Pass, membership: Fail, connect: Fail)"),
        HeuristicsResult::Fail
    );
    assert_eq!(
        HeuristicsResult::parse("Undefined"),
        HeuristicsResult::Undefined
    );
    assert_eq!(
        HeuristicsResult::parse("Maybe"),
        HeuristicsResult::Other("Maybe".into())
    );
}

#[test]
fn the_quorum_status_gives_each_members_device_flags() {
    let q = parse_quorum_status(QT_VOTING).unwrap();
    assert!(q.quorate && q.device_registered && !q.two_node);
    assert_eq!((q.expected_votes, q.total_votes), (Some(3), Some(3)));
    assert_eq!(q.device_votes, Some(1));
    assert_eq!(
        q.members,
        [
            Member {
                nodeid: 1,
                votes: 1,
                device: MemberDevice::Registered {
                    alive: true,
                    vote_cast: true,
                    master_wins: false
                },
                name: "node1".into(),
                local: true,
            },
            Member {
                nodeid: 2,
                votes: 1,
                device: MemberDevice::Registered {
                    alive: true,
                    vote_cast: true,
                    master_wins: false
                },
                name: "node2".into(),
                local: false,
            },
        ]
    );
    let lost = parse_quorum_status(QT_LOST).unwrap();
    assert_eq!(lost.device_votes, Some(0));
    assert_eq!(
        lost.members[0].device,
        MemberDevice::Registered {
            alive: true,
            vote_cast: false,
            master_wins: false
        }
    );
    assert_eq!(lost.members[1].device, MemberDevice::NotRegistered);
    let two = parse_quorum_status(QT_TWO_NODE).unwrap();
    assert!(two.two_node && !two.device_registered);
    assert!(two.members[1].local);
    assert_eq!(two.device_votes, None);
}

#[test]
fn a_membership_table_without_the_device_column_means_no_device() {
    // Without -p the column is printed only when a device is registered.
    let text = QT_TWO_NODE
        .replace("    Qdevice Name", " Name")
        .replace("        NR ", "");
    let q = parse_quorum_status(&text).unwrap();
    assert_eq!(q.members.len(), 2);
    assert_eq!(q.members[0].name, "node1");
    assert_eq!(q.members[0].device, MemberDevice::NotRegistered);
}

#[test]
fn a_quorum_status_without_quorate_or_with_odd_flags_is_an_error() {
    assert!(parse_quorum_status("Cannot initialize QUORUM service\n").is_err());
    let odd = QT_VOTING.replace("A,V,NMW node2", "X,V,NMW node2");
    assert!(parse_quorum_status(&odd).is_err());
}

fn quorum(conf: &str) -> Result<QuorumConfig, String> {
    Ok(corosync::parse_quorum(conf).unwrap())
}

fn running(text: &str) -> Option<Daemon> {
    Some(Daemon::Running(parse_daemon_status(text).unwrap()))
}

fn votes(text: &str) -> Option<Votequorum> {
    Some(Votequorum::Answered(parse_quorum_status(text).unwrap()))
}

/// A healthy two-node cluster with an arbiter, seen from node1.
fn healthy() -> Observed {
    Observed {
        config: quorum(CONF_QDEVICE),
        nodes: 2,
        daemon: running(QD_CONNECTED),
        votequorum: votes(QT_VOTING),
    }
}

fn statuses(v: &[Check]) -> Vec<(&str, Status)> {
    v.iter().map(|c| (c.check.as_str(), c.status)).collect()
}

fn detail<'a>(v: &'a [Check], name: &str) -> &'a str {
    &v.iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name}: {v:?}"))
        .detail
}

#[test]
fn a_healthy_arbiter_passes_every_check() {
    let v = verdicts(&healthy());
    assert_eq!(
        statuses(&v),
        [
            ("quorum device", Status::Ok),
            ("qdevice", Status::Ok),
            ("qnetd connection", Status::Ok),
            ("qdevice heuristics", Status::Ok),
            ("qdevice vote", Status::Ok),
        ]
    );
    assert_eq!(
        detail(&v, "quorum device"),
        "net, qnetd 10.200.200.3:5403, ffsplit, tie_breaker lowest, heuristics on (gateway)"
    );
    assert_eq!(
        detail(&v, "qnetd connection"),
        "connected to 10.200.200.3:5403 (ffsplit, tie-breaker: Node with lowest node ID)"
    );
    assert_eq!(detail(&v, "qdevice heuristics"), "pass (exec_gateway)");
    assert_eq!(
        detail(&v, "qdevice vote"),
        "cast on node1, node2; quorate with 3 of 3 expected votes"
    );
}

#[test]
fn two_nodes_without_a_device_are_warned_with_the_reason_and_the_fix() {
    let o = Observed {
        config: quorum(CONF_TWO_NODE),
        nodes: 2,
        daemon: None,
        votequorum: None,
    };
    let v = verdicts(&o);
    assert_eq!(statuses(&v), [("quorum device", Status::Warning)]);
    let d = detail(&v, "quorum device");
    for part in [
        "two_node",
        "wins the fence race and powers off the healthy standby",
        "RapidPro stays down until the link heals",
        "QNETD_HOST",
        "pcs-examples/rapidpro-cluster.pcs.sh",
        "Two servers and a network split",
    ] {
        assert!(d.contains(part), "{part}: {d}");
    }
}

#[test]
fn the_decision_table_of_the_configuration() {
    let dev = |extra: &str| {
        format!(
            "quorum {{\n{extra}\n device {{\n  model: net\n  net {{\n   host: q\n  }}\n  \
             heuristics {{\n   mode: on\n   exec_gw: ping -c1 gw\n  }}\n }}\n}}\n"
        )
    };
    // (corosync.conf, nodes, status, a word of the detail)
    let table: Vec<(String, usize, Status, &str)> = vec![
        (dev(""), 2, Status::Ok, "net, qnetd q:5403, ffsplit"),
        ("quorum {\n}\n".into(), 3, Status::Ok, "majority"),
        (
            "quorum {\n}\n".into(),
            2,
            Status::Warning,
            "losing either node",
        ),
        (
            "quorum {\n two_node: 1\n}\n".into(),
            2,
            Status::Warning,
            "fence race",
        ),
        (dev(" two_node: 1"), 2, Status::Error, "refuses two_node"),
        (
            dev(" auto_tie_breaker: 1"),
            2,
            Status::Error,
            "disables the quorum device",
        ),
        (
            dev("").replace("model: net", "model: disk"),
            2,
            Status::Error,
            "supports only net",
        ),
        (
            dev("").replace("model: net\n", ""),
            2,
            Status::Error,
            "model is missing",
        ),
        (
            dev("").replace("host: q", "port: 5403"),
            2,
            Status::Error,
            "host is missing",
        ),
        (
            dev("").replace("host: q", "host: q\n   algorithm: test"),
            2,
            Status::Warning,
            "meant for developers",
        ),
        (
            dev("").replace("host: q", "host: q\n   algorithm: ffs"),
            2,
            Status::Error,
            "unknown",
        ),
        (
            dev("").replace("model: net", "model: net\n  votes: 2"),
            2,
            Status::Error,
            "votes: 1",
        ),
        (
            dev("").replace("mode: on", "mode: off"),
            2,
            Status::Warning,
            "heuristics are off",
        ),
        (
            dev("").replace("exec_gw: ping -c1 gw", ""),
            2,
            Status::Warning,
            "no exec_NAME",
        ),
    ];
    for (conf, nodes, want, word) in table {
        let o = Observed {
            config: quorum(&conf),
            nodes,
            daemon: None,
            votequorum: None,
        };
        let c = config_check(&o);
        assert_eq!(c.status, want, "{conf}: {c:?}");
        assert!(c.detail.contains(word), "{word}: {c:?}");
    }
}

#[test]
fn an_unreadable_corosync_conf_is_an_error_not_a_silence() {
    let o = Observed {
        config: Err("/etc/corosync/corosync.conf: Permission denied".into()),
        nodes: 0,
        daemon: None,
        votequorum: None,
    };
    let v = verdicts(&o);
    assert_eq!(statuses(&v), [("quorum device", Status::Error)]);
    assert!(detail(&v, "quorum device").contains("cannot tell"));
}

#[test]
fn the_decision_table_of_this_nodes_daemon() {
    // (daemon, check, status, a word of its detail)
    let table: Vec<(Daemon, &str, Status, &str)> = vec![
        (
            Daemon::NotInstalled,
            "qdevice",
            Status::Error,
            "apt install corosync-qdevice",
        ),
        (
            Daemon::NotRunning(
                "exit code 3: Can't connect to QDevice socket (is QDevice running?)".into(),
            ),
            "qdevice",
            Status::Error,
            "systemctl enable --now corosync-qdevice",
        ),
        (
            Daemon::Unknown("corosync-qdevice-tool timed out after 5.0 s".into()),
            "qdevice",
            Status::Error,
            "cannot tell",
        ),
        (
            Daemon::Running(parse_daemon_status(QD_FAILED).unwrap()),
            "qnetd connection",
            Status::Error,
            "connect_failed to qnetd at 10.200.200.3:5403",
        ),
        (
            Daemon::Running(parse_daemon_status(QD_FAILED).unwrap()),
            "qdevice heuristics",
            Status::Error,
            "fail on this node: exec_gateway",
        ),
        (
            Daemon::Running(parse_daemon_status(&QD_CONNECTED.replace("State:\t\t\tConnected\n", ""))
                .unwrap()),
            "qnetd connection",
            Status::Error,
            "cannot tell",
        ),
        (
            Daemon::Running(
                parse_daemon_status(&QD_CONNECTED.replace(
                    "Heuristics result:\tPass (regular: Pass, membership: Pass, connect: Pass)",
                    "Heuristics result:\tUndefined (regular: Undefined, membership: Undefined, connect: Undefined)",
                ))
                .unwrap(),
            ),
            "qdevice heuristics",
            Status::Warning,
            "cannot tell",
        ),
        (
            Daemon::Running(
                parse_daemon_status(&QD_CONNECTED.replace("Heuristics:\t\tEnabled", "Heuristics:\t\tDisabled"))
                    .unwrap(),
            ),
            "qdevice heuristics",
            Status::Warning,
            "systemctl restart corosync-qdevice",
        ),
    ];
    for (daemon, name, want, word) in table {
        let o = Observed {
            daemon: Some(daemon.clone()),
            ..healthy()
        };
        let v = verdicts(&o);
        let c = v
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("{daemon:?}: no {name} in {v:?}"));
        assert_eq!(c.status, want, "{daemon:?}: {c:?}");
        assert!(c.detail.contains(word), "{word}: {c:?}");
    }
}

#[test]
fn a_daemon_that_is_not_running_is_one_finding_not_four() {
    let o = Observed {
        daemon: Some(Daemon::NotRunning("exit code 3".into())),
        votequorum: votes(QT_LOST),
        ..healthy()
    };
    let v = verdicts(&o);
    assert_eq!(
        statuses(&v),
        [
            ("quorum device", Status::Ok),
            ("qdevice", Status::Error),
            ("qdevice vote", Status::Error),
        ],
        "{v:?}"
    );
}

#[test]
fn the_decision_table_of_the_votes() {
    let vq = |q: QuorumStatus| Votequorum::Answered(q);
    let ok = parse_quorum_status(QT_VOTING).unwrap();
    // (votequorum, status, a word of the detail)
    let table: Vec<(Votequorum, Status, &str)> = vec![
        (vq(ok.clone()), Status::Ok, "cast on node1, node2"),
        (
            vq(parse_quorum_status(QT_LOST).unwrap()),
            Status::Error,
            "node1: its device casts no vote",
        ),
        (
            vq(parse_quorum_status(QT_LOST).unwrap()),
            Status::Error,
            "node2: no quorum device registered",
        ),
        (
            vq(QuorumStatus {
                device_registered: false,
                ..ok.clone()
            }),
            Status::Error,
            "no Qdevice flag",
        ),
        (
            vq(QuorumStatus {
                quorate: false,
                ..ok.clone()
            }),
            Status::Error,
            "not quorate",
        ),
        (
            vq(QuorumStatus {
                members: vec![Member {
                    device: MemberDevice::Registered {
                        alive: false,
                        vote_cast: true,
                        master_wins: false,
                    },
                    ..ok.members[0].clone()
                }],
                ..ok.clone()
            }),
            Status::Error,
            "node1: its corosync-qdevice does not poll",
        ),
        (
            vq(QuorumStatus {
                members: vec![],
                ..ok.clone()
            }),
            Status::Error,
            "no member",
        ),
        (Votequorum::NotInstalled, Status::Error, "cannot tell"),
        (
            Votequorum::Unknown("exit code 1: Cannot initialize QUORUM service".into()),
            Status::Error,
            "Cannot initialize QUORUM service",
        ),
    ];
    for (q, want, word) in table {
        let c = vote_check(&q);
        assert_eq!(c.status, want, "{q:?}: {c:?}");
        assert!(c.detail.contains(word), "{word}: {c:?}");
    }
}

#[test]
fn status_shows_the_device_its_connection_heuristics_and_votes() {
    let v = view(&healthy());
    assert!(v.configured);
    assert_eq!(v.two_node, Some(false));
    assert_eq!(v.host.as_deref(), Some("10.200.200.3"));
    assert_eq!(v.daemon, Some(DaemonState::Running));
    assert_eq!(v.connection, Some(Connection::Connected));
    assert_eq!(v.vote, Some(Vote::Cast));
    assert_eq!(v.error, None);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["model"], "net");
    assert_eq!(json["algorithm"], "ffsplit");
    assert_eq!(json["tie_breaker"], "lowest");
    assert_eq!(json["heuristics_mode"], "on");
    assert_eq!(json["heuristics"], serde_json::json!(["gateway"]));
    assert_eq!(json["connection"], "connected");
    assert_eq!(json["heuristics_result"], "pass");
    assert_eq!(json["vote"], "cast");
    assert_eq!(json["nodes"][1]["name"], "node2");
    assert_eq!(json["nodes"][1]["device"], "alive");
    assert_eq!(json["nodes"][1]["vote_cast"], true);
    assert_eq!(
        render(&v, 2),
        "Quorum device: net 10.200.200.3:5403 (ffsplit, heuristics on): this node connected, \
         heuristics pass, vote cast; votes: node1 cast, node2 cast\n"
    );
}

#[test]
fn status_shows_a_lost_device_loudly() {
    let o = Observed {
        daemon: running(QD_FAILED),
        votequorum: votes(QT_LOST),
        ..healthy()
    };
    let v = view(&o);
    assert_eq!(v.vote, Some(Vote::NotCast));
    assert_eq!(v.nodes[1].device, MemberDeviceState::NotRegistered);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["connection"], "connect_failed");
    assert_eq!(json["heuristics_result"], "fail");
    assert_eq!(
        render(&v, 2),
        "Quorum device: net 10.200.200.3:5403 (ffsplit, heuristics on): this node connect \
         failed, heuristics fail, NO VOTE; votes: node1 no vote, node2 no device\n"
    );
    // A daemon that is not running casts no vote, whatever votequorum says.
    let down = view(&Observed {
        daemon: Some(Daemon::NotRunning("exit code 3".into())),
        votequorum: Some(Votequorum::Unknown("timed out".into())),
        ..healthy()
    });
    assert_eq!(down.vote, Some(Vote::NotCast));
    assert_eq!(down.daemon, Some(DaemonState::NotRunning));
    assert_eq!(down.error.as_deref(), Some("votequorum: timed out"));
    assert!(render(&down, 2).contains("corosync-qdevice NOT RUNNING, NO VOTE"));
}

#[test]
fn status_without_a_device_says_none_and_why_it_matters_on_two_nodes() {
    let o = Observed {
        config: quorum(CONF_TWO_NODE),
        nodes: 2,
        daemon: None,
        votequorum: None,
    };
    let v = view(&o);
    assert!(!v.configured);
    assert_eq!(v.two_node, Some(true));
    assert_eq!((v.daemon, v.vote), (None, None));
    assert!(render(&v, 2).starts_with("Quorum device: none (two_node: in a network split"));
    assert_eq!(render(&v, 3), "Quorum device: none\n");
    let no_two_node = view(&Observed {
        config: quorum("quorum {\n}\n"),
        nodes: 2,
        daemon: None,
        votequorum: None,
    });
    assert!(render(&no_two_node, 2).contains("losing either node loses quorum"));
    let unknown = view(&Observed {
        config: Err("no such file".into()),
        nodes: 0,
        daemon: None,
        votequorum: None,
    });
    assert_eq!(
        render(&unknown, 0),
        "Quorum device: unknown (corosync.conf: no such file)\n"
    );
}

fn output(code: i32, stdout: &str, stderr: &str) -> cmd::Output {
    use std::os::unix::process::ExitStatusExt;
    cmd::Output {
        status: std::process::ExitStatus::from_raw(code << 8),
        stdout: stdout.into(),
        stderr: stderr.into(),
        elapsed: Duration::ZERO,
    }
}

#[test]
fn the_tools_exit_codes_tell_not_running_from_cannot_tell() {
    // What corosync-qdevice-tool and corosync-quorumtool print on a host
    // where neither daemon runs (seen on the build host).
    // The exit code and who asked decide, never the message's words: a
    // user other than root gets exit code 3 from a running daemon too.
    let socket = "corosync-qdevice-tool: Can't connect to QDevice socket (is QDevice running?): ";
    let absent = output(3, "", &format!("{socket}No such file or directory\n"));
    assert!(matches!(
        daemon_from(&absent, Asker::Root),
        Daemon::NotRunning(why) if why.contains("is QDevice running?")
    ));
    for stderr in ["No such file or directory", "Permission denied"] {
        assert!(matches!(
            daemon_from(&output(3, "", &format!("{socket}{stderr}\n")), Asker::OtherUser),
            Daemon::Unknown(why) if why.contains("run rapidproctl as root")
        ));
    }
    for asker in [Asker::Root, Asker::OtherUser] {
        assert!(matches!(
            daemon_from(&output(4, "", "Error: internal\n"), asker),
            Daemon::Unknown(why) if why.contains("exit code 4: Error: internal")
        ));
        assert!(matches!(
            daemon_from(&output(0, QD_CONNECTED, ""), asker),
            Daemon::Running(_)
        ));
    }
    assert!(matches!(
        daemon_from(&output(0, "garbage\n", ""), Asker::Root),
        Daemon::Unknown(_)
    ));
    assert!(matches!(
        votequorum_from(&output(1, "", "Cannot initialize CMAP service\n")),
        Votequorum::Unknown(why) if why.contains("Cannot initialize CMAP service")
    ));
    // Not quorate (exit 2) still prints the status.
    let not_quorate = QT_LOST.replace("Quorate:          Yes", "Quorate:          No");
    assert!(matches!(
        votequorum_from(&output(2, &not_quorate, "")),
        Votequorum::Answered(q) if !q.quorate
    ));
    assert!(matches!(
        votequorum_from(&output(0, QT_VOTING, "")),
        Votequorum::Answered(q) if q.quorate
    ));
}
