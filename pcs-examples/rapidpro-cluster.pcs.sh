#!/bin/sh
# rapidpro-cluster.pcs.sh - the rapidpro-ha cluster configuration, applied with pcs
# to a CIB file.
#
# What it builds (see README.md in this directory for every detail):
#   - cluster properties: stonith-enabled=true, priority-fencing-delay
#     (and no-quorum-policy=stop with 3 or more nodes);
#   - resource defaults migration-threshold=2 failure-timeout=90s
#     (the old runbook's "two failures within 90 s, then tilt"), also set on
#     stack-clone and vip themselves;
#   - stack-clone: the promotable clone of ocf:rapidpro:stack (PostgreSQL +
#     Redis replication), one Promoted instance;
#   - vip: ocf:heartbeat:IPaddr2, colocated with the Promoted instance and
#     started after the promotion;
#   - fencing: one fence_ipmilan device per node (VARIANT=production), or the
#     namespace test cluster's fence_rapidpro_sandbox (VARIANT=sandbox).
#
# The application tier (uwsgi, celery, celerybeat, nginx) is not in this
# script yet.
#
# Admin procedure on a live cluster (run as root on one cluster node, where
# ocf:rapidpro:stack is installed as /usr/lib/ocf/resource.d/rapidpro/stack):
#
#   pcs cluster cib rapidpro.xml                # 1. dump the live CIB to a file
#   cp rapidpro.xml rapidpro.orig.xml           #    (keep the original for a diff push)
#   IPMI_sms1_ADDR=10.172.20.11 IPMI_sms1_USER=admin IPMI_sms1_PASSWORD=... \
#   IPMI_sms2_ADDR=10.172.20.12 IPMI_sms2_USER=admin IPMI_sms2_PASSWORD=... \
#   CIB=rapidpro.xml sh rapidpro-cluster.pcs.sh # 2. edit the file, not the cluster
#   crm_verify --xml-file rapidpro.xml -V       # 3. check it
#   pcs -f rapidpro.xml config                  #    and read it
#   pcs cluster cib-push rapidpro.xml --config  # 4. push the configuration section
#     (or: pcs cluster cib-push rapidpro.xml diff-against=rapidpro.orig.xml)
#   pcs status --full                           # 5. watch the stack come up
#
# Apply it once, to a CIB without these resources: pcs refuses to create an id
# that already exists. The file named by CIB must exist: pcs -f would silently
# start from an empty CIB otherwise.
#
# Environment (defaults are the old production system):
#   CIB                 required: the CIB XML file to edit (pcs -f "$CIB")
#   VARIANT             production (default) or sandbox: only fencing differs
#   NODES               cluster nodes, space separated (default "sms1 sms2")
#   VIP, VIP_CIDR, VIP_NIC
#                       virtual IP (default 10.172.20.200), prefix length (24)
#                       and interface (eth0)
#   PRIMARY_HOST        primary_host of the stack agent (default $VIP)
#   STACK_PARAMS        extra "name=value ..." parameters of the stack agent,
#                       e.g. "pgdata=/x rewind=true sync_replication=on"
#                       (split on blanks: values cannot contain spaces)
#   MONITOR_PROMOTED    monitor interval in the Promoted role (15s)
#   MONITOR_UNPROMOTED  monitor interval in the Unpromoted role (16s); it must
#                       differ from MONITOR_PROMOTED
#   FENCE_DELAY         priority-fencing-delay (5s)
#   STACK_AGENT         benchmarks only: ocf:pacemaker:Stateful in place of
#                       ocf:rapidpro:stack measures what Pacemaker and
#                       Corosync alone take (PRIMARY_HOST and STACK_PARAMS
#                       are then not passed); default ocf:rapidpro:stack
#   FORCE               1: create the stack resource even though
#                       ocf:rapidpro:stack is not installed on this machine
#                       (pcs --force); also forces the fence devices
#   production fencing, per node N (non-alphanumeric characters of N become _):
#   IPMI_N_ADDR, IPMI_N_USER, IPMI_N_PASSWORD
#                       address, user and password of N's IPMI/BMC
#   sandbox fencing:
#   the device runs /usr/sbin/fence_rapidpro_sandbox (sandbox/ in this
#   directory); pcs is given --force when that agent is not installed here.
set -eu

die() {
    printf 'rapidpro-cluster.pcs.sh: error: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'rapidpro-cluster.pcs.sh: %s\n' "$*" >&2
}

