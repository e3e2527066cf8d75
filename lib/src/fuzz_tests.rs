//! Property-based fuzz targets for every parser of outside input: the OCF
//! environment and notification lists Pacemaker sets, the output of
//! Pacemaker's tools (`crm_mon`, `cibadmin`, `crm_node`, `attrd_updater`,
//! `crm_attribute`, `crmadmin`), PostgreSQL's WAL positions and tool output,
//! and the alert agent's `CRM_alert_*` environment. Redis `INFO` output is
//! fuzzed beside its recorded samples, in `redis/info.rs`.
//!
//! Each target checks three things: the parser never panics, whatever it is
//! given; a valid input reads back as the value it was made from; an error
//! names the input (the parameter, attribute or text that was wrong).
//!
//! These are proptest properties, not cargo-fuzz targets: cargo-fuzz needs a
//! nightly toolchain and this project builds on stable. They run with
//! `cargo test` at the case counts below (a few seconds in all);
//! `PROPTEST_CASES=100000 cargo test -p rapidpro-ha --lib fuzz` runs every
//! target longer. A failure prints the smallest input that fails: make it a
//! named `#[test]` next to the parser, then fix the parser.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// The runner configuration of a target: `cases` cases unless
/// `PROPTEST_CASES` says otherwise, and no regression files written into the
/// source tree (failures become named tests instead).
pub(crate) fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c.failure_persistence = None;
    c
}

