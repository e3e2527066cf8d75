//! `rapidpro-alert`, run as Pacemaker runs it (a `CRM_alert_*` environment
//! plus the alert's options), against an SMTP sink and an HTTP gateway sink
//! on loopback; and the library calls rapidproctl makes.

use std::process::Command;
use std::time::{Duration, Instant};

use rapidpro_ha::alert::{self, AlertConfig};
use rapidpro_ha::cluster::Cluster;
use rapidpro_ha_harness::{
    free_port, poll, run_command, CmdOutput, HttpSink, SmtpMisbehaviour, SmtpSink, SmtpSinkOptions,
    SmtpTlsMode, TestCa, TestDir, LOOPBACK,
};

const ALERT_BIN: &str = env!("CARGO_BIN_EXE_rapidpro-alert");
/// Longest a run may take before the test calls it hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);
const EMAILS: &str = "oncall@example.org,ops@example.org";
const PHONE: &str = "+255700000001";

/// The environment Pacemaker 2.1.5 sets for operation `(rsc, task,
/// interval)` on `node` with result `(rc, target_rc, status)`.
fn resource_env(
    (rsc, task, interval): (&str, &str, &str),
    node: &str,
    (rc, target_rc, status): (&str, &str, &str),
    desc: &str,
) -> Vec<(String, String)> {
    [
        ("CRM_alert_kind", "resource"),
        ("CRM_alert_version", "2.1.5"),
        ("CRM_alert_timestamp", "12:00:01.123456"),
        ("CRM_alert_node_sequence", "3"),
        ("CRM_alert_rsc", rsc),
        ("CRM_alert_task", task),
        ("CRM_alert_interval", interval),
        ("CRM_alert_node", node),
        ("CRM_alert_nodeid", "2"),
        ("CRM_alert_rc", rc),
        ("CRM_alert_target_rc", target_rc),
        ("CRM_alert_status", status),
        ("CRM_alert_exec_time", "250"),
        ("CRM_alert_desc", desc),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn promote_env() -> Vec<(String, String)> {
    resource_env(("stack", "promote", "0"), "sms2", ("0", "0", "0"), "ok")
}

/// One run of the agent with `event`, `recipient` and `options`, in a
/// clean environment (as Pacemaker's executor gives it).
fn run_alert(event: &[(String, String)], recipient: &str, options: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(ALERT_BIN);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CRM_alert_recipient", recipient);
    for (k, v) in event {
        cmd.env(k, v);
    }
    for (k, v) in options {
        cmd.env(k, v);
    }
    run_command(cmd, RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Both sinks and the options pointing at them.
struct Sinks {
    smtp: SmtpSink,
    http: HttpSink,
    sms_url: String,
    smtp_server: String,
}

impl Sinks {
    fn start() -> Sinks {
        Sinks::with(HttpSink::start(None, LOOPBACK))
    }

    fn with(http: HttpSink) -> Sinks {
        let smtp = SmtpSink::start(None, LOOPBACK);
        Sinks {
            sms_url: format!("{}/send?to={{to}}&text={{text}}&key=k", http.url()),
            smtp_server: smtp.addr(),
            smtp,
            http,
        }
    }

    fn options(&self) -> Vec<(&str, &str)> {
        vec![
            ("smtp_server", self.smtp_server.as_str()),
            ("mail_from", "ha@example.org"),
            ("sms_url", self.sms_url.as_str()),
        ]
    }
}

#[track_caller]
fn assert_code(out: &CmdOutput, code: i32) {
    assert_eq!(out.code(), code, "{}", out.failure_message());
}

#[test]
fn a_promotion_is_emailed_and_texted_to_each_recipient_once() {
    let s = Sinks::start();
    let out = run_alert(&promote_env(), &format!("{EMAILS},{PHONE}"), &s.options());
    assert_code(&out, 0);

    let mails = s.smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["oncall@example.org", "ops@example.org"]);
    for m in &mails {
        assert_eq!(m.from, "ha@example.org");
        assert_eq!(
            m.header("subject").as_deref(),
            Some("rapidpro-ha: stack promoted on sms2 (ok)")
        );
        assert_eq!(m.header("to").as_deref(), Some(m.to[0].as_str()));
        assert!(m.header("message-id").is_some() && m.header("date").is_some());
        assert!(m.body().contains("CRM_alert_task=promote"), "{}", m.body());
    }

    let reqs = s.http.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].method, "GET");
    assert!(reqs[0].target.starts_with("/send?"), "{}", reqs[0].target);
    assert_eq!(reqs[0].param("to").as_deref(), Some(PHONE));
    assert_eq!(
        reqs[0].param("text").as_deref(),
        Some("rapidpro-ha: stack promoted on sms2 (ok)")
    );
    assert_eq!(reqs[0].param("key").as_deref(), Some("k"));
    // Logged, for syslog and Pacemaker's log.
    assert!(
        out.stderr
            .contains("rapidpro-alert: INFO: email to oncall@example.org sent"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("SMS to {PHONE} sent")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_successful_monitor_sends_nothing() {
    let s = Sinks::start();
    let env = resource_env(
        ("celery", "monitor", "10000"),
        "sms1",
        ("0", "0", "0"),
        "ok",
    );
    let out = run_alert(&env, &format!("{EMAILS},{PHONE}"), &s.options());
    assert_code(&out, 0);
    assert!(s.smtp.messages().is_empty());
    assert!(s.http.requests().is_empty());
    assert_eq!(out.stderr, "", "a silent event logs nothing at info level");
}

#[test]
fn a_failed_monitor_is_sent_and_post_carries_the_text_as_a_form() {
    let s = Sinks::start();
    let mut options = s.options();
    options.push(("sms_method", "POST"));
    let env = resource_env(
        ("celery", "monitor", "10000"),
        "sms1",
        ("7", "0", "0"),
        "not running",
    );
    let out = run_alert(&env, &format!("oncall@example.org,{PHONE}"), &options);
    assert_code(&out, 0);
    let want = "rapidpro-ha: celery monitor on sms1 failed: not running (rc 7)";
    let mails = s.smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].header("subject").as_deref(), Some(want));
    let reqs = s.http.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].target, "/send");
    assert_eq!(
        reqs[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(reqs[0].param("to").as_deref(), Some(PHONE));
    assert_eq!(reqs[0].param("text").as_deref(), Some(want));
}

#[test]
fn a_hung_gateway_costs_one_send_timeout_and_the_email_still_arrives() {
    let s = Sinks::with(HttpSink::start_hanging(None, LOOPBACK));
    let mut options = s.options();
    options.extend([("send_timeout", "2"), ("deadline", "4")]);
    let started = Instant::now();
    let out = run_alert(
        &promote_env(),
        &format!("oncall@example.org,{PHONE}"),
        &options,
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}\n{}",
        out.stderr
    );
    assert_code(&out, 1);
    assert_eq!(s.smtp.messages().len(), 1, "{}", out.stderr);
    assert_eq!(s.http.requests().len(), 1, "the gateway got the request");
    let gateway = format!(
        "SMS gateway {}/send (sms_url): no answer within 2 s",
        s.http.url()
    );
    assert!(
        out.stderr.contains(&gateway),
        "{gateway:?} not in\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("rapidpro-alert: ERROR: SMS to"),
        "{}",
        out.stderr
    );
    // The gateway's key is never logged.
    assert!(!out.stderr.contains("key=k"), "{}", out.stderr);
}

#[test]
fn the_deadline_bounds_the_run_even_when_send_timeout_is_longer() {
    let s = Sinks::with(HttpSink::start_hanging(None, LOOPBACK));
    let mut options = s.options();
    options.extend([("send_timeout", "30"), ("deadline", "2")]);
    let started = Instant::now();
    let out = run_alert(&promote_env(), PHONE, &options);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}\n{}",
        out.stderr
    );
    assert_code(&out, 1);
    assert!(
        out.stderr.contains(&format!("SMS to {PHONE} not sent")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_refused_smtp_connection_fails_the_run_but_the_sms_is_sent() {
    let s = Sinks::start();
    let closed = format!("{LOOPBACK}:{}", free_port());
    let mut options = s.options();
    options[0] = ("smtp_server", closed.as_str());
    let out = run_alert(
        &promote_env(),
        &format!("oncall@example.org,{PHONE}"),
        &options,
    );
    assert_code(&out, 1);
    assert_eq!(s.http.requests().len(), 1, "{}", out.stderr);
    let want =
        format!("email to oncall@example.org not sent: SMTP server {closed}: cannot connect");
    assert!(
        out.stderr.contains(&want),
        "{want:?} not in\n{}",
        out.stderr
    );
}

#[test]
fn a_bad_option_is_named_and_nothing_is_sent() {
    let s = Sinks::start();
    let mut options = s.options();
    options.push(("send_timeout", "abc"));
    let out = run_alert(
        &promote_env(),
        &format!("oncall@example.org,{PHONE}"),
        &options,
    );
    assert_code(&out, 2);
    assert!(
        out.stderr.contains("send_timeout: expected a whole number of seconds from 1 to 600 (such as 5), got \"abc\""),
        "{}",
        out.stderr
    );
    assert!(s.smtp.messages().is_empty() && s.http.requests().is_empty());
}

#[test]
fn a_bad_recipient_item_is_named_and_the_others_are_sent() {
    let s = Sinks::start();
    let out = run_alert(&promote_env(), &format!("0755000000,{PHONE}"), &s.options());
    assert_code(&out, 1);
    assert!(
        out.stderr
            .contains("recipient \"0755000000\": expected an email address"),
        "{}",
        out.stderr
    );
    assert_eq!(s.http.requests().len(), 1);
}

#[test]
fn run_outside_pacemaker_it_says_so() {
    let mut cmd = Command::new(ALERT_BIN);
    cmd.env_clear();
    let out = run_command(cmd, RUN_LIMIT).unwrap();
    assert_code(&out, 2);
    assert!(
        out.stderr.contains("CRM_alert_kind: not set"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_lost_node_outside_a_cluster_is_still_sent() {
    // No cluster runs here, so crm_node fails at once and every node would
    // send: a duplicate is better than a lost alert.
    let s = Sinks::start();
    let env: Vec<(String, String)> = [
        ("CRM_alert_kind", "node"),
        ("CRM_alert_version", "2.1.5"),
        ("CRM_alert_node", "sms1"),
        ("CRM_alert_nodeid", "1"),
        ("CRM_alert_desc", "lost"),
        ("CRM_alert_timestamp", "12:00:02.000001"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let started = Instant::now();
    let out = run_alert(&env, &format!("oncall@example.org,{PHONE}"), &s.options());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_code(&out, 0);
    assert!(
        out.stderr.contains("could not read the cluster membership"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("sending anyway"), "{}", out.stderr);
    let mails = s.smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("subject").as_deref(),
        Some("rapidpro-ha: node sms1 lost")
    );
    assert_eq!(
        s.http.requests()[0].param("text").as_deref(),
        Some("rapidpro-ha: node sms1 lost")
    );
}

/// A CIB `<alerts>` section pointing at the sinks.
fn cib(s: &Sinks, recipients: &[&str]) -> String {
    let esc = |v: &str| v.replace('&', "&amp;");
    let recipients: String = recipients
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                r#"<recipient id="rapidpro-alert-recipient-{}" value="{}"/>"#,
                i + 1,
                esc(v)
            )
        })
        .collect();
    format!(
        r#"<cib><configuration><alerts>
  <alert id="rapidpro-alert" path="{ALERT_BIN}-not-here/rapidpro-alert">
    <instance_attributes id="ia">
      <nvpair id="ia-1" name="smtp_server" value="{}"/>
      <nvpair id="ia-2" name="sms_url" value="{}"/>
      <nvpair id="ia-3" name="send_timeout" value="2"/>
    </instance_attributes>
    {recipients}
  </alert>
  <alert id="other" path="/usr/share/pacemaker/alerts/alert_file.sh"/>
</alerts></configuration></cib>"#,
        s.smtp_server,
        esc(&s.sms_url)
    )
}

#[test]
fn send_test_reaches_every_address_and_number_of_the_alert() {
    let s = Sinks::start();
    let xml = cib(
        &s,
        &[&format!("oncall@example.org,{PHONE}"), "+255700000002"],
    );
    let alerts = AlertConfig::from_cib(&xml).unwrap();
    assert_eq!(alerts.len(), 1);
    let report = alert::send_test(&Cluster::live(), &alerts[0]);
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.outcomes.len(), 3);
    assert_eq!(s.smtp.messages().len(), 1);
    poll("two test SMS", Duration::from_secs(5), || {
        (s.http.requests().len() == 2).then_some(())
    });
    let text = s.http.requests()[0].param("text").unwrap();
    assert!(
        text.contains("test alert") && text.contains("rapidpro-alert"),
        "{text}"
    );
}

#[test]
fn check_finds_the_servers_and_names_what_is_wrong() {
    let s = Sinks::start();
    let xml = cib(
        &s,
        &[&format!("oncall@example.org,{PHONE}"), "not-a-recipient"],
    );
    let alert = &AlertConfig::from_cib(&xml).unwrap()[0];
    let checks = alert::check(alert);
    let find = |prefix: &str| {
        checks
            .iter()
            .find(|c| c.name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} check in {checks:#?}"))
    };
    assert!(!find("agent").ok, "the path does not exist");
    assert!(find("options").ok, "{checks:#?}");
    assert!(find("deadline").ok, "{checks:#?}");
    assert!(
        find("recipient rapidpro-alert-recipient-1").ok,
        "{checks:#?}"
    );
    let bad = find("recipient rapidpro-alert-recipient-2");
    assert!(
        !bad.ok && bad.detail.contains("\"not-a-recipient\""),
        "{bad:?}"
    );
    let smtp = find("SMTP server");
    assert!(
        smtp.ok && smtp.detail.starts_with("answers 220"),
        "{smtp:?}"
    );
    assert!(find("SMS gateway").ok, "{checks:#?}");
    // Nothing was sent by checking.
    assert!(s.smtp.messages().is_empty() && s.http.requests().is_empty());

    // With both servers gone, both checks fail and say why.
    let (smtp_addr, gw) = (s.smtp_server.clone(), s.http.url());
    drop(s);
    let checks = alert::check(alert);
    let failed: Vec<&alert::Check> = checks.iter().filter(|c| !c.ok).collect();
    assert!(
        failed
            .iter()
            .any(|c| c.name == format!("SMTP server {smtp_addr}")
                && c.detail.contains("cannot connect")),
        "{checks:#?}"
    );
    assert!(
        failed
            .iter()
            .any(|c| c.name == format!("SMS gateway {gw}/send")
                && c.detail.contains("cannot connect")),
        "{checks:#?}"
    );
}

// ---- TLS, AUTH, bounds and secrets (issue 11) ----

const SMTP_PASSWORD: &str = "mail-s3cret";
const GW_PASSWORD: &str = "gw-s3cret";
const GW_TOKEN: &str = "tok-s3cret";
const KANNEL_PASS: &str = "kannel-s3cret";

/// A CA made by the test and a certificate for 127.0.0.1 issued by it.
struct Pki {
    dir: TestDir,
    ca: TestCa,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = TestDir::new(name);
        let ca = TestCa::new(dir.path(), "alert");
        Pki { dir, ca }
    }

    fn ca_file(&self) -> String {
        self.ca.ca_file().display().to_string()
    }

    fn server_cert(&self) -> rapidpro_ha_harness::Issued {
        self.ca.issue("server", &[LOOPBACK, "localhost"])
    }

    /// A certificate for the same names from another CA.
    fn foreign_cert(&self) -> rapidpro_ha_harness::Issued {
        TestCa::new(self.dir.path(), "other").issue("foreign", &[LOOPBACK, "localhost"])
    }
}

/// A CIB `<alerts>` section with one alert of `options` and one recipient.
fn alert_xml(options: &[(&str, &str)], recipient: &str) -> String {
    let esc = |v: &str| v.replace('&', "&amp;").replace('"', "&quot;");
    let nvpairs: String = options
        .iter()
        .enumerate()
        .map(|(i, (k, v))| format!(r#"<nvpair id="ia-{i}" name="{k}" value="{}"/>"#, esc(v)))
        .collect();
    format!(
        r#"<alerts><alert id="rapidpro-alert" path="/usr/sbin/rapidpro-alert">
    <instance_attributes id="ia">{nvpairs}</instance_attributes>
    <recipient id="r1" value="{}"/>
  </alert></alerts>"#,
        esc(recipient)
    )
}

/// `rapidproctl check`'s finding whose name contains `name`.
fn finding(
    checks: &[rapidpro_ha::ctl::check::Check],
    name: &str,
) -> rapidpro_ha::ctl::check::Check {
    checks
        .iter()
        .find(|c| c.check.contains(name))
        .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
        .clone()
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in [SMTP_PASSWORD, GW_PASSWORD, GW_TOKEN, KANNEL_PASS] {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}

/// One email sent by the agent to a sink behind `tls` that demands AUTH,
/// with `smtp_tls` and the test CA: the sink and the run.
fn email_over_tls(pki: &Pki, tls: SmtpTlsMode, smtp_tls: &str) -> (SmtpSink, CmdOutput) {
    let smtp = SmtpSink::start_with(
        None,
        LOOPBACK,
        SmtpSinkOptions {
            tls,
            auth: Some(("ha".into(), SMTP_PASSWORD.into())),
        },
    );
    let (server, ca) = (smtp.addr(), pki.ca_file());
    let out = run_alert(
        &promote_env(),
        "oncall@example.org",
        &[
            ("smtp_server", &server),
            ("smtp_tls", smtp_tls),
            ("smtp_user", "ha"),
            ("smtp_password", SMTP_PASSWORD),
            ("smtp_ca_file", &ca),
            ("mail_from", "ha@example.org"),
        ],
    );
    assert_code(&out, 0);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "{}", out.stderr);
    assert!(mails[0].tls, "the message came over TLS");
    assert_eq!(mails[0].user.as_deref(), Some("ha"));
    assert_eq!(
        mails[0].header("subject").as_deref(),
        Some("rapidpro-ha: stack promoted on sms2 (ok)")
    );
    assert_no_secret(&out.stderr);
    (smtp, out)
}

#[test]
fn an_email_over_starttls_with_auth_arrives() {
    let pki = Pki::new("alert_starttls");
    let (smtp, _) = email_over_tls(&pki, SmtpTlsMode::StartTls(pki.server_cert()), "starttls");
    // STARTTLS came before AUTH.
    let lines = smtp.lines();
    let starttls = lines.iter().position(|l| l == "STARTTLS");
    let auth = lines.iter().position(|l| l.starts_with("AUTH"));
    assert!(
        matches!((starttls, auth), (Some(s), Some(a)) if s < a),
        "{lines:?}"
    );
}

#[test]
fn an_email_over_implicit_tls_arrives() {
    let pki = Pki::new("alert_implicit_tls");
    let (smtp, _) = email_over_tls(&pki, SmtpTlsMode::Implicit(pki.server_cert()), "tls");
    assert!(!smtp.lines().iter().any(|l| l == "STARTTLS"));
}

#[test]
fn a_server_certificate_from_another_ca_is_refused_with_a_reason() {
    let pki = Pki::new("alert_foreign_ca");
    let foreign = pki.foreign_cert();
    let smtp = SmtpSink::start_with(
        None,
        LOOPBACK,
        SmtpSinkOptions {
            tls: SmtpTlsMode::StartTls(foreign.clone()),
            auth: Some(("ha".into(), SMTP_PASSWORD.into())),
        },
    );
    let http = HttpSink::start_https(None, LOOPBACK, &foreign);
    let (server, ca) = (smtp.addr(), pki.ca_file());
    let url = format!("{}/send?to={{to}}&text={{text}}", http.url());
    let out = run_alert(
        &promote_env(),
        &format!("oncall@example.org,{PHONE}"),
        &[
            ("smtp_server", &server),
            ("smtp_user", "ha"),
            ("smtp_password", SMTP_PASSWORD),
            ("smtp_ca_file", &ca),
            ("sms_url", &url),
            ("sms_token", GW_TOKEN),
            ("sms_ca_file", &ca),
        ],
    );
    assert_code(&out, 1);
    assert!(smtp.messages().is_empty() && http.requests().is_empty());
    let email = out
        .stderr
        .lines()
        .find(|l| l.contains("email to oncall@example.org not sent"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(email.contains("certificate"), "{email}");
    let sms = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("SMS to {PHONE} not sent")))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(sms.contains("certificate"), "{sms}");
    // rapidproctl check refuses both too, without sending.
    let xml = alert_xml(
        &[
            ("smtp_server", &server),
            ("smtp_user", "ha"),
            ("smtp_password", SMTP_PASSWORD),
            ("smtp_ca_file", &ca),
            ("sms_url", &url),
            ("sms_token", GW_TOKEN),
            ("sms_ca_file", &ca),
        ],
        &format!("oncall@example.org,{PHONE}"),
    );
    let checks = rapidpro_ha::ctl::alerts::checks(&xml);
    for name in ["SMTP server", "SMS gateway"] {
        let c = finding(&checks, name);
        assert!(
            c.status != rapidpro_ha::ctl::check::Status::Ok && c.detail.contains("certificate"),
            "{c:?}"
        );
    }
    // Neither the password nor the token went anywhere.
    assert!(
        !smtp.lines().iter().any(|l| l.starts_with("AUTH")),
        "{:?}",
        smtp.lines()
    );
    assert!(smtp.messages().is_empty() && http.requests().is_empty());
    assert_no_secret(&out.stderr);
    assert_no_secret(&serde_json::to_string(&checks).unwrap());
}

#[test]
fn auth_is_never_sent_without_tls() {
    // A plain server that offers AUTH (and no STARTTLS).
    let smtp = SmtpSink::start_with(
        None,
        LOOPBACK,
        SmtpSinkOptions {
            tls: SmtpTlsMode::None,
            auth: Some(("ha".into(), SMTP_PASSWORD.into())),
        },
    );
    let server = smtp.addr();
    // smtp_tls unset: a password means STARTTLS is required.
    let out = run_alert(
        &promote_env(),
        "oncall@example.org",
        &[
            ("smtp_server", &server),
            ("smtp_user", "ha"),
            ("smtp_password", SMTP_PASSWORD),
        ],
    );
    assert_code(&out, 1);
    assert!(out.stderr.contains("STARTTLS"), "{}", out.stderr);
    // smtp_tls=none with a password is refused before any connection.
    let out2 = run_alert(
        &promote_env(),
        "oncall@example.org",
        &[
            ("smtp_server", &server),
            ("smtp_tls", "none"),
            ("smtp_user", "ha"),
            ("smtp_password", SMTP_PASSWORD),
        ],
    );
    assert_code(&out2, 2);
    assert!(
        out2.stderr
            .contains("smtp_tls: is none but smtp_password is set"),
        "{}",
        out2.stderr
    );
    let lines = smtp.lines();
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("AUTH")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(SMTP_PASSWORD)),
        "{lines:?}"
    );
    assert!(smtp.messages().is_empty());
    assert_no_secret(&out.stderr);
    assert_no_secret(&out2.stderr);
}

#[test]
fn sms_over_https_with_basic_bearer_and_header_auth_arrives() {
    let pki = Pki::new("alert_https");
    let http = HttpSink::start_https(None, LOOPBACK, &pki.server_cert());
    let url = format!("{}/api/send?to={{to}}&text={{text}}", http.url());
    assert!(url.starts_with("https://"), "{url}");
    let ca = pki.ca_file();
    let base = [("sms_url", url.as_str()), ("sms_ca_file", ca.as_str())];
    for (extra, header, want) in [
        (
            vec![("sms_user", "ha"), ("sms_password", GW_PASSWORD)],
            "authorization",
            "Basic aGE6Z3ctczNjcmV0",
        ),
        (
            vec![("sms_token", GW_TOKEN)],
            "authorization",
            "Bearer tok-s3cret",
        ),
        (
            vec![("sms_header_X_Api_Key", GW_TOKEN)],
            "x-api-key",
            GW_TOKEN,
        ),
    ] {
        let mut options: Vec<(&str, &str)> = base.to_vec();
        options.extend(extra.iter().copied());
        let before = http.requests().len();
        let out = run_alert(&promote_env(), PHONE, &options);
        assert_code(&out, 0);
        let reqs = http.requests();
        assert_eq!(reqs.len(), before + 1, "{}", out.stderr);
        let r = &reqs[before];
        assert_eq!(r.header(header), Some(want), "{r:#?}");
        assert_eq!(r.param("to").as_deref(), Some(PHONE));
        assert_no_secret(&out.stderr);
    }
    // rapidproctl check verifies the gateway's certificate, sending nothing.
    let before = http.requests().len();
    let checks = rapidpro_ha::ctl::alerts::checks(&alert_xml(&base, PHONE));
    let c = finding(&checks, "SMS gateway");
    assert!(
        c.status == rapidpro_ha::ctl::check::Status::Ok
            && c.detail.contains("accepts TLS with a certificate verified"),
        "{c:?}"
    );
    assert_eq!(http.requests().len(), before, "the check sent nothing");
}

#[test]
fn the_kannel_plain_form_arrives_and_its_credentials_never_show() {
    let http = HttpSink::start(None, LOOPBACK);
    let url = format!(
        "{}/cgi-bin/sendsms?user=ha&pass={KANNEL_PASS}&to={{to}}&text={{text}}",
        http.url()
    );
    let out = run_alert(&promote_env(), PHONE, &[("sms_url", &url)]);
    assert_code(&out, 0);
    let reqs = http.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].param("pass").as_deref(), Some(KANNEL_PASS));
    assert_eq!(reqs[0].param("user").as_deref(), Some("ha"));
    assert_eq!(reqs[0].param("to").as_deref(), Some(PHONE));
    assert_no_secret(&out.stderr);

    // A template with a mistake is refused without echoing its query.
    let bad = format!(
        "{}/cgi-bin/sendsms?user=ha&pass={KANNEL_PASS}&to={{to}}",
        http.url()
    );
    let out = run_alert(&promote_env(), PHONE, &[("sms_url", &bad)]);
    assert_code(&out, 2);
    assert!(out.stderr.contains("{text} is missing"), "{}", out.stderr);
    assert_no_secret(&out.stderr);

    // A gateway that is gone: the error names scheme://host:port/path only.
    let gone = format!(
        "http://{LOOPBACK}:{}/cgi-bin/sendsms?user=ha&pass={KANNEL_PASS}&to={{to}}&text={{text}}",
        free_port()
    );
    let out = run_alert(&promote_env(), PHONE, &[("sms_url", &gone)]);
    assert_code(&out, 1);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    assert_no_secret(&out.stderr);
}

/// `rapidproctl check`'s findings (and their `--json`) for an alert with
/// every kind of secret: none shows, whether the option is right or wrong.
#[test]
fn check_and_its_json_never_show_a_secret() {
    let pki = Pki::new("alert_check_secrets");
    let smtp = SmtpSink::start_with(
        None,
        LOOPBACK,
        SmtpSinkOptions {
            tls: SmtpTlsMode::StartTls(pki.server_cert()),
            auth: Some(("ha".into(), SMTP_PASSWORD.into())),
        },
    );
    let ca = pki.ca_file();
    let good_url = format!(
        "http://{LOOPBACK}:{}/cgi-bin/sendsms?user=ha&pass={KANNEL_PASS}&to={{to}}&text={{text}}",
        free_port()
    );
    let bad_url = format!("http://{LOOPBACK}:1/x?pass={KANNEL_PASS}&to={{to}}");
    let server = smtp.addr();
    for url in [good_url, bad_url] {
        let xml = alert_xml(
            &[
                ("smtp_server", &server),
                ("smtp_user", "ha"),
                ("smtp_password", SMTP_PASSWORD),
                ("smtp_ca_file", &ca),
                ("sms_url", &url),
                ("send_timeout", "3"),
            ],
            &format!("oncall@example.org,{PHONE}"),
        );
        let checks = rapidpro_ha::ctl::alerts::checks(&xml);
        let json = serde_json::to_string(&checks).unwrap();
        assert_no_secret(&json);
        assert_no_secret(&format!("{checks:?}"));
        let alert = &AlertConfig::from_cib(&xml).unwrap()[0];
        if let Ok(o) = alert.checked_options() {
            assert_no_secret(&format!("{o:?}"));
            // The SMTP check did STARTTLS and AUTH.
            let smtp_check = finding(&checks, "SMTP server");
            assert!(
                smtp_check.detail.contains("STARTTLS") && smtp_check.detail.contains("AUTH as ha"),
                "{smtp_check:?}"
            );
        }
    }
}

/// VmHWM (peak resident set) of a running process, in kB.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the agent, sampling its peak RSS until it exits: (exit code,
/// stderr, peak RSS in MiB, time taken).
fn run_alert_measured(
    recipient: &str,
    options: &[(&str, &str)],
) -> (Option<i32>, String, u64, Duration) {
    use std::io::Read as _;
    let mut cmd = Command::new(ALERT_BIN);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CRM_alert_recipient", recipient)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in promote_env() {
        cmd.env(k, v);
    }
    for (k, v) in options {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(child.id()) {
            peak = peak.max(kb);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    (status.code(), reader.join().unwrap(), peak / 1024, took)
}

/// `rapidproctl check`'s finding for the SMTP server at `server`, with
/// `send_timeout=2`, run in this process: it must come within 4 s.
fn smtp_check_within_its_timeout(server: &str) -> rapidpro_ha::ctl::check::Check {
    let xml = format!(
        r#"<alerts><alert id="a" path="/usr/sbin/rapidpro-alert">
    <instance_attributes id="ia">
      <nvpair id="ia-1" name="smtp_server" value="{server}"/>
      <nvpair id="ia-2" name="send_timeout" value="2"/>
    </instance_attributes>
    <recipient id="r1" value="oncall@example.org"/>
  </alert></alerts>"#
    );
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(rapidpro_ha::ctl::alerts::checks(&xml));
    });
    let checks = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the check did not end within 10 s");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    checks
        .into_iter()
        .find(|c| c.check.contains("SMTP server"))
        .expect("an SMTP server check")
}