[ -n "${CIB:-}" ] || die "CIB is not set: give the CIB file to edit, e.g. 'pcs cluster cib rapidpro.xml' then CIB=rapidpro.xml"
[ -f "$CIB" ] || die "CIB file '$CIB' does not exist: create it with 'pcs cluster cib $CIB' (live cluster) or 'cibadmin --empty > $CIB'"

VARIANT=${VARIANT:-production}
NODES=${NODES:-sms1 sms2}
VIP=${VIP:-10.172.20.200}
VIP_CIDR=${VIP_CIDR:-24}
VIP_NIC=${VIP_NIC:-eth0}
PRIMARY_HOST=${PRIMARY_HOST:-$VIP}
STACK_PARAMS=${STACK_PARAMS:-}
MONITOR_PROMOTED=${MONITOR_PROMOTED:-15s}
MONITOR_UNPROMOTED=${MONITOR_UNPROMOTED:-16s}
FENCE_DELAY=${FENCE_DELAY:-5s}
FORCE=${FORCE:-}
STACK_AGENT=${STACK_AGENT:-ocf:rapidpro:stack}

case $VARIANT in
    production | sandbox) ;;
    *) die "VARIANT must be production or sandbox, not '$VARIANT'" ;;
esac
[ "$MONITOR_PROMOTED" != "$MONITOR_UNPROMOTED" ] ||
    die "MONITOR_PROMOTED and MONITOR_UNPROMOTED must differ (Pacemaker tells the two monitors apart by interval)"

# No pathname expansion from here on: NODES and STACK_PARAMS are split on blanks.
set -f
node_count=0
for node in $NODES; do
    case $node in
        *[!A-Za-z0-9._-]* | -*) die "invalid node name '$node' in NODES" ;;
    esac
    node_count=$((node_count + 1))
done
[ "$node_count" -ge 2 ] || die "NODES must name at least two nodes, got '$NODES'"
for param in $STACK_PARAMS; do
    case $param in
        [A-Za-z_]*=*) ;;
        *) die "STACK_PARAMS must be name=value words, not '$param'" ;;
    esac
    case $param in
        primary_host=*) die "set primary_host with PRIMARY_HOST, not STACK_PARAMS" ;;
    esac
done

force=
if [ "$FORCE" = 1 ]; then
    force=--force
fi

# pcs validates ocf:rapidpro:stack against the meta-data that crm_resource gets
# from the installed agent, and refuses without --force when it is missing.
# Pacemaker looks for it only under its compiled-in OCF directory
# (/usr/lib/ocf/resource.d on Debian): it ignores OCF_ROOT, so ask crm_resource,
# exactly as pcs does.
if [ -z "$force" ] &&
    ! timeout 30 crm_resource --show-metadata "$STACK_AGENT" >/dev/null 2>&1; then
    die "the resource agent $STACK_AGENT is not installed on this machine (expected /usr/lib/ocf/resource.d/rapidpro/stack giving its meta-data). Install rapidpro-agent here, or run this script on a cluster node; FORCE=1 writes the configuration anyway, unchecked (pcs --force)."
fi

pcs_f() {
    pcs -f "$CIB" "$@"
}

# --- Cluster properties -----------------------------------------------------
say "cluster properties"
pcs_f property set stonith-enabled=true "priority-fencing-delay=$FENCE_DELAY"
if [ "$node_count" -ge 3 ]; then
    # With two nodes, corosync's two_node mode handles quorum: keep the default.
    pcs_f property set no-quorum-policy=stop
fi

# --- Resource defaults: "two failures within 90 s, then tilt" ---------------
# pcs 0.11 spells it "defaults update" (the form it keeps); older pcs only
# "defaults name=value", the fallback.
# The same values are set on stack-clone and vip below, whatever pcs did here.
say "resource defaults"
pcs_f resource defaults update migration-threshold=2 failure-timeout=90s 2>/dev/null ||
    pcs_f resource defaults migration-threshold=2 failure-timeout=90s

# --- The data tier: PostgreSQL + Redis as one promotable clone --------------
say "stack-clone (ocf:rapidpro:stack, promotable)"
# The clone's meta attributes go on the create command: pcs 0.11.5's
# "pcs resource meta stack-clone ..." re-validates the agent and fails, even
# with --force, when the agent is not installed (FORCE=1).
# priority=10: with priority-fencing-delay, the node running the Promoted
# instance is fenced last, so it wins a split.
if [ "$STACK_AGENT" = ocf:rapidpro:stack ]; then
    stack_params="primary_host=$PRIMARY_HOST $STACK_PARAMS"
