//! The `rapidpro-alert` alerts configured in the CIB, as `rapidproctl`
//! checks and tests them: `check` lists [`crate::alert::check`]'s findings
//! (agent installed here, options, recipients, SMTP answering 220 with its
//! TLS and AUTH checked, SMS gateway reachable and its certificate
//! verified); `alert --test` sends one test email and one test SMS
//! to every address and number ([`crate::alert::send_test`]), the
//! replacement of `rapidpro-test-sms` and `rapidpro-alert`.
//!
//! `alert --test` JSON: `ok`, `alerts[]` {`alert`, `ok`, `sent[]`
//! {`channel`, `to`, `seconds`}, `failed[]` {`channel`, `to`, `error`},
//! `problems[]`}.

use serde::Serialize;

use crate::alert::{self, AlertConfig};
use crate::cluster::Cluster;
use crate::deadline::Deadline;

use super::check::{Check, Status};
use super::cib;
use super::{Error, Outcome};

/// The checks of every `rapidpro-alert` alert of the CIB `xml`: one line
/// per finding, named `alert <id>: <what>`. No alert at all is a warning:
/// nobody would hear of a failover.
pub fn checks(xml: &str) -> Vec<Check> {
    let alerts = match AlertConfig::from_cib(xml) {
        Ok(a) => a,
        Err(e) => {
            return vec![Check {
                check: "alerts".into(),
                status: Status::Error,
                detail: e.to_string(),
            }]
        }
    };
    if alerts.is_empty() {
        return vec![Check {
            check: "alerts".into(),
            status: Status::Warning,
            detail: "no rapidpro-alert alert is configured: nobody is emailed or texted on a \
                     failover"
                .into(),
        }];
    }
    alerts
        .iter()
        .flat_map(|a| {
            alert::check(a).into_iter().map(move |c| Check {
                check: format!("alert {}: {}", a.id, c.name),
                status: if c.ok { Status::Ok } else { Status::Error },
                detail: c.detail,
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct Sent {
    channel: String,
    to: String,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Failed {
    channel: String,
    to: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct AlertReport {
    alert: String,
    ok: bool,
    sent: Vec<Sent>,
    failed: Vec<Failed>,
    problems: Vec<String>,
}

fn report(r: &alert::TestReport) -> AlertReport {
    let mut sent = Vec::new();
    let mut failed = Vec::new();
    for o in &r.outcomes {
        match &o.result {
            Ok(d) => sent.push(Sent {
                channel: o.channel.to_string(),
                to: o.to.clone(),
                seconds: (d.as_secs_f64() * 100.0).round() / 100.0,
            }),
            Err(e) => failed.push(Failed {
                channel: o.channel.to_string(),
                to: o.to.clone(),
                error: e.to_string(),
            }),
        }
    }
    AlertReport {
        alert: r.alert.clone(),
        ok: r.ok(),
        sent,
        failed,
        problems: r.problems.iter().map(ToString::to_string).collect(),
    }
}

fn render(reports: &[AlertReport]) -> String {
    let mut s = String::new();
    for r in reports {
        s.push_str(&format!(
            "alert {}: {}\n",
            r.alert,
            if r.ok { "all sent" } else { "NOT all sent" }
        ));
        for x in &r.sent {
            s.push_str(&format!(
                "  {} to {} sent in {:.1} s\n",
                x.channel, x.to, x.seconds
            ));
        }
        for x in &r.failed {
            s.push_str(&format!(
                "  {} to {} NOT sent: {}\n",
                x.channel, x.to, x.error
            ));
        }
        for p in &r.problems {
            s.push_str(&format!("  problem: {p}\n"));
        }
    }
    s
}

/// `rapidproctl alert --test`.
pub fn test(cluster: &Cluster, deadline: &Deadline) -> Result<Outcome, Error> {
    let f = cib::query(cluster, deadline)?;
    let alerts = AlertConfig::from_cib(&f.xml).map_err(|e| Error::Cib(e.to_string()))?;
    if alerts.is_empty() {
        let why = "no rapidpro-alert alert is configured in the CIB";
        return Ok(Outcome::with(
            serde_json::json!({ "ok": false, "alerts": [], "problem": why }),
            format!("{why}\n"),
            false,
        ));
    }
    // Each alert is bounded by its own `deadline` option.
    let reports: Vec<AlertReport> = alerts
        .iter()
        .map(|a| report(&alert::send_test(cluster, a)))
        .collect();
    let ok = reports.iter().all(|r| r.ok);
    let text = render(&reports);
    let json = serde_json::json!({ "ok": ok, "alerts": reports });
    Ok(Outcome::with(json, text, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIB: &str = include_str!("fixtures/cib-live.xml");

    #[test]
    fn a_cib_without_alerts_is_a_warning() {
        let v = checks(CIB);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].status, Status::Warning);
        assert!(
            v[0].detail.contains("no rapidpro-alert alert"),
            "{:?}",
            v[0]
        );
    }

    #[test]
    fn each_finding_of_an_alert_is_a_check_line() {
        // The <alerts> section pcs writes for the sandbox variant, with a
        // gateway and SMTP server on closed loopback ports.
        let xml = r#"<cib><configuration><alerts>
  <alert id="rapidpro-alert" path="/nonexistent/rapidpro-alert">
    <instance_attributes id="rapidpro-alert-instance_attributes">
      <nvpair id="a1" name="smtp_server" value="127.0.0.1:1"/>
      <nvpair id="a2" name="sms_url" value="http://127.0.0.1:1/send?to={to}&amp;text={text}"/>
    </instance_attributes>
    <recipient id="rapidpro-alert-recipient-1" value="oncall@example.org,+255700000001"/>
  </alert>
</alerts></configuration></cib>"#;
        let v = checks(xml);
        assert!(
            v.iter()
                .all(|c| c.check.starts_with("alert rapidpro-alert: ")),
            "{v:?}"
        );
        let agent = v.iter().find(|c| c.check.contains("agent")).unwrap();
        assert_eq!(agent.status, Status::Error, "{agent:?}");
        assert!(v.iter().any(|c| c.status == Status::Ok), "{v:?}");
    }

    #[test]
    fn a_test_report_lists_what_was_sent_and_what_was_not() {
        let r = alert::TestReport {
            alert: "rapidpro-alert".into(),
            outcomes: vec![
                alert::Outcome {
                    channel: alert::Channel::Email,
                    to: "oncall@example.org".into(),
                    result: Ok(std::time::Duration::from_millis(120)),
                },
                alert::Outcome {
                    channel: alert::Channel::Sms,
                    to: "+255700000001".into(),
                    result: Err(alert::Error::Cib("gateway down".into())),
                },
            ],
            problems: vec![],
        };
        let a = report(&r);
        assert!(!a.ok);
        let text = render(&[a]);
        assert!(
            text.starts_with("alert rapidpro-alert: NOT all sent\n"),
            "{text}"
        );
        assert!(
            text.contains("  email to oncall@example.org sent in 0.1 s\n"),
            "{text}"
        );
        assert!(text.contains("  SMS to +255700000001 NOT sent: "), "{text}");
    }
}
