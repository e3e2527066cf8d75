//! The package's man pages, as roff:
//!
//! - `rapidproctl(8)` and one page per subcommand (`rapidproctl-status(8)`,
//!   ...), rendered by `clap_mangen` from the clap definitions in
//!   [`crate::cli`], plus EXIT STATUS, FILES and SEE ALSO;
//! - `rapidpro-alert(8)`: the alert agent takes no arguments, its options
//!   come from Pacemaker as environment variables, so the page is written
//!   here with the option and variable names of `rapidpro_ha::alert`;
//! - `ocf_rapidpro_stack(7)`: rendered from the agent's meta-data (what
//!   `rapidpro-agent meta-data` prints and `pcs resource describe` shows),
//!   in the layout of resource-agents' `ocf_heartbeat_*(7)` pages.
//!
//! `rapidpro-ha-manpages DIR` writes them all; `scripts/build-deb` gzips
//! them into the Debian package.

use std::time::Duration;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;
use rapidpro_ha::alert::{self, config as alert_config, event, sms};
use rapidpro_ha::ctl;
use rapidpro_ha::ocf::metadata;
use serde::Deserialize;

use crate::cli::Cli;

/// The manual the pages belong to (the last field of `.TH`).
pub const MANUAL: &str = "rapidpro-ha";
/// The package's version, in the `.TH` source field.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the package installs the examples and the runbook.
pub const DOC_DIR: &str = "/usr/share/doc/rapidpro-ha";

/// One man page.
#[derive(Debug, Clone)]
pub struct Page {
    /// File name, e.g. `rapidproctl-status.8` (not compressed).
    pub file_name: String,
    /// Section, `7` or `8`.
    pub section: &'static str,
    /// The roff source.
    pub roff: String,
}

/// Every page of the package; `date` (YYYY-MM-DD) is the date of the
/// pages, in `.TH`.
pub fn all(date: &str) -> Vec<Page> {
    let mut pages = rapidproctl(date);
    pages.push(rapidpro_alert(date));
    pages.push(ocf_rapidpro_stack(date));
    pages
}

/// The DESCRIPTION of rapidproctl(8) (for the page only: `--help` stays
/// as it is).
const RAPIDPROCTL_DESCRIPTION: &str = "\
rapidproctl answers the on-call admin's questions (which node is primary, where the virtual IP \
is, whether replication flows) from what Pacemaker, PostgreSQL and Redis say, never from a state \
file of its own, and runs the planned operations (a dump of the primary, a switchover, the rebuild of a standby) with \
safety checks. Run it as root on any cluster node. Every command takes --json for scripts.

Every external program runs with a timeout and every connection has a connect and a query \
timeout: a node that is powered off shows as down within seconds, never as a hang.";

/// `rapidproctl.8` and a page per subcommand.
pub fn rapidproctl(date: &str) -> Vec<Page> {
    // For the pages only: `help` is not a command worth a page.
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .long_about(RAPIDPROCTL_DESCRIPTION);
    // Gives the subcommands their display names (`rapidproctl-status`) and
    // the global options (--json, --verbose).
    cmd.build();
    let mut pages = Vec::new();
    let subcommands: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut main = clap_page(cmd.clone(), "8", date);
    let mut extra = Roff::new();
    exit_status(&mut extra);
    extra.control("SH", ["FILES"]);
    term(
        &mut extra,
        "/etc/corosync/corosync.conf",
        "The nodes' addresses.",
    );
    extra.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = subcommands
        .iter()
        .map(|s| format!("{}(8)", display_name(s)))
        .collect();
    see_also.extend(
        [
            "ocf_rapidpro_stack(7)",
            "rapidpro-alert(8)",
            "crm_mon(8)",
            "pcs(8)",
        ]
        .map(String::from),
    );
    extra.text([roman(see_also.join(", "))]);
    runbook(&mut extra);
    main.roff.push_str(&extra.render());
    pages.push(main);
    for sub in subcommands {
        let mut page = clap_page(sub, "8", date);
        let mut extra = Roff::new();
        exit_status(&mut extra);
        extra.control("SH", ["SEE ALSO"]);
        extra.text([roman("rapidproctl(8), ocf_rapidpro_stack(7)")]);
        page.roff.push_str(&extra.render());
        pages.push(page);
    }
    pages
}

