//! What `crm_mon -1 --output-as=xml` says, parsed (Pacemaker 2.1 schema:
//! `<nodes><node/>`, `<resources>` with `<clone>` around `<resource>` and a
//! `<node name>` per node running it, `<failures><failure/>`).

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// A cluster node as crm_mon shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmNode {
    /// Its name.
    pub name: String,
    /// `online="true"`.
    pub online: bool,
    /// `is_dc="true"`.
    pub is_dc: bool,
}

/// One resource instance as crm_mon shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmResource {
    /// `id`, e.g. `stack` (the same for every instance of an anonymous clone).
    pub id: String,
    /// The id of the enclosing clone, if any.
    pub clone: Option<String>,
    /// `resource_agent`, e.g. `ocf:rapidpro:stack`.
    pub agent: String,
    /// `role`: `Started`, `Stopped`, `Promoted`, `Unpromoted`, …
    pub role: String,
    /// `failed="true"`.
    pub failed: bool,
    /// The nodes it runs on.
    pub nodes: Vec<String>,
}

/// The parsed status.
#[derive(Debug, Clone, Default)]
pub struct CrmStatus {
    /// Every node.
    pub nodes: Vec<CrmNode>,
    /// Every resource instance.
    pub resources: Vec<CrmResource>,
    /// Every `<failure>`, as its attributes (`op_key`, `node`, `exitstatus`,
    /// `exitreason`, …).
    pub failures: Vec<BTreeMap<String, String>>,
    /// The partition has quorum (`<current_dc with_quorum="true">`).
    pub with_quorum: bool,
}

impl CrmStatus {
    /// Parses crm_mon's XML; `Err` with the parser's message.
    pub fn parse(xml: &str) -> Result<CrmStatus, String> {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().trim_text(true);
        let mut st = CrmStatus::default();
        let mut path: Vec<String> = Vec::new();
        let mut clone: Option<String> = None;
        loop {
            let ev = reader
                .read_event()
                .map_err(|e| format!("crm_mon XML at {}: {e}", reader.buffer_position()))?;
            match ev {
                Event::Start(e) => {
                    let name = st.element(&e, &path, &mut clone);
                    path.push(name);
                }
                Event::Empty(e) => {
                    st.element(&e, &path, &mut clone);
                }
                Event::End(e) => {
                    if e.name().as_ref() == b"clone" {
                        clone = None;
                    }
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(st)
    }

    fn element(
        &mut self,
        e: &BytesStart<'_>,
        path: &[String],
        clone: &mut Option<String>,
    ) -> String {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let a = attrs(e);
        let get = |k: &str| a.get(k).cloned().unwrap_or_default();
        let parent = path.last().map(String::as_str);
        match (name.as_str(), parent) {
            ("node", Some("nodes")) => self.nodes.push(CrmNode {
                name: get("name"),
                online: get("online") == "true",
                is_dc: get("is_dc") == "true",
            }),
            ("clone", _) => *clone = Some(get("id")),
            ("resource", _) => self.resources.push(CrmResource {
                id: get("id"),
                clone: clone.clone(),
                agent: get("resource_agent"),
                role: get("role"),
                failed: get("failed") == "true",
                nodes: Vec::new(),
            }),
            ("node", Some("resource")) => {
                if let Some(r) = self.resources.last_mut() {
                    r.nodes.push(get("name"));
                }
            }
            ("failure", Some("failures")) => self.failures.push(a),
            ("current_dc", _) => self.with_quorum = get("with_quorum") == "true",
            _ => {}
        }
        name
    }

    /// Resource instances of `agent` (e.g. `ocf:rapidpro:stack`).
    pub fn of_agent<'a>(&'a self, agent: &'a str) -> impl Iterator<Item = &'a CrmResource> + 'a {
        self.resources.iter().filter(move |r| r.agent == agent)
    }

    /// The nodes where an instance of `agent` has `role`.
    pub fn nodes_with_role(&self, agent: &str, role: &str) -> Vec<String> {
        self.of_agent(agent)
            .filter(|r| r.role == role)
            .flat_map(|r| r.nodes.clone())
            .collect()
    }

    /// Names of the online nodes.
    pub fn online(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.online)
            .map(|n| n.name.clone())
            .collect()
    }
}

fn attrs(e: &BytesStart<'_>) -> BTreeMap<String, String> {
    e.attributes()
        .flatten()
        .map(|a| {
            let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
            (k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promoted_and_unpromoted_instances_and_failures() {
        let xml = r#"<pacemaker-result api-version="2.30" request="crm_mon -1 --output-as=xml">
  <nodes>
    <node name="node1" id="1" online="true" standby="false" is_dc="true" type="member"/>
    <node name="node2" id="2" online="false" is_dc="false" type="member"/>
  </nodes>
  <resources>
    <resource id="fence" resource_agent="stonith:fence_rapidpro_sandbox" role="Started" active="true" failed="false" nodes_running_on="1">
      <node name="node1" id="1" cached="true"/>
    </resource>
    <clone id="stack-clone" multi_state="true" unique="false">
      <resource id="stack" resource_agent="ocf:rapidpro:stack" role="Promoted" active="true" failed="false" nodes_running_on="1">
        <node name="node1" id="1" cached="true"/>
      </resource>
      <resource id="stack" resource_agent="ocf:rapidpro:stack" role="Stopped" active="false" failed="false" nodes_running_on="0"/>
    </clone>
    <resource id="vip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true" failed="false" nodes_running_on="1">
      <node name="node1" id="1" cached="true"/>
    </resource>
  </resources>
  <failures>
    <failure op_key="stack_monitor_16000" node="node2" exitstatus="error" exitreason="x &amp; y" exitcode="1"/>
  </failures>
</pacemaker-result>"#;
        let st = CrmStatus::parse(xml).unwrap();
        assert_eq!(st.online(), vec!["node1"]);
        assert!(st.nodes[0].is_dc);
        let stack: Vec<_> = st.of_agent("ocf:rapidpro:stack").collect();
        assert_eq!(stack.len(), 2);
        assert_eq!(stack[0].clone.as_deref(), Some("stack-clone"));
        assert_eq!(
            st.nodes_with_role("ocf:rapidpro:stack", "Promoted"),
            vec!["node1"]
        );
        assert_eq!(
            st.nodes_with_role("ocf:heartbeat:IPaddr2", "Started"),
            vec!["node1"]
        );
        assert_eq!(st.resources[0].clone, None);
        assert_eq!(st.resources[3].clone, None);
        assert_eq!(st.failures[0]["exitreason"], "x & y");
    }
}