/// Text as it may arrive from outside: empty, blanks, any Unicode (control
/// characters included), bytes that were not UTF-8 (as the lossy reading
/// leaves them), numbers, paths, and now and then something huge.
pub(crate) fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        15 => short_text(),
        1 => (any::<char>(), 1_000usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Like [`hostile_text`], without the huge values: for documents with many
/// values, which would otherwise be megabytes.
pub(crate) fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => Just(" ".to_string()),
        1 => "[ \t\r\n]{1,4}",
        4 => any::<String>(),
        3 => "[a-z0-9 ._:/-]{0,24}",
        3 => "[ ]?-?[0-9]{1,24}(ms|s|h)?[ ]?",
        2 => "/[a-zA-Z0-9_./-]{0,40}",
        2 => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Escapes text for an XML attribute value.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

mod ocf_env {
    use std::collections::BTreeMap;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{config, hostile_text};
    use crate::config::{spec, Config, ParamType, PARAMETERS};
    use crate::ocf::env::OcfEnv;
    use crate::ocf::notify::split_list;
    use crate::ocf::{exit_reason_line, Action, EXIT_REASON_MAX, EXIT_REASON_PREFIX};

    const METAS: &[&str] = &[
        "interval",
        "timeout",
        "on_node",
        "clone_max",
        "clone_node_max",
        "promoted_max",
        "master_max",
        "notify",
        "notify_type",
        "notify_operation",
        "notify_start_uname",
        "notify_stop_uname",
        "notify_active_uname",
        "notify_promote_uname",
        "notify_demote_uname",
        "notify_promoted_uname",
        "notify_master_uname",
        "notify_unpromoted_uname",
        "notify_slave_uname",
        "notify_all_uname",
        "notify_available_uname",
        "notify_start_resource",
        "notify_promote_resource",
    ];

    /// Every name the agent reads, and others.
    fn env_name() -> impl Strategy<Value = String> {
        let mut known: Vec<String> = PARAMETERS
            .iter()
            .map(|p| format!("OCF_RESKEY_{}", p.name))
            .collect();
        known.extend(METAS.iter().map(|m| format!("OCF_RESKEY_CRM_meta_{m}")));
        known.extend(
            [
                "OCF_RESOURCE_INSTANCE",
                "OCF_CHECK_LEVEL",
                "HA_debug",
                "OCF_TESTER_FAIL_HAVE_BINARY",
                "OCF_RESKEY_crm_feature_set",
                "OCF_RESKEY_",
                "OCF_RESKEY_CRM_meta_",
            ]
            .map(str::to_string),
        );
        prop_oneof![
            8 => prop::sample::select(known),
            1 => "OCF_RESKEY_(CRM_meta_)?[a-zA-Z_]{0,12}",
            1 => any::<String>(),
        ]
    }

    /// Mostly with a valid `primary_host`, so that validation goes past
    /// the one required parameter.
    fn env_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        (
            prop::collection::btree_map(env_name(), hostile_text(), 0..24),
            prop::option::weighted(0.8, "[a-z0-9.-]{1,20}"),
        )
            .prop_map(|(mut m, host)| {
                if let Some(h) = host {
                    m.insert("OCF_RESKEY_primary_host".into(), h);
                }
                m
            })
    }

    /// Checks every accessor of `env` against the variables it was built
    /// from.
    fn check_env(vars: &BTreeMap<String, String>, env: &OcfEnv) -> Result<(), TestCaseError> {
        for (k, v) in vars {
            if let Some(name) = k.strip_prefix("OCF_RESKEY_") {
                if let Some(m) = name.strip_prefix("CRM_meta_") {
                    let want = Some(v.trim()).filter(|v| !v.is_empty());
                    prop_assert_eq!(env.meta(m), want);
                } else {
                    let want = Some(v.as_str()).filter(|v| !v.is_empty());
                    prop_assert_eq!(env.param(name), want);
                }
            }
        }
        prop_assert!(!env.instance().is_empty());
        prop_assert!(!env.resource().is_empty());
        prop_assert!(env.instance().starts_with(env.resource()));
        let interval = vars
            .get("OCF_RESKEY_CRM_meta_interval")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO);
        prop_assert_eq!(env.interval(), interval);
        prop_assert_eq!(env.is_probe(), interval.is_zero());
        if let Some(t) = env.timeout() {
            prop_assert!(!t.is_zero());
        }
        let _ = (
            env.on_node(),
            env.promoted_max(),
            env.notify_enabled(),
            env.check_level(),
            env.debug(),
            env.tester_fail_have_binary(),
        );
        if let Some(n) = env.notification() {
            for list in [
                &n.start,
                &n.stop,
                &n.active,
                &n.promote,
                &n.demote,
                &n.promoted,
                &n.unpromoted,
                &n.all,
                &n.available,
            ] {
                for name in list {
                    prop_assert!(!name.is_empty() && !name.contains(char::is_whitespace));
                }
                let mut dedup = list.clone();
                dedup.sort();
                dedup.dedup();
                prop_assert_eq!(dedup.len(), list.len(), "duplicates in {:?}", list);
            }
        }
        Ok(())
    }

    /// Checks what validation says of `env`: either a configuration, or an
    /// error naming one of the agent's parameters and the value given.
    fn check_config(env: &OcfEnv) -> Result<(), TestCaseError> {
        match Config::from_env(env) {
            Ok(cfg) => {
                prop_assert_eq!(Some(cfg.primary_host.as_str()), env.param("primary_host"));
                prop_assert!(cfg.pgdata.is_absolute() && cfg.state_dir.is_absolute());
                prop_assert!(cfg.pgport > 0 && cfg.redis_port > 0);
            }
            Err(e) => {
                let p = spec(e.param).expect("the error names one of the parameters");
                prop_assert_eq!(e.rc(), crate::ocf::OcfRc::ErrConfigured);
                let msg = e.to_string();
                let prefix = format!("parameter {}=", p.name);
                prop_assert!(msg.starts_with(&prefix), "{}", msg);
                if p.private {
                    prop_assert_eq!(e.value.as_str(), "");
                } else {
                    // The value shown is the one given, or the default.
                    let given = env.param(p.name).or(p.default).unwrap_or_default();
                    prop_assert_eq!(e.value.as_str(), given);
                }
                let line = exit_reason_line(&msg);
                prop_assert!(line.starts_with(EXIT_REASON_PREFIX));
                prop_assert!(line.contains(&prefix) || prefix.len() > EXIT_REASON_MAX);
            }
        }
        Ok(())
    }

    /// A valid value for each parameter, with what it must read as.
    fn valid_value(name: &'static str) -> BoxedStrategy<String> {
        match name {
            "pgport" | "primary_port" | "redis_port" | "redis_primary_port" => {
                (1u16..=65535).prop_map(|p| p.to_string()).boxed()
            }
            "maxlag" => any::<u64>().prop_map(|n| n.to_string()).boxed(),
            "rewind" => prop::sample::select(vec!["true", "false", "yes", "no", "1", "0", "ON"])
                .prop_map(str::to_string)
                .boxed(),
            // true needs the three files, each given or not at random here:
            // redis_tls_requires_its_three_files_each_named_when_missing
            // covers it.
            "redis_tls" => prop::sample::select(vec!["false", "no", "0", "off"])
                .prop_map(str::to_string)
                .boxed(),
            "sync_replication" => prop::sample::select(vec!["off", "on", "strict"])
                .prop_map(str::to_string)
                .boxed(),
            // verify-ca and verify-full are valid only with sslrootcert.
            "sslmode" => prop::sample::select(vec!["disable", "prefer", "require"])
                .prop_map(str::to_string)
                .boxed(),
            "connect_timeout" | "query_timeout" => prop_oneof![
                (1u64..=3600).prop_map(|n| n.to_string()),
                (1u64..=3600).prop_map(|n| format!("{n}s")),
                (1u64..=3_600_000).prop_map(|n| format!("{n}ms")),
            ]
            .boxed(),
            "primary_host" | "repl_user" | "system_user" | "redis_user" => {
                "[a-zA-Z0-9._:%-]{1,40}".boxed()
            }
            "repl_password" | "redis_password" => "[ -~]{1,40}".boxed(),
            "redis_socket" => "/[a-zA-Z0-9_./+@-]{0,90}".boxed(),
            _ => "/[a-zA-Z0-9_./+@-]{0,60}".boxed(),
        }
    }

    fn valid_env() -> impl Strategy<Value = Vec<(String, String)>> {
        let strategies: Vec<_> = PARAMETERS
            .iter()
            .map(|p| {
                let required = p.required;
                (valid_value(p.name), any::<bool>()).prop_map(move |(v, given)| {
                    (given || required).then(|| (format!("OCF_RESKEY_{}", p.name), v))
                })
            })
            .collect();
        strategies.prop_map(|vs| vs.into_iter().flatten().collect())
    }

    proptest! {
        #![proptest_config(config(2000))]

        /// Any environment: the accessors agree with the variables, and
        /// validation either accepts or names a parameter and its value.
        #[test]
        fn any_environment_is_read_without_panic(vars in env_map()) {
            let env = OcfEnv::from_vars(vars.iter());
            check_env(&vars, &env)?;
            check_config(&env)?;
        }

        /// The same, with names and values that need not be UTF-8: a
        /// parameter that is not UTF-8 is refused by name, never replaced by
        /// its default.
        #[test]
        fn an_environment_of_raw_bytes_is_read_without_panic(
            vars in prop::collection::vec(
                (
                    prop_oneof![
                        env_name().prop_map(String::into_bytes),
                        prop::collection::vec(any::<u8>(), 0..16),
                    ],
                    prop::collection::vec(any::<u8>(), 0..48),
                ),
                0..16,
            ),
        ) {
            let os: Vec<(OsString, OsString)> = vars
                .iter()
                .filter(|(k, v)| !k.is_empty() && !k.contains(&0) && !v.contains(&0))
                .map(|(k, v)| (OsString::from_vec(k.clone()), OsString::from_vec(v.clone())))
                .collect();
            let env = OcfEnv::from_vars_os(os.iter().map(|(k, v)| (k, v)));
            let first_bad = os.iter().rev().fold(BTreeMap::new(), |mut m, (k, v)| {
                // The last value of a name wins, as in from_vars.
                m.entry(k.clone()).or_insert(v.clone());
                m
            });
            let bad: Vec<&str> = env.not_utf8_params().collect();
            for name in &bad {
                let k = OsString::from(format!("OCF_RESKEY_{name}"));
                prop_assert!(first_bad.get(&k).is_some_and(|v| v.to_str().is_none()));
            }
            match Config::from_env(&env) {
                Err(e) if bad.iter().any(|b| spec(b).is_some()) => {
                    prop_assert!(bad.contains(&e.param), "{} does not name {:?}", e, bad);
                }
                Err(e) => prop_assert!(spec(e.param).is_some()),
                Ok(_) => prop_assert!(bad.iter().all(|b| spec(b).is_none())),
            }
        }

        /// Valid values of every parameter are accepted and read as given.
        #[test]
        fn valid_parameters_read_as_given(vars in valid_env()) {
            let env = OcfEnv::from_vars(vars.iter().map(|(k, v)| (k, v)));
            let cfg = Config::from_env(&env);
            prop_assert!(cfg.is_ok(), "{:?}: {:?}", vars, cfg.err());
            let cfg = cfg.unwrap();
            let get = |n: &str| env.param(n);
            prop_assert_eq!(Some(cfg.primary_host.as_str()), get("primary_host"));
            if let Some(p) = get("pgport") {
                prop_assert_eq!(cfg.pgport.to_string(), p);
                if get("primary_port").is_none() {
                    prop_assert_eq!(cfg.primary_port, cfg.pgport);
                }
            }
            if let Some(p) = get("redis_primary_port") {
                prop_assert_eq!(cfg.redis_primary_port.to_string(), p);
            }
            if let Some(m) = get("maxlag") {
                prop_assert_eq!(cfg.maxlag.to_string(), m);
            }
            if let Some(s) = get("sync_replication") {
                prop_assert_eq!(cfg.sync_replication.to_string(), s);
            }
            if let Some(d) = get("pgdata") {
                prop_assert_eq!(cfg.pgdata.to_str(), Some(d));
            }
            if let Some(t) = get("query_timeout") {
                prop_assert_eq!(Some(cfg.query_timeout), crate::config::parse_duration(t));
            }
            prop_assert_eq!(cfg.repl_password.as_deref(), get("repl_password"));
        }

        /// One parameter made wrong for its type: refused by name.
        #[test]
        fn a_malformed_parameter_is_refused_by_name(
            which in 0..PARAMETERS.len(),
            junk in prop_oneof![
                Just("two words".to_string()),
                Just("relative/path".to_string()),
                "[a-z]{1,8}",
                "-[0-9]{1,6}",
                "[1-9][0-9]{20,29}",
                r"[a-z]{0,4}[\x00-\x1f][a-z/]{0,4}",
            ],
        ) {
            let p = &PARAMETERS[which];
            let mut vars = vec![
                ("OCF_RESKEY_primary_host".to_string(), "10.0.0.10".to_string()),
            ];
            vars.push((format!("OCF_RESKEY_{}", p.name), junk.clone()));
            let env = OcfEnv::from_vars(vars);
            match Config::from_env(&env) {
                Err(e) => {
                    prop_assert_eq!(e.param, p.name, "{}", e);
                    check_config(&env)?;
                }
                Ok(cfg) => {
                    // Only values that are valid for that parameter pass.
                    let valid = match (p.kind, p.name) {
                        (ParamType::Integer, _) => false,
                        (ParamType::Boolean, _) => {
                            ["yes", "no", "on", "off", "true", "false"].contains(&junk.as_str())
                        }
                        (_, "sync_replication") => ["on", "off", "strict"].contains(&junk.as_str()),
                        (_, "repl_password" | "redis_password") => {
                            !junk.contains(char::is_control)
                        }
                        (_, "primary_host" | "repl_user" | "system_user" | "redis_user") => {
                            junk
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c))
                        }
                        _ => crate::config::is_safe_path(&junk),
                    };
                    prop_assert!(valid, "{}={:?} accepted: {:?}", p.name, junk, cfg);
                }
            }
        }

        /// Exit reasons are one line, without control characters, within
        /// Pacemaker's 128 characters, whatever the message.
        #[test]
        fn exit_reason_lines_fit_pacemaker(reason in hostile_text()) {
            let line = exit_reason_line(&reason);
            let body = line.strip_prefix(EXIT_REASON_PREFIX).unwrap();
            prop_assert!(body.chars().count() <= EXIT_REASON_MAX);
            prop_assert!(!line.contains(char::is_control));
            prop_assert_eq!(body, body.trim());
        }

        /// Action names: the known ones parse, anything else does not.
        #[test]
        fn action_names_parse_only_when_known(name in hostile_text()) {
            if let Some(a) = Action::parse(&name) {
                prop_assert!(Action::parse(a.name()) == Some(a));
            }
        }
    }

    /// Notification lists as Pacemaker writes them.
    mod notify {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::super::{config, hostile_text};
        use crate::ocf::notify::{split_list, Notify, NotifyKind, NotifyOp};

        const LISTS: &[&str] = &[
            "start",
            "stop",
            "active",
            "promote",
            "demote",
            "promoted",
            "master",
            "unpromoted",
            "slave",
            "all",
            "available",
        ];

        fn node_name() -> impl Strategy<Value = String> {
            "[a-z][a-z0-9.-]{0,12}"
        }

        /// A list value: names joined by blanks, empty ones given as a
        /// single space, or any text at all.
        fn list_value() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => Just(" ".to_string()),
                1 => Just(String::new()),
                4 => (prop::collection::vec(node_name(), 0..6), "[ \t\n]{1,3}", any::<bool>())
                    .prop_map(|(names, sep, trailing)| {
                        let mut s = names.join(&sep);
                        if trailing {
                            s.push(' ');
                        }
                        s
                    }),
                2 => hostile_text(),
            ]
        }

        fn meta() -> impl Strategy<Value = BTreeMap<String, String>> {
            let kind = prop_oneof![
                Just("pre".to_string()),
                Just("post".to_string()),
                Just(" post ".to_string()),
                hostile_text(),
            ];
            let op = prop_oneof![
                prop::sample::select(vec!["start", "stop", "promote", "demote"])
                    .prop_map(str::to_string),
                hostile_text(),
            ];
            let lists = prop::collection::btree_map(
                prop::sample::select(LISTS.to_vec()).prop_flat_map(|l| {
                    prop::sample::select(vec!["uname", "resource"])
                        .prop_map(move |what| format!("notify_{l}_{what}"))
                }),
                list_value(),
                0..LISTS.len() * 2,
            );
            (prop::option::of(kind), prop::option::of(op), lists).prop_map(|(k, o, mut m)| {
                if let Some(k) = k {
                    m.insert("notify_type".into(), k);
                }
                if let Some(o) = o {
                    m.insert("notify_operation".into(), o);
                }
                m
            })
        }

        proptest! {
            #![proptest_config(config(2000))]

            /// Any notification: read without panic; each list is the first
            /// non-empty of its names (new, then legacy), split on blanks,
            /// without duplicates; mismatched `_resource` lists change
            /// nothing.
            #[test]
            fn any_notification_reads_as_its_lists(m in meta()) {
                let n = Notify::from_meta(|k| m.get(k).map(String::as_str));
                let kind = m.get("notify_type").map(|s| s.trim());
                let op = m.get("notify_operation").map(|s| s.trim());
                let known = matches!(kind, Some("pre" | "post"))
                    && matches!(op, Some("start" | "stop" | "promote" | "demote"));
                prop_assert_eq!(n.is_some(), known);
                let Some(n) = n else { return Ok(()) };
                prop_assert_eq!(n.kind, if kind == Some("pre") { NotifyKind::Pre } else { NotifyKind::Post });
                let want_op = match op {
                    Some("start") => NotifyOp::Start,
                    Some("stop") => NotifyOp::Stop,
                    Some("promote") => NotifyOp::Promote,
                    _ => NotifyOp::Demote,
                };
                prop_assert_eq!(n.operation, want_op);
                let list = |names: &[&str]| -> Vec<String> {
                    names
                        .iter()
                        .filter_map(|l| m.get(&format!("notify_{l}_uname")))
                        .map(|v| split_list(v))
                        .find(|l| !l.is_empty())
                        .unwrap_or_default()
                };
                prop_assert_eq!(&n.start, &list(&["start"]));
                prop_assert_eq!(&n.promote, &list(&["promote"]));
                prop_assert_eq!(&n.promoted, &list(&["promoted", "master"]));
                prop_assert_eq!(&n.unpromoted, &list(&["unpromoted", "slave"]));
                prop_assert_eq!(&n.all, &list(&["all"]));
            }

            /// Names joined by any blanks read back, first occurrence kept.
            #[test]
            fn a_list_of_names_reads_back(
                names in prop::collection::vec(node_name(), 0..10),
                seps in prop::collection::vec("[ \t\r\n]{1,3}", 10),
                lead in "[ ]{0,2}",
                trail in "[ \n]{0,2}",
            ) {
                let mut text = lead;
                for (i, n) in names.iter().enumerate() {
                    if i > 0 {
                        text.push_str(&seps[i]);
                    }
                    text.push_str(n);
                }
                text.push_str(&trail);
                let mut want: Vec<String> = Vec::new();
                for n in &names {
                    if !want.contains(n) {
                        want.push(n.clone());
                    }
                }
                prop_assert_eq!(split_list(&text), want);
            }
        }

        #[test]
        fn a_single_space_is_an_empty_list() {
            assert!(split_list(" ").is_empty());
            assert!(split_list("").is_empty());
        }
    }

    #[test]
    fn the_split_list_of_a_huge_value_is_bounded_by_its_names() {
        let text = "n ".repeat(100_000);
        assert_eq!(split_list(&text), ["n"]);
    }
}

