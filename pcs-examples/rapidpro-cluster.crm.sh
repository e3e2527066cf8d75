#!/bin/sh
# rapidpro-cluster.crm.sh - the rapidpro-ha cluster configuration for crmsh.
#
# Writes a crm shell script to stdout: the same configuration as
# rapidpro-cluster.pcs.sh (see README.md), for crmsh 4.x (checked with 4.4.0):
# promotable clone written "clone ... meta promotable=true" (not the
# deprecated "ms"), roles Promoted/Unpromoted; with the application tier
# (group app: uwsgi, celery, celerybeat, nginx; APP=yes) and the alert
# rapidpro-alert (when ALERT_RECIPIENTS is set).
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
# be in /usr/lib/ocf/resource.d/rapidpro/stack, for VARIANT=sandbox
# fence_rapidpro_sandbox in /usr/sbin, and for VARIANT=production (APP=yes)
# the systemd units rapidpro, celery and celerybeat must be known to a running
# systemd. `crm -F -f ...` forces the commit: acceptable for the sandbox, or
# for production on a machine that is not a cluster node, only.
#
# Quorum device (QNETD_HOST set; why: README.md, "Two servers and a network
# split"): crmsh has no offline command for it (`crm cluster init qdevice`
# works over ssh on the live cluster), so this script edits COROSYNC_CONF, a
# copy of /etc/corosync/corosync.conf, itself: in the quorum section it
# removes two_node and adds the same device block as `pcs quorum device add`
# (model net, votes 1, net { host, algorithm ffsplit }, heuristics { mode
# sync, exec_gateway and exec_pingN: /bin/ping -q -n -c 1 -W 1 ADDRESS },
# timeout, sync_timeout). The crm script it prints sets no-quorum-policy=stop
# and priority-fencing-delay=0s (FENCE_DELAY still wins when given). Then, on
# the live cluster, in this order (CLUSTER is totem.cluster_name; the script
# prints the steps with the names filled in):
#   on QNETD_HOST (TCP port 5403 open to the nodes):
#     apt install corosync-qnetd
#     corosync-qnetd-certutil -i          (skip if /etc/corosync/qnetd/nssdb
#                                          exists: Debian's package made it)
#     systemctl enable --now corosync-qnetd
#   on every node: apt install corosync-qdevice; copy
#     /etc/corosync/qnetd/nssdb/qnetd-cacert.crt from QNETD_HOST, then
#     corosync-qdevice-net-certutil -i -c qnetd-cacert.crt
#   on one node (sms1):
#     corosync-qdevice-net-certutil -r -n CLUSTER
#     (copy /etc/corosync/qdevice/net/nssdb/qdevice-net-node.crq to QNETD_HOST)
#   on QNETD_HOST:
#     corosync-qnetd-certutil -s -c qdevice-net-node.crq -n CLUSTER
#     (copy /etc/corosync/qnetd/nssdb/cluster-CLUSTER.crt back to sms1)
#   on sms1: corosync-qdevice-net-certutil -M -c cluster-CLUSTER.crt
#     (copy /etc/corosync/qdevice/net/nssdb/qdevice-net-node.p12 to the others)
#   on every other node: corosync-qdevice-net-certutil -m -c qdevice-net-node.p12
#   copy COROSYNC_CONF to /etc/corosync/corosync.conf on every node, then on
#   one node: corosync-cfgtool -R (every node reloads it)
#   on every node: systemctl enable --now corosync-qdevice
#   check: corosync-qdevice-tool -sv, corosync-quorumtool -s; then crm -f.
# (pcs users: `pcs quorum device add ...` does all of this through pcsd; see
# rapidpro-cluster.pcs.sh.)
#
# Ping fallback (PING_HOSTS set; two nodes without a third host): the clone
# ping-clone of ocf:pacemaker:ping and a rule keeping the Promoted role off a
# node that reaches none of PING_HOSTS. It does not stop a cut-off primary
# from winning the fence race: see README.md in this directory.
#
# Environment: the same as rapidpro-cluster.pcs.sh, without CIB and FORCE:
#   VARIANT (production|sandbox), NODES ("sms1 sms2"), VIP (10.172.20.200),
#   VIP_CIDR (24), VIP_NIC (eth0), PRIMARY_HOST ($VIP), STACK_PARAMS (extra
#   "name=value ..." of the stack agent), STACK_SECRETS (repl_password
#   and/or redis_password, written as name=lrm://), MONITOR_PROMOTED (15s),
#   MONITOR_UNPROMOTED (16s), FENCE_DELAY (5s); production fencing per node N:
#   IPMI_N_ADDR, IPMI_N_USER, IPMI_N_PASSWORD_FILE (default
#   /etc/pacemaker/ipmi-N.password; non-alphanumerics of N become _);
#   the app tier: APP (yes|no, default yes), NGINX_STATUS_URL and
#   NGINX_STATUS_REGEX (production http://localhost/ and "rapidpro", sandbox
#   http://127.0.0.1/ and "^rapidpro stand-in"); sandbox only: APP_DIR
#   (/usr/share/rapidpro-ha/standin), STANDIN_ETC (/etc/rapidpro-standin),
#   STANDIN_RUN_DIR (/run/rapidpro-standin), STANDIN_LOG_DIR
#   (/var/log/rapidpro-standin; must exist on every node), STANDIN_UWSGI_SOCKET
#   (127.0.0.1:3031); alerts: ALERT_RECIPIENTS (space separated; empty: no
#   alert), ALERT_OPTIONS (name=value words), ALERT_PATH
#   (/usr/sbin/rapidpro-alert); quorum device: QNETD_HOST (empty: none),
#   QNETD_GATEWAY and COROSYNC_CONF (both required with QNETD_HOST),
#   QNETD_PING_HOSTS, QDEVICE_TIMEOUT_MS (2000), QDEVICE_SYNC_TIMEOUT_MS
#   (5000); ping fallback: PING_HOSTS (empty: none). See
#   rapidpro-cluster.pcs.sh for each.
#
# No secret goes into the output, hence into the CIB (see "Secrets" in
# rapidpro-cluster.pcs.sh): repl_password and redis_password in STACK_PARAMS
# and IPMI_N_PASSWORD are refused. Leave repl_password unset (system_user's
# ~/.pgpass), or name it and redis_password in STACK_SECRETS and store each on
# every node with rapidpro-secret.sh before `crm -f`; the fence devices read
# their BMC password with password_script="cat IPMI_N_PASSWORD_FILE".
set -eu