fn display_name(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

fn clap_page(cmd: clap::Command, section: &'static str, date: &str) -> Page {
    let name = display_name(&cmd);
    let man = Man::new(cmd)
        .title(name.to_uppercase())
        .section(section)
        .date(date)
        .source(format!("rapidpro-ha {VERSION}"))
        .manual(MANUAL);
    let mut out = Vec::new();
    man.render(&mut out)
        .expect("rendering into a Vec cannot fail");
    Page {
        file_name: format!("{name}.{section}"),
        section,
        roff: String::from_utf8(out).expect("clap_mangen writes UTF-8"),
    }
}

fn exit_status(r: &mut Roff) {
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        (ctl::EXIT_OK, "Done; everything checked is fine."),
        (
            ctl::EXIT_ERROR,
            "An error: a tool or server could not be asked, or a wait timed out.",
        ),
        (ctl::EXIT_USAGE, "A usage error in the command line."),
        (
            ctl::EXIT_NOT_OK,
            "The answer is \"no\": a switchover or a rebuild refused, a check failed, a red health check.",
        ),
    ] {
        term(r, &code.to_string(), meaning);
    }
}

fn runbook(r: &mut Roff) {
    r.control("PP", []);
    r.text([roman(format!(
        "The runbook (failover, switchover, recovery of a node): {DOC_DIR}/RUNBOOK.md; the \
         README and the cluster configuration examples: {DOC_DIR}."
    ))]);
}

/// A tagged paragraph: `tag` in bold, then `text`.
fn term(r: &mut Roff, tag: &str, text: &str) {
    r.control("TP", []);
    r.text([bold(tag)]);
    r.text([roman(text)]);
}

fn para(r: &mut Roff, inlines: impl Into<Vec<Inline>>) {
    r.control("PP", []);
    r.text(inlines);
}

fn page(name: &str, section: &'static str, r: &Roff) -> Page {
    Page {
        file_name: format!("{name}.{section}"),
        section,
        roff: r.render(),
    }
}

