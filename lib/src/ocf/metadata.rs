//! The agent's meta-data XML, generated from the parameter table.
//!
//! It must validate with `xmllint --valid` against resource-agents'
//! `ra-api-1.dtd` (ocf-tester does exactly that, so the DOCTYPE line is
//! needed) and with `metadata.rng`. Both reject OCF 1.1-only constructs, so
//! none is used: no `reloadable`, no `unique-group`, and no `private="1"`
//! (secret parameters say so in their description instead). A copy is kept
//! in `ocf-metadata/stack.xml`, and a test checks the two are equal.

use crate::config::{ParamType, PARAMETERS};

/// The agent's own version, not the OCF API version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Recommended operations: (action, timeout, interval, role).
pub const ACTIONS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("start", "120s", None, None),
    ("stop", "120s", None, None),
    ("promote", "60s", None, None),
    ("demote", "120s", None, None),
    ("monitor", "20s", Some("15s"), Some("Promoted")),
    ("monitor", "20s", Some("16s"), Some("Unpromoted")),
    ("notify", "60s", None, None),
    ("meta-data", "5s", None, None),
    ("validate-all", "10s", None, None),
];

const LONGDESC: &str = "Manages the data tier of a RapidPro node as one promotable clone: the local PostgreSQL and \
Redis. The Promoted instance runs the PostgreSQL primary and the Redis master; Unpromoted instances run a \
streaming standby and a Redis replica, both following primary_host (normally the virtual IP colocated with the \
Promoted role). Instances always start unpromoted, even on an old primary's data. Promote refuses a node whose \
timeline and WAL position are behind another standby's, or when another primary answers at primary_host. \
An old primary whose timeline diverged is rewound with pg_rewind when rewind=true, and otherwise refused with \
a reason, its data untouched. The recurring monitor talks to PostgreSQL and Redis over their unix sockets and \
runs no other program; on the primary it sets the standbys' promotion scores from their replication lag. \
Use it with promoted-max=1 and notify=true.";

const SHORTDESC: &str = "PostgreSQL and Redis replication for RapidPro";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// The meta-data XML, as `meta-data` prints it.
pub fn xml() -> String {
    let mut x = String::with_capacity(16 * 1024);
    x.push_str("<?xml version=\"1.0\"?>\n");
    x.push_str("<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n");
    x.push_str(&format!(
        "<resource-agent name=\"stack\" version=\"{AGENT_VERSION}\">\n"
    ));
    x.push_str("  <version>1.1</version>\n");
    x.push_str(&format!(
        "  <longdesc lang=\"en\">{}</longdesc>\n",
        escape(LONGDESC)
    ));
    x.push_str(&format!(
        "  <shortdesc lang=\"en\">{}</shortdesc>\n",
        escape(SHORTDESC)
    ));
    x.push_str("  <parameters>\n");
    for p in PARAMETERS {
        x.push_str(&format!(
            "    <parameter name=\"{}\" unique=\"0\" required=\"{}\">\n",
            p.name,
            u8::from(p.required)
        ));
        let longdesc = if p.private {
            format!(
                "{} Secret: keep it out of logs and, if you can, in cibsecret.",
                p.longdesc
            )
        } else {
            p.longdesc.to_string()
        };
        x.push_str(&format!(
            "      <longdesc lang=\"en\">{}</longdesc>\n",
            escape(&longdesc)
        ));
        x.push_str(&format!(
            "      <shortdesc lang=\"en\">{}</shortdesc>\n",
            escape(p.shortdesc)
        ));
        let kind = match p.kind {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
        };
        match p.default {
            Some(d) => x.push_str(&format!(
                "      <content type=\"{kind}\" default=\"{}\"/>\n",
                escape(d)
            )),
            None => x.push_str(&format!("      <content type=\"{kind}\"/>\n")),
        }
        x.push_str("    </parameter>\n");
    }
    x.push_str("  </parameters>\n");
    x.push_str("  <actions>\n");
    for (name, timeout, interval, role) in ACTIONS {
        x.push_str(&format!(
            "    <action name=\"{name}\" timeout=\"{timeout}\""
        ));
        if let Some(i) = interval {
            x.push_str(&format!(" interval=\"{i}\""));
        }
        if let Some(r) = role {
            x.push_str(&format!(" role=\"{r}\""));
        }
        x.push_str("/>\n");
    }
    x.push_str("  </actions>\n");
    x.push_str("</resource-agent>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_copy_equals_what_the_agent_prints() {
        let file = include_str!("../../../ocf-metadata/stack.xml");
        assert!(
            file == xml(),
            "ocf-metadata/stack.xml is stale: regenerate it with `rapidpro-agent meta-data > ocf-metadata/stack.xml`"
        );
    }

    #[test]
    fn monitors_of_the_two_roles_have_different_intervals() {
        let monitors: Vec<_> = ACTIONS.iter().filter(|a| a.0 == "monitor").collect();
        assert_eq!(monitors.len(), 2);
        assert_ne!(monitors[0].2, monitors[1].2);
    }

    #[test]
    fn every_parameter_is_described() {
        let x = xml();
        for p in PARAMETERS {
            assert!(x.contains(&format!("<parameter name=\"{}\"", p.name)));
        }
    }
}