mod pacemaker_output {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::{config, floor_boundary, hostile_text, short_text, xml_escape};
    use crate::cluster::admin::parse_controller_state;
    use crate::cluster::{
        parse_attrd_query, parse_crm_mon, parse_partition, parse_score, ClusterError, NodeName,
        INFINITY,
    };

    const FIXTURES: &[&str] = &[
        include_str!("cluster/fixtures/crm_mon-live-failed-monitor.xml"),
        include_str!("cluster/fixtures/crm_mon-live-offline.xml"),
        include_str!("cluster/fixtures/crm_mon-live-steady.xml"),
        include_str!("cluster/fixtures/crm_mon-no-cluster.xml"),
        include_str!("cluster/fixtures/crm_mon-promoted-failed-monitor.xml"),
        include_str!("cluster/fixtures/crm_mon-promoting.xml"),
    ];

    /// Byte spans of ` name="value"` attributes in `doc`.
    fn attribute_spans(doc: &str) -> Vec<(usize, usize, String)> {
        let b = doc.as_bytes();
        let mut spans = Vec::new();
        let mut i = 0;
        while let Some(off) = doc[i..].find("=\"") {
            let eq = i + off;
            let mut start = eq;
            while start > 0
                && (b[start - 1].is_ascii_alphanumeric() || b"_-:".contains(&b[start - 1]))
            {
                start -= 1;
            }
            let Some(close) = doc[eq + 2..].find('"') else {
                break;
            };
            let end = eq + 2 + close + 1;
            if start > 0 && start < eq && b[start - 1] == b' ' {
                spans.push((start - 1, end, doc[start..eq].to_string()));
            }
            i = end;
        }
        spans
    }