fn title(r: &mut Roff, name: &str, section: &str, date: &str, manual: &str) {
    let upper = name.to_uppercase();
    let source = format!("rapidpro-ha {VERSION}");
    r.control(
        "TH",
        [upper.as_str(), section, date, source.as_str(), manual],
    );
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// `rapidpro-alert.8`.
pub fn rapidpro_alert(date: &str) -> Page {
    let name = alert_config::AGENT_NAME;
    let mut r = Roff::new();
    title(&mut r, name, "8", date, MANUAL);
    r.control("SH", ["NAME"]);
    r.text([roman(format!(
        "{name} - Pacemaker alert agent that emails and texts the on-call people"
    ))]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        roman(format!(
            "pcs alert create id={name} path=/usr/sbin/{name} options "
        )),
        italic("option"),
        roman("="),
        italic("value"),
        roman(" ..."),
    ]);
    r.control("br", []);
    r.text([
        roman(format!("pcs alert recipient add {name} value=")),
        italic("address-or-phone"),
        roman(",..."),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(format!(
        "{name} is run by Pacemaker (as hacluster) once per cluster event and per recipient \
         of the alert. It takes no arguments: the event comes in the CRM_alert_* environment \
         variables, and the alert's options as environment variables of their own names."
    ))]);
    para(
        &mut r,
        [roman(
            "It sends on a promotion or a demotion, on every failed operation (rc differing \
             from target_rc, or a timeout), on a fencing and on the loss of a node. It stays \
             silent for successful monitors, probes, starts, stops and notifications, and for \
             operations Pacemaker cancels itself. Node and fencing events reach every node: \
             only the alphabetically first online member other than the node concerned sends \
             them (membership from crm_node -l; if it cannot be read, every node sends: a \
             duplicate is better than a lost alert).",
        )],
    );
    para(
        &mut r,
        [roman(
            "Every email and SMS is sent at once, each network step bounded by send_timeout \
             and the whole run by deadline, so a hung gateway cannot hold Pacemaker. Each \
             delivery and each failure is logged to syslog (tag rapidpro-alert) and stderr.",
        )],
    );
    r.control("SH", ["OPTIONS"]);
    r.text([roman(
        "Instance attributes of the alert (pcs alert create ... options), which a recipient \
         may override; Pacemaker exports each as an environment variable of the same name. \
         Empty values count as unset.",
    )]);
    let options: [(&str, String); 14] = [
        (
            alert_config::SMTP_SERVER,
            "host:port of the SMTP relay (port 25 when omitted, 465 with smtp_tls=tls); \
             needed for email recipients."
                .to_owned(),
        ),
        (
            alert_config::SMTP_TLS,
            "none (plain SMTP, for a local MTA), starttls (STARTTLS required, then the \
             certificate verified) or tls (implicit TLS, SMTPS). Default: starttls when \
             smtp_password is set, else none; none with a password is refused, so AUTH never \
             crosses the network in clear text."
                .to_owned(),
        ),
        (
            alert_config::SMTP_USER,
            "The user for SMTP AUTH (PLAIN, else LOGIN), with smtp_password.".to_owned(),
        ),
        (
            alert_config::SMTP_PASSWORD,
            "The password for SMTP AUTH; never logged or shown by rapidproctl.".to_owned(),
        ),
        (
            alert_config::SMTP_CA_FILE,
            "Absolute path of a PEM file of the CAs that verify the SMTP server, instead of \
             the system store (/etc/ssl/certs); for a relay under a private CA."
                .to_owned(),
        ),
        (
            alert_config::MAIL_FROM,
            "The sender address of emails (default: rapidpro-ha@ followed by the host name)."
                .to_owned(),
        ),
        (
            sms::SMS_URL,
            format!(
                "The SMS gateway's URL template, http:// or https://, needed for phone \
                 recipients. {} and {} are replaced by the percent-encoded phone number and \
                 text, e.g. https://sms.example.org/send?to={}&text={}. Kannel's plain form \
                 with credentials in the query still works; messages show the gateway as \
                 scheme://host:port/path only.",
                sms::TO,
                sms::TEXT,
                sms::TO,
                sms::TEXT
            ),
        ),
        (
            alert_config::SMS_METHOD,
            "GET (the default): request the URL as is; POST: send the part after ? as a \
             form to the path."
                .to_owned(),
        ),
        (
            alert_config::SMS_USER,
            "The user of the gateway's HTTP basic authentication, with sms_password (https \
             only)."
                .to_owned(),
        ),
        (
            alert_config::SMS_PASSWORD,
            "Its password; never logged or shown.".to_owned(),
        ),
        (
            alert_config::SMS_TOKEN,
            "A bearer token for the gateway (Authorization: Bearer; https only), instead of \
             sms_user and sms_password. Any other header is sms_header_<Name> (an _ in the \
             name becomes -: sms_header_X_Api_Key sends X-Api-Key), https only, its value \
             never shown."
                .to_owned(),
        ),
        (
            alert_config::SMS_CA_FILE,
            "Absolute path of a PEM file of the CAs that verify the gateway, instead of the \
             system store."
                .to_owned(),
        ),
        (
            alert_config::SEND_TIMEOUT,
            format!(
                "Seconds allowed for each network step (connect, each reply); default {}.",
                secs(alert_config::DEFAULT_SEND_TIMEOUT)
            ),
        ),
        (
            alert_config::DEADLINE,
            format!(
                "Seconds allowed for the whole run; default {}, below Pacemaker's default \
                 alert timeout of {}.",
                secs(alert_config::DEFAULT_DEADLINE),
                secs(alert_config::DEFAULT_ALERT_TIMEOUT)
            ),
        ),
    ];
    debug_assert!(options
        .iter()
        .map(|o| o.0)
        .eq(alert_config::OPTION_NAMES.iter().copied()));
    for (option, text) in &options {
        term(&mut r, option, text);
    }
    r.control("SH", ["RECIPIENTS"]);
    r.text([roman(
        "A recipient value is a comma-separated list of email addresses and phone numbers \
         (e.g. oncall@example.org,+255700000001): one email per address, one SMS per number.",
    )]);
    r.control("SH", ["ENVIRONMENT"]);
    r.text([roman("Set by Pacemaker for each event:")]);
    for (var, text) in [
        (
            event::KIND,
            "node, fencing, resource or attribute (required).",
        ),
        (event::NODE, "The node the event is about."),
        (
            event::DESC,
            "Node state, fencing description, or the operation's result.",
        ),
        (event::TASK, "The operation (monitor, promote, ...)."),
        (event::RSC, "The resource."),
        (
            event::RC,
            "The OCF exit code of the operation, or the fencing result.",
        ),
        (
            event::TARGET_RC,
            "The exit code the operation was expected to give.",
        ),
        (
            event::STATUS,
            "The execution status (0 done, 1 cancelled, 2 timed out, ...).",
        ),
        (
            event::INTERVAL,
            "The operation's interval in milliseconds (0 for a one-off operation).",
        ),
        (event::TIMESTAMP, "When the event happened."),
        (event::RECIPIENT, "The recipient value."),
        (event::VERSION, "The Pacemaker version."),
        (event::ATTRIBUTE_NAME, "For attribute alerts."),
        (event::ATTRIBUTE_VALUE, "For attribute alerts."),
    ] {
        term(&mut r, var, text);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (code, text) in [
        (alert::EXIT_OK, "Sent, or deliberately not sent."),
        (
            alert::EXIT_SEND_FAILED,
            "At least one email or SMS was not sent (Pacemaker logs it).",
        ),
        (
            alert::EXIT_CONFIG,
            "The options or the environment are wrong; nothing was sent.",
        ),
    ] {
        term(&mut r, &code.to_string(), text);
    }
    r.control("SH", ["EXAMPLE"]);
    r.control("nf", []);
    r.text([roman(format!(
        "pcs alert create id={name} path=/usr/sbin/{name} \\\n    \
         options smtp_server=127.0.0.1:25 \\\n    \
         'sms_url=http://10.172.20.1:90/send?to={{to}}&text={{text}}' \\\n    \
         meta timeout=30s\n\
         pcs alert recipient add {name} value=oncall@example.org,+255700000001 \\\n    \
         id={name}-recipient-1"
    ))]);
    r.control("fi", []);
    para(
        &mut r,
        [roman(
            "rapidproctl check validates the configuration and reaches both servers; \
         rapidproctl alert --test sends a test email and SMS to every recipient.",
        )],
    );
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "rapidproctl(8), rapidproctl-check(8), rapidproctl-alert(8), ocf_rapidpro_stack(7), \
         pcs(8)",
    )]);
    page(name, "8", &r)
}

