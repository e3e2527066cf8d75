#!/bin/sh
# rapidpro-cluster.crm.sh - the rapidpro-ha cluster configuration for crmsh.
#
# Writes a crm shell script to stdout: the same configuration as
# rapidpro-cluster.pcs.sh (see README.md), for crmsh 4.x (checked with 4.4.0):
# promotable clone written "clone ... meta promotable=true" (not the
# deprecated "ms"), roles Promoted/Unpromoted. The application tier (uwsgi,
# celery, celerybeat, nginx) is not in it yet.
#
# Apply it to the live cluster (as root on a cluster node where
# ocf:rapidpro:stack is installed):
#   sh rapidpro-cluster.crm.sh > rapidpro.crm      # read it first
#   crm -f rapidpro.crm                            # or: sh rapidpro-cluster.crm.sh | crm -f -
#
# Apply it to a CIB file instead of the live cluster: crmsh honours CIB_file
# (like cibadmin, crm_verify and the other Pacemaker tools), and needs no
# running cluster for it:
#   cibadmin --query > rapidpro.xml                # or: cibadmin --empty > rapidpro.xml
#   sh rapidpro-cluster.crm.sh | CIB_file=$PWD/rapidpro.xml crm -f -
#   crm_verify --xml-file rapidpro.xml -V
#   cibadmin --replace --scope configuration --xml-file rapidpro.xml   # push it
# A shadow CIB works too, without a cluster: `crm cib new rapidpro empty`
# (or `crm cib new rapidpro` from the live CIB), then
# `sh rapidpro-cluster.crm.sh | CIB_shadow=rapidpro crm -f -`, then
# `crm cib commit rapidpro` (live cluster) and `crm cib delete rapidpro`.
# (crmsh's "Fencing and resource management disabled due to lack of quorum"
# warning on a CIB file is harmless: a file has no quorum status.)
#
# crmsh refuses ("got no meta-data, does this RA exist?") a resource whose
# agent is not installed on the machine running crm: ocf:rapidpro:stack must
# be in /usr/lib/ocf/resource.d/rapidpro/stack, and for VARIANT=sandbox
# fence_rapidpro_sandbox in /usr/sbin. `crm -F -f ...` forces the commit:
# acceptable for the sandbox only.
#
# Environment: the same as rapidpro-cluster.pcs.sh, without CIB and FORCE:
#   VARIANT (production|sandbox), NODES ("sms1 sms2"), VIP (10.172.20.200),
#   VIP_CIDR (24), VIP_NIC (eth0), PRIMARY_HOST ($VIP), STACK_PARAMS (extra
#   "name=value ..." of the stack agent), MONITOR_PROMOTED (15s),
#   MONITOR_UNPROMOTED (16s), FENCE_DELAY (5s); production fencing per node N:
#   IPMI_N_ADDR, IPMI_N_USER, IPMI_N_PASSWORD (non-alphanumerics of N become _).
# The output holds the IPMI passwords: keep it out of shared places.
set -eu

die() {
    printf 'rapidpro-cluster.crm.sh: error: %s\n' "$*" >&2
    exit 1
}

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

case $VARIANT in
    production | sandbox) ;;
    *) die "VARIANT must be production or sandbox, not '$VARIANT'" ;;
esac
[ "$MONITOR_PROMOTED" != "$MONITOR_UNPROMOTED" ] ||
    die "MONITOR_PROMOTED and MONITOR_UNPROMOTED must differ (Pacemaker tells the two monitors apart by interval)"

# check_value NAME VALUE: refuse a newline, which would end a crmsh command.
check_value() {
    case $2 in
        *'
'*) die "$1 contains a newline" ;;
    esac
}

# q VALUE: VALUE as a crmsh double-quoted string (crmsh unescapes \" and \\).
q() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

for name in VIP VIP_CIDR VIP_NIC PRIMARY_HOST MONITOR_PROMOTED MONITOR_UNPROMOTED FENCE_DELAY; do
    eval "check_value $name \"\$$name\""
done

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
nodes=$(printf '%s\n' $NODES | tr '\n' ' ')
nodes=${nodes% }

