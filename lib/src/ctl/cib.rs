//! What rapidproctl reads from the CIB (`cibadmin --query`): the
//! `ocf:rapidpro:stack` resource with its parameters and its promotable
//! clone, the virtual IP, the cluster properties, and the nodes' transient
//! attributes (the `#health-*` ones, which `crm_mon` never shows).
//!
//! One query gives all of it; the parser is pure and tested against a CIB
//! recorded in the namespaced test cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cluster::xml::{self, Element};
use crate::cluster::Cluster;
use crate::config::{names, Config, ConfigError};
use crate::deadline::Deadline;
use crate::ocf::env::OcfEnv;

use super::Error;

/// Class, provider and type of the agent.
const STACK_AGENT: (&str, &str, &str) = ("ocf", "rapidpro", "stack");
/// The virtual IP's agent (class ocf, provider heartbeat).
const VIP_TYPE: &str = "IPaddr2";
/// What `cibsecret` leaves in the CIB for a value it moved out.
pub const CIBSECRET_MARK: &str = "lrm://";
/// Where `cibsecret` keeps the values it moved out of the CIB:
/// `<dir>/<resource>/<parameter>` (pacemaker's `tools/cibsecret`).
pub const CIBSECRET_DIR: &str = "/var/lib/pacemaker/lrm/secrets";
/// The prefix of node health attributes (Pacemaker Explained, "Tracking
/// Node Health").
pub const HEALTH_PREFIX: &str = "#health";

/// One configured operation of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// `monitor`, `start`...
    pub name: String,
    /// `interval` as written (`15s`, `0s`, `15000`).
    pub interval: String,
    /// `role` (`Promoted`, `Unpromoted`, or the legacy names), if any.
    pub role: Option<String>,
    /// `timeout`, if any.
    pub timeout: Option<String>,
}

/// The `ocf:rapidpro:stack` primitive and its clone. Its `Debug` shows
/// `<redacted>` for the secret parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct StackResource {
    /// The primitive's id (`stack`).
    pub id: String,
    /// The enclosing clone's id (`stack-clone`), if the primitive is cloned.
    pub clone_id: Option<String>,
    /// The primitive's instance attributes (its parameters), first value of
    /// each name.
    pub params: BTreeMap<String, String>,
    /// The clone's meta attributes.
    pub clone_meta: BTreeMap<String, String>,
    /// The primitive's operations.
    pub ops: Vec<Op>,
}

impl std::fmt::Debug for StackResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params = crate::config::shown_params(&self.params);
        f.debug_struct("StackResource")
            .field("id", &self.id)
            .field("clone_id", &self.clone_id)
            .field("params", &params)
            .field("clone_meta", &self.clone_meta)
            .field("ops", &self.ops)
            .finish()
    }
}

impl StackResource {
    /// The parameters as the agent would see them, checked by the agent's
    /// own validation ([`Config::from_env`]).
    pub fn config(&self) -> Result<Config, ConfigError> {
        let vars = self
            .params
            .iter()
            .map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone()));
        Config::from_env(&OcfEnv::from_vars(vars))
    }

    /// Replaces `lrm://` values (parameters moved out by `cibsecret`) with
    /// the files under `dir` that hold them; a missing file leaves the value
    /// unset.
    pub fn resolve_secrets(&mut self, dir: &Path) {
        let id = self.id.clone();
        self.params.retain(|name, value| {
            if value != CIBSECRET_MARK {
                return true;
            }
            match std::fs::read_to_string(dir.join(&id).join(name)) {
                Ok(v) => {
                    *value = v.trim_end_matches('\n').to_string();
                    true
                }
                Err(e) => {
                    log::warn!("{name} of {id} is kept by cibsecret but cannot be read: {e}");
                    false
                }
            }
        });
    }

    /// The id to give `crm_resource` to move the Promoted role: the clone.
    pub fn promotable_id(&self) -> &str {
        self.clone_id.as_deref().unwrap_or(&self.id)
    }
}

/// An `ocf:heartbeat:IPaddr2` primitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// Its id.
    pub id: String,
    /// Its `ip` parameter.
    pub ip: String,
}

/// What the CIB says, as far as rapidproctl cares. Its `Debug` shows the
/// size of the whole document only: it holds every parameter of every
/// resource, passwords included (the stack's, a fencing device's).
#[derive(Clone, Default)]
pub struct CibFacts {
    /// The stack resource, if configured.
    pub stack: Option<StackResource>,
    /// Every IPaddr2 primitive.
    pub vips: Vec<Vip>,
    /// Every fencing device (`class="stonith"` primitive): its id and
    /// whether it is disabled (`target-role=Stopped`).
    pub stonith: Vec<(String, bool)>,
    /// Cluster properties (`crm_config`), such as `node-health-strategy`.
    pub properties: BTreeMap<String, String>,
    /// Transient node attributes by node name.
    pub transient: BTreeMap<String, BTreeMap<String, String>>,
    /// The whole document (for the alert configuration).
    pub xml: String,
}