#[test]
fn a_server_streaming_220_lines_is_cut_with_bounded_memory_within_the_deadline() {
    let flood = SmtpSink::start_misbehaving(None, LOOPBACK, SmtpMisbehaviour::Stream220);
    let server = flood.addr();
    let (code, stderr, peak_mib, took) = run_alert_measured(
        "oncall@example.org",
        &[
            ("smtp_server", &server),
            ("send_timeout", "3"),
            ("deadline", "3"),
        ],
    );
    assert!(took < Duration::from_secs(5), "took {took:?}\n{stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    // 7 MiB measured here; the old client reached 61 MiB in these 3 s (debug
    // build; 1.5 GiB in 4.5 s for `rapidproctl check`, release).
    assert!(peak_mib < 50, "peak RSS {peak_mib} MiB\n{stderr}");
    eprintln!("peak RSS of rapidpro-alert against a 220- stream: {peak_mib} MiB");
    assert!(
        stderr.contains("email to oncall@example.org not sent"),
        "{stderr}"
    );

    // rapidproctl check's SMTP probe, in this process: it ends too.
    let smtp = smtp_check_within_its_timeout(&server);
    assert!(
        smtp.detail.contains("deadline")
            || smtp.detail.contains("kB")
            || smtp.detail.contains("too large"),
        "{smtp:?}"
    );
}

#[test]
fn a_server_sending_one_byte_a_second_is_abandoned_at_the_deadline() {
    let drip = SmtpSink::start_misbehaving(None, LOOPBACK, SmtpMisbehaviour::Drip);
    let gateway = HttpSink::start_dripping(None, LOOPBACK);
    let url = format!("{}/send?to={{to}}&text={{text}}", gateway.url());
    let server = drip.addr();
    let started = Instant::now();
    let out = run_alert(
        &promote_env(),
        &format!("oncall@example.org,{PHONE}"),
        &[
            ("smtp_server", &server),
            ("sms_url", &url),
            ("send_timeout", "3"),
            ("deadline", "3"),
        ],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}\n{}",
        out.stderr
    );
    assert_code(&out, 1);
    assert!(
        out.stderr.contains("email to oncall@example.org not sent"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("SMS to {PHONE} not sent")),
        "{}",
        out.stderr
    );

    // The gateway client's own total timeout ends the request, well before
    // the deadline (per-read timeouts alone would wait for 17 bytes: 17 s).
    let started = Instant::now();
    let out = run_alert(
        &promote_env(),
        PHONE,
        &[("sms_url", &url), ("send_timeout", "2"), ("deadline", "8")],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("(sms_url): no answer within 2 s"),
        "{}",
        out.stderr
    );

    // The check's probe, in this process, ends at its send_timeout too.
    let smtp = smtp_check_within_its_timeout(&server);
    assert!(smtp.detail.contains("deadline"), "{smtp:?}");
}