stack_params="primary_host=$(q "$PRIMARY_HOST")"
for param in $STACK_PARAMS; do
    case $param in
        primary_host=*) die "set primary_host with PRIMARY_HOST, not STACK_PARAMS" ;;
        [A-Za-z_]*=*) ;;
        *) die "STACK_PARAMS must be name=value words, not '$param'" ;;
    esac
    stack_params="$stack_params ${param%%=*}=$(q "${param#*=}")"
done

if [ "$VARIANT" = production ]; then
    for node in $NODES; do
        var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
        for field in ADDR USER PASSWORD; do
            eval "check_value IPMI_${var}_$field \"\${IPMI_${var}_$field:-}\""
        done
    done
fi

no_quorum=
if [ "$node_count" -ge 3 ]; then
    # With two nodes, corosync's two_node mode handles quorum: keep the default.
    no_quorum=" no-quorum-policy=stop"
fi

# generate: the whole crm script. It is printed only once complete: crm -f
# commits whatever it read when its input ends, even without "commit".
generate() {
    cat <<EOF
# rapidpro-ha cluster configuration (VARIANT=$VARIANT, NODES="$nodes"),
# generated by rapidpro-cluster.crm.sh. Apply with: crm -f FILE
configure

# Cluster properties. priority-fencing-delay: in a split, the node running the
# Promoted instance (stack-clone priority=10) is fenced last, so it survives.
property cib-bootstrap-options: stonith-enabled=true priority-fencing-delay=$(q "$FENCE_DELAY")$no_quorum

# The old runbook's "two failures within 90 s, then tilt". Also set on
# stack-clone and vip themselves below.
rsc_defaults rsc-options: migration-threshold=2 failure-timeout=90s

# The data tier: PostgreSQL + Redis replication as one promotable clone.
primitive stack ocf:rapidpro:stack \\
	params $stack_params \\
	op start timeout=120s interval=0 \\
	op stop timeout=120s interval=0 \\
	op promote timeout=60s interval=0 \\
	op demote timeout=120s interval=0 \\
	op notify timeout=60s interval=0 \\
	op monitor interval=$(q "$MONITOR_PROMOTED") role=Promoted timeout=20s \\
	op monitor interval=$(q "$MONITOR_UNPROMOTED") role=Unpromoted timeout=20s
clone stack-clone stack \\
	meta promotable=true promoted-max=1 promoted-node-max=1 clone-max=$node_count notify=true \\
	priority=10 migration-threshold=2 failure-timeout=90s

# The virtual IP follows the Promoted instance, once it is promoted.
primitive vip ocf:heartbeat:IPaddr2 \\
	params ip=$(q "$VIP") cidr_netmask=$(q "$VIP_CIDR") nic=$(q "$VIP_NIC") \\
	op monitor interval=10s \\
	meta migration-threshold=2 failure-timeout=90s
colocation vip-with-promoted-stack inf: vip stack-clone:Promoted
# Two one-way orders: the VIP stops only after the demote, so standbys
# streaming through it receive the old primary's shutdown checkpoint.
order vip-after-stack-promote Mandatory: stack-clone:promote vip:start symmetrical=false
order vip-stop-after-stack-demote Mandatory: stack-clone:demote vip:stop symmetrical=false

EOF

    if [ "$VARIANT" = production ]; then
        cat <<'EOF'
# Fencing. REPLACE WITH YOUR HARDWARE'S FENCE AGENT: fence_ipmilan (IPMI over
# LAN, lanplus) is an example; use fence_redfish, fence_ilo*, fence_idrac, ...
# as your servers need, and test it (stonith_admin --reboot NODE from the other
# node) before going live. fence_ipmilan also takes
# password_script=/path/printing/the/password instead of a password.
EOF
        for node in $NODES; do
            var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
            eval "addr=\${IPMI_${var}_ADDR:-}"
            eval "user=\${IPMI_${var}_USER:-}"
            eval "password=\${IPMI_${var}_PASSWORD:-}"
            if [ -z "$addr" ] || [ -z "$user" ] || [ -z "$password" ]; then
                printf 'rapidpro-cluster.crm.sh: WARNING: %s unset: fence-%s gets CHANGE-ME placeholders; fencing of %s fails until you set them\n' \
                    "IPMI_${var}_ADDR, IPMI_${var}_USER or IPMI_${var}_PASSWORD" "$node" "$node" >&2
            fi
            cat <<EOF
primitive fence-$node stonith:fence_ipmilan \\
	params ip=$(q "${addr:-CHANGE-ME-ipmi-address-of-$node}") username=$(q "${user:-CHANGE-ME}") \\
	password=$(q "${password:-CHANGE-ME}") lanplus=1 pcmk_host_list=$(q "$node") \\
	op monitor interval=60s
location fence-$node-avoids-$node fence-$node -inf: $node
EOF
        done
    else
        cat <<EOF
# Fencing of the namespace test cluster: the harness bind-mounts
# sandbox/fence_rapidpro_sandbox into each node's /usr/sbin.
primitive fence-sandbox stonith:fence_rapidpro_sandbox \\
	params pcmk_host_list=$(q "$nodes") \\
	op monitor interval=60s
EOF
    fi

    printf '\ncommit\n'
}

config=$(generate)
printf '%s\n' "$config"