die() {
    printf 'rapidpro-cluster.crm.sh: error: %s\n' "$*" >&2
    exit 1
}

warn() {
    printf 'rapidpro-cluster.crm.sh: WARNING: %s\n' "$*" >&2
}

say() {
    printf 'rapidpro-cluster.crm.sh: %s\n' "$*" >&2
}

VARIANT=${VARIANT:-production}
NODES=${NODES:-sms1 sms2}
VIP=${VIP:-10.172.20.200}
VIP_CIDR=${VIP_CIDR:-24}
VIP_NIC=${VIP_NIC:-eth0}
PRIMARY_HOST=${PRIMARY_HOST:-$VIP}
STACK_PARAMS=${STACK_PARAMS:-}
STACK_SECRETS=${STACK_SECRETS:-}
MONITOR_PROMOTED=${MONITOR_PROMOTED:-15s}
MONITOR_UNPROMOTED=${MONITOR_UNPROMOTED:-16s}
QNETD_HOST=${QNETD_HOST:-}
QNETD_GATEWAY=${QNETD_GATEWAY:-}
QNETD_PING_HOSTS=${QNETD_PING_HOSTS:-}
COROSYNC_CONF=${COROSYNC_CONF:-}
QDEVICE_TIMEOUT_MS=${QDEVICE_TIMEOUT_MS:-2000}
QDEVICE_SYNC_TIMEOUT_MS=${QDEVICE_SYNC_TIMEOUT_MS:-5000}
PING_HOSTS=${PING_HOSTS:-}
# With a quorum device only the quorate side fences: no fence race is left to
# win, and a delay would only slow the failover.
if [ -n "$QNETD_HOST" ]; then
    FENCE_DELAY=${FENCE_DELAY:-0s}
else
    FENCE_DELAY=${FENCE_DELAY:-5s}