impl std::fmt::Debug for CibFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibFacts")
            .field("stack", &self.stack)
            .field("vips", &self.vips)
            .field("stonith", &self.stonith)
            .field("properties", &self.properties)
            .field("transient", &self.transient)
            .field("xml", &format_args!("<{} bytes>", self.xml.len()))
            .finish()
    }
}

impl CibFacts {
    /// The virtual IP: the IPaddr2 resource whose address is the stack's
    /// `primary_host`, else the first one.
    pub fn vip(&self) -> Option<&Vip> {
        let primary = self
            .stack
            .as_ref()
            .and_then(|s| s.params.get(names::PRIMARY_HOST));
        self.vips
            .iter()
            .find(|v| Some(&v.ip) == primary)
            .or(self.vips.first())
    }

    /// The `#health-*` attributes of `node`.
    pub fn health_attributes(&self, node: &str) -> BTreeMap<String, String> {
        self.transient
            .get(node)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with(HEALTH_PREFIX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The stack resource, or an error saying it is not configured.
    pub fn require_stack(&self) -> Result<&StackResource, Error> {
        self.stack
            .as_ref()
            .ok_or_else(|| Error::Cib("no ocf:rapidpro:stack resource is configured".to_string()))
    }
}

/// Queries the CIB and reads it; `lrm://` secrets are resolved from
/// [`CIBSECRET_DIR`].
pub fn query(cluster: &Cluster, deadline: &Deadline) -> Result<CibFacts, Error> {
    let xml = cluster.query_cib(deadline)?;
    let mut facts = parse(&xml)?;
    if let Some(s) = facts.stack.as_mut() {
        s.resolve_secrets(&PathBuf::from(CIBSECRET_DIR));
    }
    Ok(facts)
}

/// Reads a whole CIB (`cibadmin --query` output).
pub fn parse(text: &str) -> Result<CibFacts, Error> {
    let root = xml::parse(text).map_err(|e| Error::Cib(format!("unreadable XML: {e}")))?;
    if root.name != "cib" {
        return Err(Error::Cib(format!("expected <cib>, got <{}>", root.name)));
    }
    let mut facts = CibFacts {
        xml: text.to_string(),
        ..CibFacts::default()
    };
    let configuration = root.child("configuration");
    if let Some(cfg) = configuration.and_then(|c| c.child("crm_config")) {
        for set in cfg.children_named("cluster_property_set") {
            nvpairs_into(set, &mut facts.properties);
        }
    }
    if let Some(resources) = configuration.and_then(|c| c.child("resources")) {
        facts.stack = find_stack(resources);
        for p in resources.descendants_named("primitive") {
            if p.attr("class") == Some("stonith") {
                let mut meta = BTreeMap::new();
                for set in p.children_named("meta_attributes") {
                    nvpairs_into(set, &mut meta);
                }
                let stopped = meta
                    .get("target-role")
                    .is_some_and(|r| r.eq_ignore_ascii_case("stopped"));
                facts
                    .stonith
                    .push((p.attr("id").unwrap_or("").to_string(), stopped));
            }
            if p.attr("type") == Some(VIP_TYPE) {
                let params = instance_attributes(p);
                if let (Some(id), Some(ip)) = (p.attr("id"), params.get("ip")) {
                    facts.vips.push(Vip {
                        id: id.to_string(),
                        ip: ip.clone(),
                    });
                }
            }
        }
    }
    if let Some(status) = root.child("status") {
        for ns in status.children_named("node_state") {
            let Some(uname) = ns.attr("uname") else {
                continue;
            };
            let mut attrs = BTreeMap::new();
            for ta in ns.children_named("transient_attributes") {
                for set in ta.children_named("instance_attributes") {
                    nvpairs_into(set, &mut attrs);
                }
            }
            facts.transient.insert(uname.to_string(), attrs);
        }
    }
    Ok(facts)
}

fn is_stack(p: &Element) -> bool {
    p.attr("class") == Some(STACK_AGENT.0)
        && p.attr("provider") == Some(STACK_AGENT.1)
        && p.attr("type") == Some(STACK_AGENT.2)
}

fn find_stack(resources: &Element) -> Option<StackResource> {
    // A clone holding the primitive (directly or in a group), or the
    // primitive alone.
    let (clone, primitive) = resources
        .descendants_named("clone")
        .into_iter()
        .find_map(|c| {
            c.descendants_named("primitive")
                .into_iter()
                .find(|p| is_stack(p))
                .map(|p| (Some(c), p))
        })
        .or_else(|| {
            resources
                .descendants_named("primitive")
                .into_iter()
                .find(|p| is_stack(p))
                .map(|p| (None, p))
        })?;
    let mut clone_meta = BTreeMap::new();
    if let Some(c) = clone {
        for set in c.children_named("meta_attributes") {
            nvpairs_into(set, &mut clone_meta);
        }
    }
    let ops = primitive
        .child("operations")
        .map(|ops| {
            ops.children_named("op")
                .map(|o| Op {
                    name: o.attr("name").unwrap_or("").to_string(),
                    interval: o.attr("interval").unwrap_or("0").to_string(),
                    role: o.attr("role").map(str::to_string),
                    timeout: o.attr("timeout").map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(StackResource {
        id: primitive.attr("id").unwrap_or("stack").to_string(),
        clone_id: clone.and_then(|c| c.attr("id")).map(str::to_string),
        params: instance_attributes(primitive),
        clone_meta,
        ops,
    })
}

fn instance_attributes(p: &Element) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for set in p.children_named("instance_attributes") {
        nvpairs_into(set, &mut m);
    }
    m
}

/// Adds the set's `nvpair`s to `into`; the first value of a name wins, as
/// when Pacemaker evaluates sets in order.
fn nvpairs_into(set: &Element, into: &mut BTreeMap<String, String>) {
    for nv in set.children_named("nvpair") {
        if let (Some(n), Some(v)) = (nv.attr("name"), nv.attr("value")) {
            into.entry(n.to_string()).or_insert_with(|| v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cibadmin --query` in a 2-node namespaced test cluster configured by
    /// pcs-examples/rapidpro-cluster.pcs.sh (sandbox variant), with
    /// `maxlag=65536` and a `#health-disk` attribute set on node1.
    const RECORDED: &str = include_str!("fixtures/cib-live.xml");

    /// The recorded CIB holds repl_password=secret (and the sandbox fencing
    /// device's password): neither the facts' nor the resource's Debug
    /// shows it.
    #[test]
    fn the_cib_facts_debug_shows_no_secret() {
        let mut f = parse(RECORDED).unwrap();
        assert!(f.xml.contains("\"secret\""));
        let s = f.stack.as_mut().unwrap();
        s.params.insert("redis_password".into(), "hunter2".into());
        assert_eq!(s.params["repl_password"], "secret");
        let shown = format!("{f:?} {f:#?} {:?}", f.stack);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("\"repl_password\": \"<redacted>\""),
            "{shown}"
        );
        assert!(shown.contains("10.200.200.100"), "{shown}");
    }

    #[test]
    fn the_stack_resource_its_clone_and_its_parameters_are_found() {
        let f = parse(RECORDED).unwrap();
        let s = f.stack.as_ref().unwrap();
        assert_eq!(s.id, "stack");
        assert_eq!(s.clone_id.as_deref(), Some("stack-clone"));
        assert_eq!(s.promotable_id(), "stack-clone");
        assert_eq!(s.params["maxlag"], "65536");
        assert_eq!(s.params["primary_host"], "10.200.200.100");
        assert_eq!(s.clone_meta["promotable"], "true");
        assert_eq!(s.clone_meta["promoted-max"], "1");
        let monitors: Vec<_> = s
            .ops
            .iter()
            .filter(|o| o.name == "monitor")
            .map(|o| (o.interval.as_str(), o.role.as_deref()))
            .collect();
        assert_eq!(
            monitors,
            [("15s", Some("Promoted")), ("16s", Some("Unpromoted"))]
        );
        let cfg = s.config().unwrap();
        assert_eq!(cfg.maxlag, 65536);
        assert_eq!(cfg.repl_user, "replicator");
        assert_eq!(cfg.repl_password.as_deref(), Some("secret"));
        assert_eq!(cfg.pgport, 5432);
    }

    #[test]
    fn the_vip_is_the_ipaddr2_at_primary_host() {
        let f = parse(RECORDED).unwrap();
        let vip = f.vip().unwrap();
        assert_eq!(
            (vip.id.as_str(), vip.ip.as_str()),
            ("vip", "10.200.200.100")
        );
        assert_eq!(f.properties["stonith-enabled"], "true");
        assert_eq!(f.properties["cluster-name"], "rapidpro");
    }

    #[test]
    fn health_attributes_come_from_the_status_section() {
        let f = parse(RECORDED).unwrap();
        let h = f.health_attributes("node1");
        assert_eq!(h.get("#health-disk").map(String::as_str), Some("yellow"));
        assert!(!h.contains_key("master-stack"));
        assert!(f.health_attributes("node2").is_empty());
        assert!(f.health_attributes("node9").is_empty());
    }

    #[test]
    fn a_cib_without_the_stack_says_so() {
        let f = parse("<cib><configuration><resources/></configuration></cib>").unwrap();
        assert!(f.stack.is_none() && f.vip().is_none());
        assert!(f
            .require_stack()
            .unwrap_err()
            .to_string()
            .contains("ocf:rapidpro:stack"));
        assert!(parse("<cibx/>").is_err());
        assert!(parse("<cib>").is_err());
    }

    #[test]
    fn cibsecret_values_are_read_from_their_files() {
        let dir = std::env::temp_dir().join(format!("rapidproctl-secrets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("stack")).unwrap();
        std::fs::write(dir.join("stack/repl_password"), "s3cret\n").unwrap();
        let mut s = parse(RECORDED).unwrap().stack.unwrap();
        s.params
            .insert("repl_password".into(), CIBSECRET_MARK.into());
        s.params
            .insert("redis_password".into(), CIBSECRET_MARK.into());
        s.resolve_secrets(&dir);
        assert_eq!(s.params["repl_password"], "s3cret");
        assert!(!s.params.contains_key("redis_password"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