    /// The element names of `doc`.
    fn element_names(doc: &str) -> Vec<String> {
        let mut names: Vec<String> = doc
            .split('<')
            .skip(1)
            .filter(|s| !s.starts_with(['?', '!', '/']))
            .map(|s| {
                s.split([' ', '>', '/', '\n'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// An element: name, attributes, children.
    #[derive(Debug, Clone)]
    struct Tree(String, Vec<(String, String)>, Vec<Tree>);

    impl Tree {
        fn render(&self, out: &mut String) {
            out.push('<');
            out.push_str(&self.0);
            for (k, v) in &self.1 {
                out.push_str(&format!(" {k}=\"{}\"", xml_escape(v)));
            }
            if self.2.is_empty() {
                out.push_str("/>");
            } else {
                out.push('>');
                for c in &self.2 {
                    c.render(out);
                }
                out.push_str(&format!("</{}>", self.0));
            }
        }
    }

    /// What the fixtures hold: for each element name, its attributes with
    /// the values seen, and the names of its children.
    #[derive(Default)]
    struct Vocabulary {
        attrs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        children: BTreeMap<String, BTreeSet<String>>,
    }

    impl Vocabulary {
        fn of_fixtures() -> Vocabulary {
            let mut v = Vocabulary::default();
            for doc in FIXTURES {
                let root = crate::cluster::xml::parse(doc).expect("fixtures parse");
                v.add(&root);
            }
            v
        }

        fn add(&mut self, e: &crate::cluster::xml::Element) {
            let attrs = self.attrs.entry(e.name.clone()).or_default();
            for (k, val) in &e.attrs {
                attrs.entry(k.clone()).or_default().insert(val.clone());
            }
            let kids = self.children.entry(e.name.clone()).or_default();
            kids.extend(e.children.iter().map(|c| c.name.clone()));
            for c in &e.children {
                self.add(c);
            }
        }

        /// Elements shaped as crm_mon prints them: each with some of its
        /// own attributes (values seen, or any text) and children of the
        /// kinds it has, up to `depth` levels.
        fn element(&self, name: &str, depth: u32) -> BoxedStrategy<Tree> {
            let attrs: Vec<BoxedStrategy<Option<(String, String)>>> = self.attrs[name]
                .iter()
                .map(|(k, seen)| {
                    let k = k.clone();
                    let value = prop_oneof![
                        12 => prop::sample::select(seen.iter().cloned().collect::<Vec<_>>()),
                        1 => short_text(),
                    ];
                    prop::option::weighted(0.95, value)
                        .prop_map(move |v| v.map(|v| (k.clone(), v)))
                        .boxed()
                })
                .collect();
            let kids: Vec<BoxedStrategy<Tree>> = if depth == 0 {
                Vec::new()
            } else {
                self.children[name]
                    .iter()
                    .map(|c| self.element(c, depth - 1))
                    .collect()
            };
            let children = if kids.is_empty() {
                Just(Vec::new()).boxed()
            } else {
                // Near the root, most sections; below, a few children.
                let n = if depth >= 5 { kids.len() + 2 } else { 3 };
                prop::collection::vec(prop::strategy::Union::new(kids), 1..n).boxed()
            };
            let name = name.to_string();
            (attrs, children)
                .prop_map(move |(a, c)| Tree(name.clone(), a.into_iter().flatten().collect(), c))
                .boxed()
        }

        /// Any element names and attributes of the fixtures, in any
        /// arrangement.
        fn shuffled(&self) -> BoxedStrategy<Tree> {
            let names: Vec<String> = self.attrs.keys().cloned().collect();
            let all_attrs: BTreeMap<&String, Vec<String>> = self
                .attrs
                .values()
                .flat_map(|m| m.iter())
                .map(|(k, v)| (k, v.iter().cloned().collect()))
                .collect();
            let attr_names: Vec<String> = all_attrs.keys().map(|k| k.to_string()).collect();
            let name = prop_oneof![9 => prop::sample::select(names), 1 => "[a-z_]{1,8}"];
            let attrs = prop::collection::btree_map(
                prop_oneof![9 => prop::sample::select(attr_names), 1 => "[a-z_]{1,8}"],
                short_text(),
                0..6,
            )
            .prop_map(|m| m.into_iter().collect::<Vec<_>>())
            .boxed();
            let leaf = (name.clone(), attrs.clone()).prop_map(|(n, a)| Tree(n, a, Vec::new()));
            leaf.prop_recursive(6, 80, 6, move |inner| {
                (
                    name.clone(),
                    attrs.clone(),
                    prop::collection::vec(inner, 0..6),
                )
                    .prop_map(|(n, a, c)| Tree(n, a, c))
            })
            .boxed()
        }
    }

    fn crm_mon_tree() -> impl Strategy<Value = String> {
        let v = Vocabulary::of_fixtures();
        prop_oneof![
            8 => v.element("pacemaker-result", 6),
            2 => (
                prop::sample::select(vec!["pacemaker-result", "crm_mon"]),
                prop::collection::vec(v.shuffled(), 0..6),
            )
                .prop_map(|(root, c)| Tree(root.to_string(), Vec::new(), c)),
        ]
        .prop_map(|t| {
            let mut out = String::from("<?xml version=\"1.0\"?>\n");
            t.render(&mut out);
            out
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(prop::sample::Index),
        DeleteAttribute(prop::sample::Index),
        /// A new value, escaped (the XML stays well-formed).
        SetAttribute(prop::sample::Index, String),
        /// Raw text over an attribute (the XML may break).
        SmashAttribute(prop::sample::Index, String),
        /// Every element of one name renamed (stays well-formed).
        RenameElement(prop::sample::Index, String),
        /// One start tag renamed (breaks the nesting).
        RenameOneTag(prop::sample::Index, String),
        Insert(prop::sample::Index, String),
        Duplicate(prop::sample::Index, prop::sample::Index),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let idx = any::<prop::sample::Index>;
        prop_oneof![
            3 => idx().prop_map(Mutation::Truncate),
            3 => idx().prop_map(Mutation::DeleteAttribute),
            3 => (idx(), hostile_text()).prop_map(|(i, v)| Mutation::SetAttribute(i, v)),
            1 => (idx(), hostile_text()).prop_map(|(i, v)| Mutation::SmashAttribute(i, v)),
            2 => (idx(), "[a-z_]{1,10}").prop_map(|(i, v)| Mutation::RenameElement(i, v)),
            1 => (idx(), "[a-z_]{1,10}").prop_map(|(i, v)| Mutation::RenameOneTag(i, v)),
            1 => (idx(), hostile_text()).prop_map(|(i, v)| Mutation::Insert(i, v)),
            1 => (idx(), idx()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        ]
    }

    fn apply(doc: &str, m: &Mutation) -> String {
        let attrs = attribute_spans(doc);
        let at = |i: &prop::sample::Index| floor_boundary(doc, i.index(doc.len() + 1));
        match m {
            Mutation::Truncate(i) => doc[..at(i)].to_string(),
            Mutation::DeleteAttribute(i) if !attrs.is_empty() => {
                let (s, e, _) = &attrs[i.index(attrs.len())];
                format!("{}{}", &doc[..*s], &doc[*e..])
            }
            Mutation::SetAttribute(i, v) if !attrs.is_empty() => {
                let (s, e, name) = &attrs[i.index(attrs.len())];
                format!("{} {name}=\"{}\"{}", &doc[..*s], xml_escape(v), &doc[*e..])
            }
            Mutation::SmashAttribute(i, v) if !attrs.is_empty() => {
                let (s, e, _) = &attrs[i.index(attrs.len())];
                format!("{}{v}{}", &doc[..*s], &doc[*e..])
            }
            Mutation::RenameElement(i, to) => {
                let names = element_names(doc);
                if names.is_empty() {
                    return doc.to_string();
                }
                let from = &names[i.index(names.len())];
                doc.replace(&format!("<{from} "), &format!("<{to} "))
                    .replace(&format!("<{from}>"), &format!("<{to}>"))
                    .replace(&format!("<{from}/"), &format!("<{to}/"))
                    .replace(&format!("</{from}>"), &format!("</{to}>"))
            }
            Mutation::RenameOneTag(i, to) => {
                let starts: Vec<usize> = doc
                    .match_indices('<')
                    .map(|(p, _)| p)
                    .filter(|p| doc[p + 1..].starts_with(|c: char| c.is_ascii_alphabetic()))
                    .collect();
                if starts.is_empty() {
                    return doc.to_string();
                }
                let p = starts[i.index(starts.len())] + 1;
                let len = doc[p..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .unwrap_or(0);
                format!("{}{to}{}", &doc[..p], &doc[p + len..])
            }
            Mutation::Insert(i, v) => {
                let p = at(i);
                format!("{}{v}{}", &doc[..p], &doc[p..])
            }
            Mutation::Duplicate(a, b) => {
                let (mut x, mut y) = (at(a), at(b));
                if x > y {
                    std::mem::swap(&mut x, &mut y);
                }
                format!("{}{}", &doc[..y], &doc[x..])
            }
            _ => doc.to_string(),
        }
    }

    /// A crm_mon error says it is about crm_mon's XML, and shows the input
    /// it could not read: the document, or the element with its attributes.
    fn check_crm_mon_error(doc: &str, e: &ClusterError) -> Result<(), TestCaseError> {
        if let ClusterError::Parse { what, input } = e {
            prop_assert!(what.starts_with("crm_mon XML ("), "{}", e);
            prop_assert!(input == doc || input.starts_with('<'), "{}", e);
        }
        check_error(doc, e)
    }

    /// An error says what it could not read, and shows the input it could
    /// not read: the document, the element with its attributes, or the bad
    /// name itself.
    fn check_error(doc: &str, e: &ClusterError) -> Result<(), TestCaseError> {
        let msg = e.to_string();
        prop_assert!(!msg.is_empty());
        match e {
            ClusterError::Parse { what, input } => {
                prop_assert!(msg.starts_with("could not read "), "{}", msg);
                prop_assert!(!what.is_empty());
                let shown = input == doc
                    || input.starts_with('<')
                    || doc.contains(input.as_str())
                    || doc.contains(&xml_escape(input))
                    || NodeName::new(input).is_err();
                prop_assert!(shown, "{:?} is not from the input", input);
            }
            ClusterError::NoCluster { .. } | ClusterError::Reported { .. } => {}
            ClusterError::Command(_) => prop_assert!(false, "a parser ran a command: {}", msg),
        }
        Ok(())
    }

    proptest! {
        // Documents of a few kilobytes: fewer cases.
        #![proptest_config(config(800))]

        /// Well-formed documents of crm_mon's elements and attributes in
        /// any arrangement, with any values.
        #[test]
        fn crm_mon_reads_any_tree_of_its_vocabulary_without_panic(text in crm_mon_tree()) {
            if let Err(e) = parse_crm_mon(&text) {
                check_crm_mon_error(&text, &e)?;
            }
        }
    }

    proptest! {
        #![proptest_config(config(1500))]

        /// Arbitrary bytes (read lossily, as the tool runner does).
        #[test]
        fn crm_mon_reads_arbitrary_bytes_without_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse_crm_mon(&text) {
                check_crm_mon_error(&text, &e)?;
            }
        }


        /// The recorded outputs, mutated one to three times.
        #[test]
        fn crm_mon_reads_mutated_fixtures_without_panic(
            which in 0..FIXTURES.len(),
            ms in prop::collection::vec(mutation(), 1..4),
        ) {
            let mut doc = FIXTURES[which].to_string();
            for m in &ms {
                doc = apply(&doc, m);
            }
            if let Err(e) = parse_crm_mon(&doc) {
                check_crm_mon_error(&doc, &e)?;
            }
        }

        /// A cut anywhere short of the end is an error, never a panic.
        #[test]
        fn a_truncated_crm_mon_output_is_an_error(
            which in 0..FIXTURES.len(),
            cut in any::<prop::sample::Index>(),
        ) {
            let full = FIXTURES[which];
            let end = floor_boundary(full, cut.index(full.len()));
            let doc = &full[..end];
            if doc.trim_end() != full.trim_end() {
                let e = parse_crm_mon(doc);
                prop_assert!(e.is_err(), "accepted a cut at byte {}", end);
                check_crm_mon_error(doc, &e.unwrap_err())?;
            }
        }

        /// A flag of a node that is not a boolean is refused, naming it.
        #[test]
        fn a_node_flag_that_is_not_a_boolean_is_named(
            flag in prop::sample::select(vec!["online", "standby", "maintenance", "unclean", "is_dc"]),
            junk in hostile_text(),
        ) {
            prop_assume!(!["true", "false", "1", "0", "yes", "no"].contains(&junk.as_str()));
            let doc = FIXTURES[2];
            let needle = format!(" {flag}=\"");
            let p = doc.find("<node name=").unwrap();
            let at = p + doc[p..].find(&needle).unwrap() + needle.len();
            let close = at + doc[at..].find('"').unwrap();
            let mutated = format!("{}{}{}", &doc[..at], xml_escape(&junk), &doc[close..]);
            let e = parse_crm_mon(&mutated).unwrap_err();
            prop_assert!(e.to_string().contains(&format!("{flag} of <node> is not a boolean")), "{}", e);
            check_crm_mon_error(&mutated, &e)?;
        }

        /// `node_state` lists from cibadmin: any text, and mutated samples.
        #[test]
        fn cib_members_read_without_panic(
            text in prop_oneof![
                hostile_text(),
                (prop::collection::vec(
                    ("[a-z0-9 ]{0,8}", prop_oneof![Just("true".to_string()), "[0-9a-z]{0,10}"],
                     prop_oneof![Just("online".to_string()), "[0-9a-z]{0,10}"]),
                    0..5,
                ), any::<prop::sample::Index>()).prop_map(|(states, cut)| {
                    let mut s = String::from("<xpath-query>\n");
                    for (u, ccm, crmd) in states {
                        s.push_str(&format!(
                            "<node_state id=\"1\" uname=\"{}\" in_ccm=\"{ccm}\" crmd=\"{crmd}\"/>\n",
                            xml_escape(&u)
                        ));
                    }
                    s.push_str("</xpath-query>");
                    let end = floor_boundary(&s, cut.index(s.len() + 1));
                    s[..end].to_string()
                }),
            ],
        ) {
            if let Err(e) = crate::cluster::parse_cib_members(&text) {
                check_error(&text, &e)?;
            }
            if let Err(e) = parse_controller_state(&text) {
                check_error(&text, &e)?;
            }
        }

        /// crm_node --partition: names separated by blanks read back; a
        /// bad name is an error naming it.
        #[test]
        fn a_partition_reads_back(
            names in prop::collection::vec("[a-z0-9.-]{1,20}", 0..8),
            sep in "[ \t\n]{1,3}",
            junk in hostile_text(),
        ) {
            let text = names.join(&sep);
            let got: Vec<String> = parse_partition(&text)
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect();
            prop_assert_eq!(got, names);
            if let Err(e) = parse_partition(&junk) {
                check_error(&junk, &e)?;
            }
        }

        /// Promotion scores: any integer reads back, clamped to INFINITY.
        #[test]
        fn scores_read_back_clamped(n in any::<i64>(), pad in "[ \n]{0,2}") {
            prop_assert_eq!(
                parse_score(&format!("{pad}{n}{pad}")).unwrap(),
                n.clamp(-INFINITY, INFINITY)
            );
        }

        #[test]
        fn any_score_text_reads_without_panic(text in hostile_text()) {
            match parse_score(&text) {
                Ok(s) => prop_assert!((-INFINITY..=INFINITY).contains(&s)),
                Err(e) => {
                    prop_assert!(e.to_string().starts_with("could not read a promotion score"));
                    check_error(&text, &e)?;
                }
            }
        }

        /// attrd_updater --query lines read back; any text never panics.
        #[test]
        fn attrd_query_lines_read_back(
            entries in prop::collection::vec(("[a-z0-9.-]{1,16}", "[^\n\r]{0,30}"), 0..6),
            junk in hostile_text(),
        ) {
            let text: String = entries
                .iter()
                .map(|(h, v)| format!("name=\"rapidpro-position-stack\" host=\"{h}\" value=\"{v}\"\n"))
                .collect();
            let got: Vec<(String, String)> = parse_attrd_query(&text)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
            prop_assert_eq!(got, entries);
            for (node, _) in parse_attrd_query(&junk) {
                prop_assert!(!node.as_str().is_empty());
            }
        }
    }

    #[test]
    fn the_mutation_helpers_find_attributes_and_elements() {
        let doc = FIXTURES[2];
        let attrs = attribute_spans(doc);
        assert!(attrs.len() > 50, "{}", attrs.len());
        assert!(attrs.iter().any(|(_, _, n)| n == "online"));
        assert!(element_names(doc).contains(&"node".to_string()));
    }
}

mod postgres_values {
    use proptest::prelude::*;

    use super::{config, hostile_text};
    use crate::postgres::lsn::timeline_of_walfile;
    use crate::postgres::queries::{parse_standby, parse_status};
    use crate::postgres::server::{parse_controldata, parse_rewind};
    use crate::postgres::{Lsn, Position};

    /// An LSN as PostgreSQL prints it, or with leading zeros and lower case.
    fn lsn_text() -> impl Strategy<Value = (u64, String)> {
        (any::<u32>(), any::<u32>(), 0usize..3, any::<bool>()).prop_map(|(hi, lo, zeros, lower)| {
            let mut s = format!(
                "{}{hi:X}/{lo:X}",
                "0".repeat(zeros.min(8 - format!("{hi:X}").len()))
            );
            if lower {
                s = s.to_lowercase();
            }
            ((u64::from(hi) << 32) | u64::from(lo), s)
        })
    }

    proptest! {
        #![proptest_config(config(2000))]

        #[test]
        fn every_lsn_reads_back_from_its_display(v in any::<u64>()) {
            let s = Lsn(v).to_string();
            prop_assert_eq!(s.parse::<Lsn>().unwrap(), Lsn(v));
            prop_assert!(!s.contains(char::is_lowercase));
        }

        #[test]
        fn lsns_in_any_hex_spelling_read_as_their_value((v, s) in lsn_text(), pad in "[ \n]{0,2}") {
            prop_assert_eq!(format!("{pad}{s}{pad}").parse::<Lsn>().unwrap(), Lsn(v));
        }

        #[test]
        fn every_position_reads_back_from_its_display(tl in 1u32.., v in any::<u64>()) {
            let p = Position { timeline: tl, lsn: Lsn(v) };
            prop_assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }

        /// Any text: an LSN or an error quoting the input.
        #[test]
        fn any_lsn_or_position_text_reads_without_panic(text in hostile_text()) {
            match text.parse::<Lsn>() {
                Ok(l) => prop_assert_eq!(l.to_string().parse::<Lsn>().unwrap(), l),
                Err(e) => {
                    let head: String = text.chars().take(64).collect();
                    prop_assert!(e.to_string().contains(&format!("{head:?}")), "{}", e);
                }
            }
            match text.parse::<Position>() {
                Ok(p) => prop_assert!(p.timeline > 0),
                Err(e) => {
                    let head: String = text.chars().take(64).collect();
                    prop_assert!(e.to_string().contains(&format!("{head:?}")), "{}", e);
                }
            }
            let _ = timeline_of_walfile(&text);
        }

        #[test]
        fn timelines_read_back_from_wal_file_names(tl in 1u32.., log in any::<u32>(), seg in any::<u32>()) {
            prop_assert_eq!(timeline_of_walfile(&format!("{tl:08X}{log:08X}{seg:08X}")), Some(tl));
        }

        /// pg_controldata output: read back, or refused, never a panic.
        #[test]
        fn controldata_reads_back(
            state in prop::sample::select(vec!["shut down", "in production", "in archive recovery", "shut down in recovery"]),
            tl in 1u32..,
            (lsn, lsn_s) in lsn_text(),
            extra in hostile_text(),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = format!(
                "pg_control version number:            1300\n\
                 Database system identifier:           7301234567890123456\n\
                 Database cluster state:               {state}\n\
                 Latest checkpoint location:           {lsn_s}\n\
                 Latest checkpoint's TimeLineID:       {tl}\n{extra}\n"
            );
            let c = parse_controldata(&text).unwrap();
            prop_assert_eq!(c.state.as_str(), state);
            prop_assert_eq!(c.timeline, tl);
            prop_assert_eq!(c.checkpoint, Lsn(lsn));
            let end = super::floor_boundary(&text, cut.index(text.len()));
            let _ = parse_controldata(&text[..end]);
            let _ = parse_controldata(&extra);
            let r = parse_rewind(&text[..end]);
            prop_assert!(!r.summary.contains('\n'));
        }

        /// Rows of the status queries with any column values: read, or an
        /// error, never a panic.
        #[test]
        fn status_rows_read_without_panic(
            row in prop::collection::vec(prop::option::of(hostile_text()), 0..16),
        ) {
            let _ = parse_status(&row);
            let _ = parse_standby(&row);
        }
    }
}

mod alert_env {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::{config, hostile_text};
    use crate::alert::config::{parse_pacemaker_duration, parse_recipients, Options};
    use crate::alert::event::{Code, Event, Kind};
    use crate::alert::message::{compose, SMS_MAX, SUBJECT_MAX};
    use crate::alert::policy::{classify, parse_members};

    const NAMES: &[&str] = &[
        "CRM_alert_kind",
        "CRM_alert_node",
        "CRM_alert_nodeid",
        "CRM_alert_desc",
        "CRM_alert_task",
        "CRM_alert_rsc",
        "CRM_alert_rc",
        "CRM_alert_target_rc",
        "CRM_alert_status",
        "CRM_alert_interval",
        "CRM_alert_timestamp",
        "CRM_alert_recipient",
        "CRM_alert_version",
        "CRM_alert_attribute_name",
        "CRM_alert_attribute_value",
        "CRM_alert_exec_time",
        "smtp_server",
        "mail_from",
        "sms_url",
        "sms_method",
        "send_timeout",
        "deadline",
        "PATH",
    ];

    fn alert_env() -> impl Strategy<Value = BTreeMap<String, String>> {
        let name = prop_oneof![
            8 => prop::sample::select(NAMES.to_vec()).prop_map(str::to_string),
            1 => "CRM_alert_[a-z_]{0,10}",
            1 => any::<String>(),
        ];
        let value = prop_oneof![
            1 => prop::sample::select(vec![
                "node", "fencing", "resource", "attribute", "monitor", "promote", "0", "7",
                "-1", "10000", "member", "lost",
            ])
            .prop_map(str::to_string),
            2 => hostile_text(),
        ];
        prop::collection::btree_map(name, value, 0..20)
    }

    proptest! {
        #![proptest_config(config(2000))]

        /// Any alert environment: an event exactly when CRM_alert_kind is
        /// set; its numbers as given or kept as text; the message within
        /// its limits; the options either read or refused by name.
        #[test]
        fn any_alert_environment_is_read_without_panic(env in alert_env()) {
            let kind = env.get("CRM_alert_kind").map(|k| k.trim()).filter(|k| !k.is_empty());
            match Event::from_env(&env) {
                Err(e) => {
                    prop_assert!(kind.is_none());
                    prop_assert!(e.to_string().starts_with("CRM_alert_kind"), "{}", e);
                }
                Ok(ev) => {
                    prop_assert_eq!(Some(ev.kind_name()), kind);
                    prop_assert!(ev.raw.keys().all(|k| k.starts_with("CRM_alert_")));
                    prop_assert_eq!(
                        ev.raw.len(),
                        env.keys().filter(|k| k.starts_with("CRM_alert_")).count()
                    );
                    if let Kind::Resource(op) = &ev.kind {
                        let raw = env.get("CRM_alert_rc").map(|v| v.trim()).unwrap_or("");
                        match &op.rc {
                            Code::Value(v) => prop_assert_eq!(raw.parse::<i64>().ok(), Some(*v)),
                            Code::Missing => prop_assert_eq!(raw, ""),
                            Code::Malformed(t) => prop_assert_eq!(t.as_str(), raw),
                        }
                    }
                    let _ = classify(&ev);
                    let m = compose(&ev, "node1");
                    prop_assert!(m.sms.chars().count() <= SMS_MAX);
                    prop_assert!(m.subject.chars().count() <= SUBJECT_MAX);
                    prop_assert!(!m.sms.contains(char::is_control));
                    prop_assert!(!m.subject.contains(char::is_control));
                }
            }
            if let Err(e) = Options::from_env(&env) {
                let msg = e.to_string();
                let named = ["smtp_server", "mail_from", "sms_url", "sms_method", "send_timeout", "deadline"]
                    .iter()
                    .any(|o| msg.contains(o));
                prop_assert!(named, "{}", msg);
            }
        }

        /// Recipient lists: every item is a recipient or an error naming it.
        #[test]
        fn recipients_are_read_or_named(value in hostile_text()) {
            let (ok, bad) = parse_recipients(&value);
            prop_assert!(!ok.is_empty() || !bad.is_empty());
            for e in &bad {
                let msg = e.to_string();
                let item_named = value
                    .split(',')
                    .map(str::trim)
                    .any(|i| !i.is_empty() && msg.contains(&format!("recipient {i:?}")));
                prop_assert!(item_named || msg.contains(&format!("recipient {value:?}")), "{}", msg);
            }
        }

        /// crm_node -l output and Pacemaker durations.
        #[test]
        fn membership_and_durations_read_without_panic(text in hostile_text()) {
            if let Ok(ms) = parse_members(&text) {
                prop_assert!(!ms.is_empty());
            }
            let _ = parse_pacemaker_duration(&text);
        }
    }
}