fi
APP=${APP:-yes}
APP_DIR=${APP_DIR:-/usr/share/rapidpro-ha/standin}
STANDIN_ETC=${STANDIN_ETC:-/etc/rapidpro-standin}
STANDIN_RUN_DIR=${STANDIN_RUN_DIR:-/run/rapidpro-standin}
STANDIN_LOG_DIR=${STANDIN_LOG_DIR:-/var/log/rapidpro-standin}
STANDIN_UWSGI_SOCKET=${STANDIN_UWSGI_SOCKET:-127.0.0.1:3031}
ALERT_RECIPIENTS=${ALERT_RECIPIENTS:-}
ALERT_OPTIONS=${ALERT_OPTIONS:-}
ALERT_PATH=${ALERT_PATH:-/usr/sbin/rapidpro-alert}

case $VARIANT in
    production | sandbox) ;;
    *) die "VARIANT must be production or sandbox, not '$VARIANT'" ;;
esac
case $VARIANT in
    production)
        NGINX_STATUS_URL=${NGINX_STATUS_URL:-http://localhost/}
        NGINX_STATUS_REGEX=${NGINX_STATUS_REGEX:-rapidpro}
        ;;
    sandbox)
        NGINX_STATUS_URL=${NGINX_STATUS_URL:-http://127.0.0.1/}
        NGINX_STATUS_REGEX=${NGINX_STATUS_REGEX:-^rapidpro stand-in}
        ;;
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
        repl_password=* | redis_password=*)
            die "STACK_PARAMS must not hold ${param%%=*}: it would be written into the crm script and the CIB (printed by crm configure show and pcs resource config). Leave repl_password unset and give system_user a ~/.pgpass on every node, or name it in STACK_SECRETS and store it on every node with rapidpro-secret.sh (see rapidpro-cluster.pcs.sh)" ;;
        [A-Za-z_]*=*) ;;
        *) die "STACK_PARAMS must be name=value words, not '$param'" ;;
    esac
    stack_params="$stack_params ${param%%=*}=$(q "${param#*=}")"
done
secrets_seen=" "
for secret in $STACK_SECRETS; do
    case $secret in
        repl_password | redis_password) ;;
        *) die "STACK_SECRETS names stack parameters kept out of the CIB: repl_password and/or redis_password, not '$secret'" ;;
    esac
    case $secrets_seen in
        *" $secret "*) die "STACK_SECRETS names '$secret' twice" ;;
    esac
    secrets_seen="$secrets_seen$secret "
    # cibsecret's mark: pacemaker-execd replaces it with the value stored in
    # /var/lib/pacemaker/lrm/secrets/stack/$secret on the node it runs on.
    stack_params="$stack_params $secret=$(q lrm://)"
done

# check_path NAME VALUE: VALUE is an absolute path the agents can splice
# into shell commands (ocf:heartbeat:anything runs "su -c '... $binfile ...'").
check_path() {
    case $2 in
        /*) ;;
        *) die "$1 must be an absolute path, not '$2'" ;;
    esac
    case $2 in
        *[!A-Za-z0-9._/+-]*) die "$1 may hold only letters, digits and . _ / + - (no blanks or shell characters), not '$2'" ;;
    esac
}

case $APP in
    yes | no) ;;
    *) die "APP must be yes or no, not '$APP'" ;;
esac
if [ "$APP" = yes ]; then
    case $NGINX_STATUS_URL in
        http://*/*) ;;
        *) die "NGINX_STATUS_URL must be an http:// URL with a path (ocf:heartbeat:nginx checks http://*/*), not '$NGINX_STATUS_URL'" ;;
    esac
    case $NGINX_STATUS_URL in
        *[[:space:]]*) die "NGINX_STATUS_URL must not contain blanks: '$NGINX_STATUS_URL'" ;;
    esac
    case $NGINX_STATUS_REGEX in
        '') die "NGINX_STATUS_REGEX must not be empty" ;;
    esac
    check_value NGINX_STATUS_REGEX "$NGINX_STATUS_REGEX"
    if [ "$VARIANT" = sandbox ]; then
        for name in APP_DIR STANDIN_ETC STANDIN_RUN_DIR STANDIN_LOG_DIR; do
            eval "check_path $name \"\$$name\""
        done
        host=${STANDIN_UWSGI_SOCKET%:*} port=${STANDIN_UWSGI_SOCKET##*:}
        case $host:$port in
            "$STANDIN_UWSGI_SOCKET") ;;
            *) host= ;;
        esac
        case $host in
            '' | *[!A-Za-z0-9.-]*) host= ;;
        esac
        case $port in
            '' | *[!0-9]*) host= ;;
        esac
        [ -n "$host" ] ||
            die "STANDIN_UWSGI_SOCKET must be HOST:PORT (uwsgi's TCP socket, checked by check-tcp), not '$STANDIN_UWSGI_SOCKET'"
        # crmsh does not look at ocf:heartbeat:anything's binfile: missing
        # stand-in files would only show as failed starts in the cluster.
        missing=
        for file in "$APP_DIR/bin/rapidpro-standin-uwsgi" "$APP_DIR/bin/rapidpro-standin-celery" \
            "$APP_DIR/bin/rapidpro-standin-celerybeat" "$APP_DIR/bin/check-tcp"; do
            [ -x "$file" ] || missing="$missing $file"
        done
        for file in "$STANDIN_ETC/standin.env" "$STANDIN_ETC/nginx.conf"; do
            [ -f "$file" ] || missing="$missing $file"
        done
        [ -z "$missing" ] ||
            warn "the stand-in app is not installed on this machine:$missing missing (APP_DIR=$APP_DIR, STANDIN_ETC=$STANDIN_ETC); it must be on every node"
    fi