else
    stack_params=
fi
# shellcheck disable=SC2086 # stack_params and force are split on purpose
pcs_f resource create stack "$STACK_AGENT" \
    $stack_params \
    op start timeout=120s \
    op stop timeout=120s \
    op promote timeout=60s \
    op demote timeout=120s \
    op notify timeout=60s \
    op monitor "interval=$MONITOR_PROMOTED" role=Promoted timeout=20s \
    op monitor "interval=$MONITOR_UNPROMOTED" role=Unpromoted timeout=20s \
    promotable promoted-max=1 promoted-node-max=1 "clone-max=$node_count" \
    notify=true priority=10 migration-threshold=2 failure-timeout=90s \
    $force

# --- The virtual IP follows the Promoted instance ----------------------------
say "vip (ocf:heartbeat:IPaddr2 $VIP/$VIP_CIDR on $VIP_NIC)"
pcs_f resource create vip ocf:heartbeat:IPaddr2 \
    "ip=$VIP" "cidr_netmask=$VIP_CIDR" "nic=$VIP_NIC" \
    op monitor interval=10s \
    meta migration-threshold=2 failure-timeout=90s
pcs_f constraint colocation add vip with Promoted stack-clone INFINITY
# Two one-way orders, as PAF recommends, not one symmetrical order: a
# symmetrical "promote then start vip" would stop the VIP *before* the
# demote, and the old primary's standbys, which stream through the VIP,
# would then never receive its shutdown checkpoint (its fast shutdown waits
# for them until wal_sender_timeout, and its history diverges).
pcs_f constraint order promote stack-clone then start vip symmetrical=false kind=Mandatory
pcs_f constraint order demote stack-clone then stop vip symmetrical=false kind=Mandatory

# --- Fencing -----------------------------------------------------------------
if [ "$VARIANT" = production ]; then
    # REPLACE WITH YOUR HARDWARE'S FENCE AGENT. fence_ipmilan is an example
    # (IPMI over LAN, lanplus); use fence_redfish, fence_ilo*, fence_idrac, ...
    # as your servers need, and test it: `stonith_admin --reboot NODE` from
    # the other node, before going live. Instead of a password in the CIB,
    # fence_ipmilan also takes password_script=/path/printing/the/password.
    for node in $NODES; do
        var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
        eval "addr=\${IPMI_${var}_ADDR:-}"
        eval "user=\${IPMI_${var}_USER:-}"
        eval "password=\${IPMI_${var}_PASSWORD:-}"
        if [ -z "$addr" ] || [ -z "$user" ] || [ -z "$password" ]; then
            say "WARNING: IPMI_${var}_ADDR, IPMI_${var}_USER or IPMI_${var}_PASSWORD unset: fence-$node gets CHANGE-ME placeholders; fencing of $node fails until you set them"
        fi
        say "fence-$node (stonith:fence_ipmilan for $node)"
        # shellcheck disable=SC2086 # force is empty or --force
        pcs_f stonith create "fence-$node" fence_ipmilan \
            "ip=${addr:-CHANGE-ME-ipmi-address-of-$node}" \
            "username=${user:-CHANGE-ME}" \
            "password=${password:-CHANGE-ME}" \
            lanplus=1 "pcmk_host_list=$node" \
            op monitor interval=60s $force
        # A node does not run the device that fences it.
        pcs_f constraint location "fence-$node" avoids "$node"
    done
else
    # The namespace test cluster: the harness bind-mounts
    # sandbox/fence_rapidpro_sandbox into each node's /usr/sbin. pcs refuses a
    # stonith agent it cannot find unless --force: acceptable here only.
    sandbox_force=$force
    if ! timeout 30 crm_resource --show-metadata stonith:fence_rapidpro_sandbox >/dev/null 2>&1; then
        say "fence_rapidpro_sandbox is not installed here: creating fence-sandbox with --force"
        sandbox_force=--force
    fi
    say "fence-sandbox (stonith:fence_rapidpro_sandbox for $NODES)"
    # shellcheck disable=SC2086 # sandbox_force is empty or --force
    pcs_f stonith create fence-sandbox fence_rapidpro_sandbox \
        "pcmk_host_list=$NODES" \
        op monitor interval=60s $sandbox_force
fi

say "done: check with 'crm_verify --xml-file $CIB -V', push with 'pcs cluster cib-push $CIB --config'"
