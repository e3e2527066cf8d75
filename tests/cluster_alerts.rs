//! `rapidpro-alert` as Pacemaker runs it: a 3-node cluster configured by
//! `pcs-examples/rapidpro-cluster.pcs.sh` with alerts to an SMTP sink and an
//! SMS gateway sink, a power-off of the primary, and the messages counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rapidpro_ha_harness::{poll, NsCluster};

use super::bin;
use super::cluster::{finish_load, start_load, wait_one_promoted, SETTLE};

const RECIPIENTS: [(&str, &str); 2] = [
    ("oncall1@example.org", "+255700000001"),
    ("oncall2@example.org", "+255700000002"),
];

/// How many messages each (recipient, subject or text) got.
type Tally = BTreeMap<(String, String), usize>;

/// Messages per (recipient, text): email subjects by address, SMS texts by
/// phone number.
fn tally(c: &NsCluster) -> (Tally, Tally) {
    let mut mails = BTreeMap::new();
    for m in c.alert_smtp().messages() {
        let subject = m
            .data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        for to in &m.to {
            *mails.entry((to.clone(), subject.clone())).or_insert(0) += 1;
        }
    }
    let mut texts = BTreeMap::new();
    for r in c.alert_sms().requests() {
        let to = r.param("to").unwrap_or_default();
        let text = r.param("text").unwrap_or_default();
        *texts.entry((to, text)).or_insert(0) += 1;
    }
    (mails, texts)
}

#[test]
fn a_failover_sends_one_email_and_one_sms_per_recipient_for_each_event() {
    let values: Vec<String> = RECIPIENTS
        .iter()
        .map(|(mail, phone)| format!("{mail},{phone}"))
        .collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let c = NsCluster::builder("alerts")
        .nodes(3)
        .agent(bin())
        .app(true)
        .param("rewind", "true")
        .alerts(&values)
        .sbin(env!("CARGO_BIN_EXE_rapidpro-alert"))
        .build();
    let first = c.nodes()[0].name.clone();
    c.wait_settled(&first, SETTLE);
    let old = wait_one_promoted(&c, &first, None);
    let ask = c
        .nodes()
        .iter()
        .map(|n| n.name.clone())
        .find(|n| *n != old)
        .expect("another node");
    let load = start_load(&c);
    let (mails_before, texts_before) = tally(&c);
    let promoted_at_boot = mails_before
        .keys()
        .any(|(_, s)| s.contains("promote") && s.contains(&old));
    assert!(
        promoted_at_boot,
        "the first promotion sent no email: {mails_before:?}"
    );

    let start = Instant::now();
    c.power_off(&old);
    let new = poll(&format!("a node other than {old} promoted"), SETTLE, || {
        Some(wait_one_promoted(&c, &ask, None)).filter(|p| *p != old)
    });
    c.wait_settled(&new, SETTLE);
    // Alerts run asynchronously: give the last ones time to arrive.
    std::thread::sleep(Duration::from_secs(5));
    let elapsed = start.elapsed();
    let (mails, texts) = tally(&c);
    let new_mails: BTreeMap<_, _> = mails
        .iter()
        .filter(|(k, _)| !mails_before.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let new_texts: BTreeMap<_, _> = texts
        .iter()
        .filter(|(k, _)| !texts_before.contains_key(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    eprintln!(
        "measured: power-off of {old}: alerts in {:.1} s: emails {new_mails:#?} SMS {new_texts:#?}",
        elapsed.as_secs_f64()
    );

    // Every event reached every recipient exactly once, by email and SMS.
    for (mail, phone) in RECIPIENTS {
        let subjects: Vec<&String> = new_mails
            .keys()
            .filter(|(to, _)| to == mail)
            .map(|(_, s)| s)
            .collect();
        let sms: Vec<&String> = new_texts
            .keys()
            .filter(|(to, _)| to == phone)
            .map(|(_, t)| t)
            .collect();
        for (what, needle) in [
            ("node loss", "lost"),
            ("fencing", "fenc"),
            ("promotion", "promot"),
        ] {
            let m = subjects.iter().filter(|s| s.contains(needle)).count();
            let t = sms.iter().filter(|s| s.contains(needle)).count();
            assert_eq!(m, 1, "{mail}: {m} emails about the {what}: {subjects:?}");
            assert_eq!(t, 1, "{phone}: {t} SMS about the {what}: {sms:?}");
        }
        assert_eq!(
            subjects.len(),
            sms.len(),
            "{mail} / {phone}: emails and SMS differ: {subjects:?} vs {sms:?}"
        );
    }
    for (k, n) in new_mails.iter().chain(new_texts.iter()) {
        assert_eq!(*n, 1, "{k:?} sent {n} times");
    }
    finish_load(&c, load, "alerts");
}