fi

# The alert agent's options (lib/src/alert/), each a name=value word.
alert_option_names="smtp_server smtp_tls smtp_user smtp_ca_file mail_from sms_url sms_method sms_user sms_ca_file send_timeout deadline"
alert_attributes=
for option in $ALERT_OPTIONS; do
    case $option in
        [A-Za-z_]*=*) ;;
        *) die "ALERT_OPTIONS must be name=value words, not '$option'" ;;
    esac
    case " $alert_option_names " in
        *" ${option%%=*} "*) ;;
        *) die "ALERT_OPTIONS: unknown option '${option%%=*}' (the alert agent takes: $alert_option_names)" ;;
    esac
    case $option in
        sms_method=GET | sms_method=POST) ;;
        sms_method=*) die "ALERT_OPTIONS: sms_method must be GET or POST, not '${option#*=}'" ;;
        send_timeout=* | deadline=*)
            case ${option#*=} in
                '' | *[!0-9]*) die "ALERT_OPTIONS: ${option%%=*} must be a whole number of seconds, not '${option#*=}'" ;;
            esac
            # The agent must return before the alert's timeout (30s, below).
            if [ "${option%%=*}" = deadline ] && [ "${option#*=}" -ge 30 ]; then
                die "ALERT_OPTIONS: deadline=${option#*=} must stay below the alert timeout of 30 s"
            fi
            ;;
    esac
    alert_attributes="$alert_attributes ${option%%=*}=$(q "${option#*=}")"
done
alert_seen=" "
alert_to=
for recipient in $ALERT_RECIPIENTS; do
    case $recipient in
        -* | *[!A-Za-z0-9@.+_,-]*) die "ALERT_RECIPIENTS: '$recipient' is not a comma-separated list of email addresses and phone numbers (letters, digits and @ . + _ - only)" ;;
    esac
    case $alert_seen in
        *" $recipient "*) die "ALERT_RECIPIENTS names '$recipient' twice" ;;
    esac
    alert_seen="$alert_seen$recipient "
    alert_to="$alert_to to { $(q "$recipient") }"
done
if [ -n "$ALERT_RECIPIENTS" ]; then
    check_path ALERT_PATH "$ALERT_PATH"
elif [ -n "$ALERT_OPTIONS" ]; then
    warn "ALERT_OPTIONS is set but ALERT_RECIPIENTS is empty: no alert configured"
fi

for node in $NODES; do
    var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
    if eval "[ -n \"\${IPMI_${var}_PASSWORD+set}\" ]"; then
        die "IPMI_${var}_PASSWORD is no longer taken: it would be written into the crm script and the CIB. Put the password of $node's BMC in a root-only file on every node and give its path in IPMI_${var}_PASSWORD_FILE (default /etc/pacemaker/ipmi-$var.password)"
    fi
    if [ "$VARIANT" = production ]; then
        for field in ADDR USER; do
            eval "check_value IPMI_${var}_$field \"\${IPMI_${var}_$field:-}\""
        done
        eval "check_path IPMI_${var}_PASSWORD_FILE \"\${IPMI_${var}_PASSWORD_FILE:-/etc/pacemaker/ipmi-$var.password}\""
    fi