/// The parts of the agent's meta-data the page shows.
#[derive(Debug, Deserialize)]
struct ResourceAgent {
    #[serde(rename = "@name")]
    name: String,
    longdesc: Text,
    shortdesc: Text,
    parameters: Parameters,
    actions: Actions,
}

#[derive(Debug, Deserialize)]
struct Text {
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    parameter: Vec<Parameter>,
}

#[derive(Debug, Deserialize)]
struct Parameter {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@required", default)]
    required: String,
    longdesc: Text,
    shortdesc: Text,
    content: Content,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@default")]
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Actions {
    #[serde(default)]
    action: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct Action {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@timeout")]
    timeout: Option<String>,
    #[serde(rename = "@interval")]
    interval: Option<String>,
    #[serde(rename = "@role")]
    role: Option<String>,
}

/// `ocf_rapidpro_stack.7`, from the meta-data.
pub fn ocf_rapidpro_stack(date: &str) -> Page {
    let ra: ResourceAgent = quick_xml::de::from_str(&metadata::xml())
        .expect("the agent's meta-data parses (its tests validate it)");
    let name = format!("ocf_rapidpro_{}", ra.name);
    let mut r = Roff::new();
    title(&mut r, &name, "7", date, "OCF resource agents");
    r.control("SH", ["NAME"]);
    r.text([roman(format!("{name} - {}", ra.shortdesc.text))]);
    r.control("SH", ["SYNOPSIS"]);
    let mut actions: Vec<&str> = Vec::new();
    for a in &ra.actions.action {
        if !actions.contains(&a.name.as_str()) {
            actions.push(&a.name);
        }
    }
    r.text([
        bold(ra.name.as_str()),
        roman(format!(" [{}]", actions.join(" | "))),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(ra.longdesc.text.as_str())]);
    para(
        &mut r,
        [roman(
            "Installed as /usr/lib/ocf/resource.d/rapidpro/stack: Pacemaker runs it with the \
             action as its argument and the parameters in OCF_RESKEY_<name> environment \
             variables.",
        )],
    );
    r.control("SH", ["SUPPORTED PARAMETERS"]);
    for p in &ra.parameters.parameter {
        r.control("PP", []);
        r.text([bold(p.name.as_str())]);
        r.control("RS", ["4"]);
        r.text([roman(p.shortdesc.text.as_str())]);
        r.control("sp", []);
        r.text([roman(p.longdesc.text.as_str())]);
        r.control("sp", []);
        let required = if p.required == "1" {
            "required"
        } else {
            "optional"
        };
        let default = match &p.content.default {
            Some(d) => format!("default {d}"),
            None => "no default".to_owned(),
        };
        r.text([roman(format!(
            "({required}, {}, {default})",
            p.content.kind
        ))]);
        r.control("RE", []);
    }
    r.control("SH", ["SUPPORTED ACTIONS"]);
    r.text([roman(
        "The actions, with the recommended timeouts and intervals (meta-data):",
    )]);
    for a in &ra.actions.action {
        let mut parts = Vec::new();
        if let Some(t) = &a.timeout {
            parts.push(format!("timeout={t}"));
        }
        if let Some(i) = &a.interval {
            parts.push(format!("interval={i}"));
        }
        if let Some(role) = &a.role {
            parts.push(format!("role={role}"));
        }
        term(&mut r, &a.name, &parts.join(" "));
    }
    r.control("SH", ["EXAMPLE PCS"]);
    r.text([roman(format!(
        "The whole cluster configuration (the stack's promotable clone, the virtual IP, \
         fencing, the application tier and the alerts) is built by \
         {DOC_DIR}/examples/rapidpro-cluster.pcs.sh (for crmsh: rapidpro-cluster.crm.sh); \
         its README says how. The stack resource alone:"
    ))]);
    r.control("sp", []);
    r.control("nf", []);
    r.text([roman(
        "pcs resource create stack ocf:rapidpro:stack primary_host=10.0.0.100 \\\n    \
         promotable promoted-max=1 promoted-node-max=1 notify=true",
    )]);
    r.control("fi", []);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "rapidproctl(8), rapidpro-alert(8), pcs(8), crm_resource(8), ocf_heartbeat_IPaddr2(7)",
    )]);
    runbook(&mut r);
    page(&name, "7", &r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_title_and_a_name() {
        let pages = all("2025-01-01");
        for p in &pages {
            assert!(p.roff.contains(".TH "), "{}", p.file_name);
            assert!(p.roff.contains(".SH NAME"), "{}", p.file_name);
        }
        let names: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
        for expected in [
            "rapidproctl.8",
            "rapidproctl-status.8",
            "rapidproctl-switchover.8",
            "rapidpro-alert.8",
            "ocf_rapidpro_stack.7",
        ] {
            assert!(names.contains(&expected), "{names:?}");
        }
    }

    #[test]
    fn the_agent_page_lists_every_parameter_and_action() {
        let p = ocf_rapidpro_stack("2025-01-01");
        for param in rapidpro_ha::config::PARAMETERS {
            // roff escapes nothing in parameter names but nothing else
            // either: they are plain words.
            assert!(
                p.roff.contains(&format!("\\fB{}\\fR", param.name)),
                "{}",
                param.name
            );
        }
        for (action, ..) in metadata::ACTIONS {
            assert!(p.roff.contains(&action.replace('-', "\\-")), "{action}");
        }
    }

    #[test]
    fn the_alert_page_names_every_option() {
        let p = rapidpro_alert("2025-01-01");
        for o in alert_config::OPTION_NAMES {
            assert!(p.roff.contains(o), "{o}");
        }
    }
}