done

# check_address NAME WORD: WORD is one IP address or host name. It goes on a
# ping command line that corosync-qdevice splits like a shell would, and into
# ocf:pacemaker:ping's host_list: no blanks, quotes or options.
check_address() {
    case $2 in
        '' | -* | *[!A-Za-z0-9.:-]*)
            die "$1 must hold plain IP addresses or host names (letters, digits and . : - only, not starting with -), not '$2'" ;;
    esac
}

# check_ms NAME VALUE: a quorum device timeout in milliseconds. corosync-qdevice
# gives its heuristics half of it and accepts no heuristics timeout below
# 1000 ms, nor a heartbeat above 120000 ms.
check_ms() {
    case $2 in
        '' | *[!0-9]* | ???????*) die "$1 must be a whole number of milliseconds, not '$2'" ;;
    esac
    if [ "$2" -lt 2000 ] || [ "$2" -gt 120000 ]; then
        die "$1 must be between 2000 and 120000 ms, not $2 (corosync-qdevice gives its heuristics half of it, and takes no heuristics timeout below 1000 ms)"
    fi
}

ping_hosts=
for host in $PING_HOSTS; do
    check_address PING_HOSTS "$host"
    ping_hosts="$ping_hosts${ping_hosts:+ }$host"
done
if [ -n "$QNETD_HOST" ]; then
    check_address QNETD_HOST "$QNETD_HOST"
    [ -n "$QNETD_GATEWAY" ] ||
        die "QNETD_GATEWAY is not set: with QNETD_HOST, give the address the quorum device's heuristics ping, the nodes' default gateway ('ip route show default'), e.g. QNETD_GATEWAY=10.172.20.1"
    check_address QNETD_GATEWAY "$QNETD_GATEWAY"
    qnetd_ping_hosts=
    for host in $QNETD_PING_HOSTS; do
        check_address QNETD_PING_HOSTS "$host"
        qnetd_ping_hosts="$qnetd_ping_hosts $host"
    done
    check_ms QDEVICE_TIMEOUT_MS "$QDEVICE_TIMEOUT_MS"
    check_ms QDEVICE_SYNC_TIMEOUT_MS "$QDEVICE_SYNC_TIMEOUT_MS"
    [ -n "$COROSYNC_CONF" ] ||
        die "COROSYNC_CONF is not set: with QNETD_HOST, give a copy of /etc/corosync/corosync.conf for the script to edit, e.g. 'cp /etc/corosync/corosync.conf corosync.conf.new' then COROSYNC_CONF=corosync.conf.new"
    [ -f "$COROSYNC_CONF" ] ||
        die "COROSYNC_CONF file '$COROSYNC_CONF' does not exist: copy /etc/corosync/corosync.conf there first"
    [ $((node_count % 2)) -eq 0 ] ||
        die "QNETD_HOST with $node_count nodes: the ffsplit algorithm is for an even number of nodes (corosync-qdevice(8)), and an odd number of nodes has a majority of its own: leave QNETD_HOST empty"
else
    for name in QNETD_GATEWAY QNETD_PING_HOSTS COROSYNC_CONF; do
        if eval "[ -n \"\$$name\" ]"; then
            warn "$name is set but QNETD_HOST is empty: no quorum device configured"
        fi
    done
fi

no_quorum=
if [ "$node_count" -ge 3 ] || [ -n "$QNETD_HOST" ]; then
    # A partition without quorum stops everything and fences nobody: that is
    # what makes the majority (or the side holding the quorum device's vote)
    # the only one to act. stop is the default, written so that it shows.
    # With two nodes and no device, corosync's two_node mode keeps both sides
    # quorate: the default stays implicit there.
    no_quorum=" no-quorum-policy=stop"
fi

# qdevice_block: the quorum.device section `pcs quorum device add` writes
# (same keys, values and order; pcs adds votes: 1, which ffsplit requires).
# Heuristics: each exec_* pings one address once, 1 s at most (-W 1; -n: no
# name lookup of the reply). They run in parallel and pass only if every one
# succeeds; mode sync runs them at startup, on a membership change and when
# qdevice connects to qnetd: exactly when a split is decided.
qdevice_block() {
    ping_cmd="/bin/ping -q -n -c 1 -W 1"
    printf '\n    device {\n'
    printf '        sync_timeout: %s\n        timeout: %s\n' "$QDEVICE_SYNC_TIMEOUT_MS" "$QDEVICE_TIMEOUT_MS"
    printf '        model: net\n        votes: 1\n\n'
    printf '        net {\n            algorithm: ffsplit\n            host: %s\n        }\n\n' "$QNETD_HOST"
    printf '        heuristics {\n'
    printf '            exec_gateway: %s %s\n' "$ping_cmd" "$QNETD_GATEWAY"
    n=0
    for host in $qnetd_ping_hosts; do
        n=$((n + 1))
        printf '            exec_ping%s: %s %s\n' "$n" "$ping_cmd" "$host"
    done
    printf '            mode: sync\n        }\n    }\n'
}

# add_qdevice FILE: FILE (a corosync.conf) on stdout with the quorum device
# added at the end of its one top-level quorum section, and that section's
# two_node line removed (two_node is for two votes without an arbiter; with
# the device's third vote it must go, as pcs removes it). Comments and
# every other line are kept as they are. Fails, writing nothing useful, on a
# file without exactly one quorum section, with a device already, or with
# unbalanced braces.
add_qdevice() {
    DEVICE_BLOCK=$(qdevice_block) awk '
        function fail(message) {
            print "rapidpro-cluster.crm.sh: error: COROSYNC_CONF " FILENAME ": " message > "/dev/stderr"
            failed = 1
            exit 1
        }
        {
            line = $0
            sub(/^[ \t]+/, "", line)
            sub(/[ \t]+$/, "", line)
        }
        line == "" || line ~ /^#/ { print; next }
        line ~ /\{$/ {
            name = line
            sub(/[ \t]*\{$/, "", name)
            depth++
            if (depth == 1 && name == "quorum") { in_quorum = 1; quorums++ }
            if (in_quorum && depth == 2 && name == "device")
                fail("the quorum section has a device already: remove it first (pcs quorum device remove, or delete the block)")
            print
            next
        }
        line == "}" {
            if (depth == 0) fail("a } closes no section (line " NR ")")
            if (in_quorum && depth == 1) {
                print ENVIRON["DEVICE_BLOCK"]
                in_quorum = 0
                added = 1
            }
            depth--
            print
            next
        }
        in_quorum && depth == 1 && line ~ /^two_node[ \t]*:/ { next }
        { print }
        END {
            if (failed) exit 1
            if (depth != 0) fail("a section is not closed")
            if (quorums != 1) fail("expected one top-level quorum section, found " quorums + 0)
            if (!added) fail("no quorum device added")
        }
    ' "$1"
}

# The cluster's name, for the certificate steps printed at the end.
cluster_name() {
    awk '
        /^[ \t]*totem[ \t]*\{/ { in_totem = 1; next }
        in_totem && /^[ \t]*\}/ { in_totem = 0 }
        in_totem && /^[ \t]*cluster_name[ \t]*:/ {
            sub(/^[^:]*:[ \t]*/, ""); sub(/[ \t]+$/, ""); print; exit
        }
    ' "$1"
}

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
# node) before going live. No password here: fence_ipmilan runs
# password_script (with /bin/sh, as root, where the device runs) and takes
# its output as the password: the file must be on every node, root only.
EOF
        for node in $NODES; do
            var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
            eval "addr=\${IPMI_${var}_ADDR:-}"
            eval "user=\${IPMI_${var}_USER:-}"
            eval "password_file=\${IPMI_${var}_PASSWORD_FILE:-/etc/pacemaker/ipmi-$var.password}"
            if [ -z "$addr" ] || [ -z "$user" ]; then
                printf 'rapidpro-cluster.crm.sh: WARNING: %s unset: fence-%s gets CHANGE-ME placeholders; fencing of %s fails until you set them\n' \
                    "IPMI_${var}_ADDR or IPMI_${var}_USER" "$node" "$node" >&2
            fi
            if [ ! -f "$password_file" ]; then
                warn "$password_file (the password of $node's BMC) is not here: create it, root only (mode 0600), on every node before fencing can work"
            fi
            cat <<EOF
primitive fence-$node stonith:fence_ipmilan \\
	params ip=$(q "${addr:-CHANGE-ME-ipmi-address-of-$node}") username=$(q "${user:-CHANGE-ME}") \\
	password_script=$(q "cat $password_file") lanplus=1 pcmk_host_list=$(q "$node") \\
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

    if [ "$APP" = yes ]; then
        generate_app
    fi

    if [ -n "$ping_hosts" ]; then
        cat <<EOF

# Ping fallback (two nodes without a third host): ocf:pacemaker:ping on every
# node sets the node attribute pingd to 1000 times the number of PING_HOSTS it
# reaches (dampen=5s: written 5 s after a change settles). The rule keeps the
# Promoted role (and with it the VIP and the app) off a node that reaches none
# of them, or has not pinged yet. It does not stop the fence race of a split:
# a cut-off primary still fences the standby first, then gives up the Promoted
# role, and RapidPro is down until the link heals.
primitive ping ocf:pacemaker:ping \\
	params host_list=$(q "$ping_hosts") multiplier=1000 dampen=5s \\
	op start timeout=60s interval=0 \\
	op stop timeout=20s interval=0 \\
	op monitor interval=10s timeout=60s
clone ping-clone ping
location stack-promoted-needs-ping stack-clone \\
	rule \$id=stack-promoted-needs-ping-rule \$role=Promoted -inf: not_defined pingd or pingd number:lte 0
EOF
    fi

    if [ -n "$ALERT_RECIPIENTS" ]; then
        cat <<EOF

# Alerts: rapidpro-alert sends email and SMS on promote, demote, failures,
# fencing and node loss, to each recipient (a comma-separated list of email
# addresses and phone numbers), and returns within its deadline option
# (default 20 s), below the alert's timeout. crmsh numbers the recipients
# rapidpro-alert-recipient-1, -2, ...
alert rapidpro-alert $(q "$ALERT_PATH")${alert_attributes:+ \\
	attributes$alert_attributes} \\
	meta timeout=30s$alert_to
EOF
    fi

    printf '\ncommit\n'
}

# generate_app: the application tier, as in rapidpro-cluster.pcs.sh (see the
# comments there): one group following the Promoted instance, started after
# the promotion and stopped before the demote (a symmetrical order, unlike the
# VIP's), migration-threshold=2 failure-timeout=90s on each member.
generate_app() {
    cat <<EOF

# The application tier: uwsgi, celery, celerybeat, then nginx, in one group
# colocated with the Promoted instance. Two failures within 90 s of a member
# move the group, and with it the Promoted role and the VIP.
# nginx is ocf:heartbeat:nginx, not systemd:nginx: systemd cannot GET /; the
# agent's OCF_CHECK_LEVEL=10 monitor fetches status10url and greps
# status10regex (through uwsgi to the app).
EOF
    if [ "$VARIANT" = production ]; then
        cat <<EOF
# The old servers' systemd units (disable them at boot: Pacemaker starts them).
EOF
        for member in uwsgi:rapidpro celery:celery celerybeat:celerybeat; do
            cat <<EOF
primitive ${member%%:*} systemd:${member#*:} \\
	op start timeout=60s interval=0 \\
	op stop timeout=120s interval=0 \\
	op monitor interval=10s timeout=20s \\
	meta migration-threshold=2 failure-timeout=90s
EOF
        done
        nginx_conf=/etc/nginx/nginx.conf
    else
        check="$APP_DIR/bin/check-tcp $STANDIN_UWSGI_SOCKET"
        uwsgi_hook="$check || { test \"\$__OCF_ACTION\" = start && for n in 1 2 3 4 5 6 7 8 9 10; do sleep 1; $check && break; done; }"
        cat <<EOF
# The stand-in app under ocf:heartbeat:anything, started through env(1) with
# its env file (su - clears the environment); uwsgi's monitor_hook connects to
# its socket, retrying for 10 s only during start.
EOF
        for member in uwsgi celery celerybeat; do
            if [ "$member" = uwsgi ]; then
                hook=" monitor_hook=$(q "$uwsgi_hook")"
            else
                hook=
            fi
            cat <<EOF
primitive $member ocf:heartbeat:anything \\
	params binfile="/usr/bin/env" \\
	cmdline_options=$(q "RAPIDPRO_STANDIN_ENV=$STANDIN_ETC/standin.env $APP_DIR/bin/rapidpro-standin-$member") \\
	pidfile=$(q "$STANDIN_RUN_DIR/pcmk-$member.pid") \\
	logfile=$(q "$STANDIN_LOG_DIR/$member.stdout") errlogfile=$(q "$STANDIN_LOG_DIR/$member.stderr")$hook \\
	op start timeout=60s interval=0 \\
	op stop timeout=120s interval=0 \\
	op monitor interval=10s timeout=20s \\
	meta migration-threshold=2 failure-timeout=90s
EOF
        done
        nginx_conf=$STANDIN_ETC/nginx.conf
    fi
    cat <<EOF
primitive nginx ocf:heartbeat:nginx \\
	params configfile=$(q "$nginx_conf") status10url=$(q "$NGINX_STATUS_URL") \\
	status10regex=$(q "$NGINX_STATUS_REGEX") \\
	op start timeout=60s interval=0 \\
	op stop timeout=60s interval=0 \\
	op monitor interval=10s timeout=30s OCF_CHECK_LEVEL=10 \\
	meta migration-threshold=2 failure-timeout=90s
group app uwsgi celery celerybeat nginx
colocation app-with-promoted-stack inf: app stack-clone:Promoted
# Symmetrical: the app stops before the demote.
order app-after-stack-promote Mandatory: stack-clone:promote app:start
EOF
}

config=$(generate)

# The quorum device goes into COROSYNC_CONF only once the crm script is
# complete, and whole: edited into a temporary file first.
if [ -n "$QNETD_HOST" ]; then
    corosync_new=$(mktemp)
    trap 'rm -f "$corosync_new"' EXIT
    add_qdevice "$COROSYNC_CONF" >"$corosync_new" || exit 1
    cluster=$(cluster_name "$COROSYNC_CONF")
    cluster=${cluster:-CLUSTER}
    cat "$corosync_new" >"$COROSYNC_CONF"
    say "$COROSYNC_CONF: quorum.device added (model net, host $QNETD_HOST, ffsplit, heuristics mode sync pinging $QNETD_GATEWAY$qnetd_ping_hosts), two_node removed"
    say "next, on the live cluster, before crm -f (corosync-qdevice-net-certutil(8); pcs users: pcs quorum device add does all this):"
    say "  on $QNETD_HOST (TCP port 5403 open to the nodes): apt install corosync-qnetd; corosync-qnetd-certutil -i (skip if /etc/corosync/qnetd/nssdb exists); systemctl enable --now corosync-qnetd"
    say "  on every node: apt install corosync-qdevice; copy $QNETD_HOST:/etc/corosync/qnetd/nssdb/qnetd-cacert.crt here; corosync-qdevice-net-certutil -i -c qnetd-cacert.crt"
    say "  on one node: corosync-qdevice-net-certutil -r -n $cluster; copy /etc/corosync/qdevice/net/nssdb/qdevice-net-node.crq to $QNETD_HOST"
    say "  on $QNETD_HOST: corosync-qnetd-certutil -s -c qdevice-net-node.crq -n $cluster; copy /etc/corosync/qnetd/nssdb/cluster-$cluster.crt back to that node"
    say "  on that node: corosync-qdevice-net-certutil -M -c cluster-$cluster.crt; copy /etc/corosync/qdevice/net/nssdb/qdevice-net-node.p12 to every other node"
    say "  on every other node: corosync-qdevice-net-certutil -m -c qdevice-net-node.p12"
    say "  copy $COROSYNC_CONF to /etc/corosync/corosync.conf on every node, then on one node: corosync-cfgtool -R"
    say "  on every node: systemctl enable --now corosync-qdevice; check with corosync-qdevice-tool -sv and corosync-quorumtool -s"
fi
printf '%s\n' "$config"
