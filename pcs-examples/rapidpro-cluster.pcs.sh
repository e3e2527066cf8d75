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
#     namespace test cluster's fence_rapidpro_sandbox (VARIANT=sandbox);
#   - app (APP=yes): the group uwsgi, celery, celerybeat, nginx, colocated
#     with the Promoted instance and started after the promotion: systemd
#     units on production, the stand-in app under ocf:heartbeat:anything on
#     the sandbox; nginx is ocf:heartbeat:nginx in both, checked with GET /;
#   - the alert rapidpro-alert (email + SMS) when ALERT_RECIPIENTS is set;
#   - with QNETD_HOST, a corosync quorum device (model net, algorithm ffsplit,
#     heuristics pinging QNETD_GATEWAY and QNETD_PING_HOSTS) in COROSYNC_CONF,
#     a copy of corosync.conf, and no-quorum-policy=stop with
#     priority-fencing-delay=0s in the CIB;
#   - with PING_HOSTS, the ping fallback for two nodes without a third host:
#     the clone ping-clone (ocf:pacemaker:ping) and a rule keeping the
#     Promoted role off a node that reaches none of PING_HOSTS.
#
# Why a quorum device (README.md, "Two servers and a network split"): with
# corosync's two_node alone, a primary whose network link is cut still wins
# the fence race (priority-fencing-delay favours it) and powers off the healthy
# standby, while no client reaches it. With a quorum device on a third, small
# host (corosync-qnetd), the side whose heuristics reach the gateway gets the
# device's vote; the other side loses quorum, stops its resources and fences
# nobody. So no fence race is left to win, and priority-fencing-delay
# defaults to 0s (FENCE_DELAY still wins when given).
#
# Quorum device on a live cluster (QNETD_HOST set): the script edits only the
# COPY of corosync.conf named by COROSYNC_CONF, to show and check the result.
# On the live cluster pcs does everything itself, through pcsd:
#   on QNETD_HOST (Debian 12), TCP port 5403 open to the nodes:
#     apt install corosync-qnetd pcs
#     pcs qdevice setup model net --enable --start
#   on every node: apt install corosync-qdevice
#   on one node:
#     pcs host auth QNETD_HOST
#     pcs quorum device add ...   (the script prints the exact command)
#   pcs then creates and distributes the TLS certificates, writes
#   corosync.conf on every node (without two_node), reloads corosync and
#   starts corosync-qdevice everywhere. Check: pcs quorum device status,
#   corosync-qdevice-tool -sv. Then push the CIB as below.
# Without pcsd (crmsh users): see rapidpro-cluster.crm.sh and README.md in
# this directory (copy the edited file to every node, the certificates of
# corosync-qdevice-net-certutil(8), corosync-cfgtool -R, start
# corosync-qdevice).
#
# Admin procedure on a live cluster (run as root on one cluster node, where
# ocf:rapidpro:stack is installed as /usr/lib/ocf/resource.d/rapidpro/stack):
#
#   pcs cluster cib rapidpro.xml                # 1. dump the live CIB to a file
#   cp rapidpro.xml rapidpro.orig.xml           #    (keep the original for a diff push)
#   IPMI_sms1_ADDR=10.172.20.11 IPMI_sms1_USER=admin \
#   IPMI_sms2_ADDR=10.172.20.12 IPMI_sms2_USER=admin \
#   STACK_SECRETS=redis_password \
#   CIB=rapidpro.xml sh rapidpro-cluster.pcs.sh # 2. edit the file, not the cluster
#   (on EVERY node: the secrets, see "Secrets" below)
#   crm_verify --xml-file rapidpro.xml -V       # 3. check it
#   pcs -f rapidpro.xml config                  #    and read it
#   pcs cluster cib-push rapidpro.xml --config  # 4. push the configuration section
#     (or: pcs cluster cib-push rapidpro.xml diff-against=rapidpro.orig.xml)
#   pcs status --full                           # 5. watch the stack come up
#
# Secrets never go on a command line (any user of the node reads every
# process's arguments with ps) nor into the CIB (every node keeps a copy,
# pcs resource config and crm configure show print it, crm_report collects
# it). So this script refuses repl_password and redis_password in
# STACK_PARAMS and the old IPMI_<node>_PASSWORD, and offers instead:
#   - repl_password: best left unset. Then the agent, pg_rewind,
#     pg_basebackup and PostgreSQL's WAL receiver (primary_conninfo has no
#     password then) all read system_user's ~/.pgpass, on every node:
#       install -o postgres -g postgres -m 0600 /dev/null ~postgres/.pgpass
#       echo '*:*:*:replicator:the-password' > ~postgres/.pgpass
#   - repl_password or redis_password as CIB secrets: name them in
#     STACK_SECRETS (e.g. STACK_SECRETS=redis_password); the CIB then holds
#     name=lrm://, and pacemaker-execd substitutes the value stored on each
#     node under /var/lib/pacemaker/lrm/secrets/stack/ before every
#     operation. Store it on every node BEFORE the push, value on stdin:
#       sh rapidpro-secret.sh stack redis_password < /root/redis.password
#     (see that script for why not `cibsecret set`);
#   - fencing: fence_ipmilan's password_script runs `cat FILE`, FILE being
#     IPMI_<node>_PASSWORD_FILE, a root-only file holding the BMC password
#     on every node (the device runs on the other node).
#
# Apply it once, to a CIB without these resources: pcs refuses to create an id
# that already exists. The file named by CIB must exist: pcs -f would silently
# start from an empty CIB otherwise.
#
# Environment (defaults are the old production system):
#   CIB                 required: the CIB XML file to edit (pcs -f "$CIB")
#   VARIANT             production (default) or sandbox: fencing and the app
#                       tier's agents differ
#   NODES               cluster nodes, space separated (default "sms1 sms2")
#   VIP, VIP_CIDR, VIP_NIC
#                       virtual IP (default 10.172.20.200), prefix length (24)
#                       and interface (eth0)
#   PRIMARY_HOST        primary_host of the stack agent (default $VIP)
#   STACK_PARAMS        extra "name=value ..." parameters of the stack agent,
#                       e.g. "pgdata=/x rewind=true sync_replication=on"
#                       (split on blanks: values cannot contain spaces); no
#                       repl_password or redis_password (see Secrets above)
#   STACK_SECRETS       stack agent parameters kept out of the CIB
#                       (repl_password, redis_password): each is written as
#                       name=lrm:// and must be stored on every node with
#                       rapidpro-secret.sh before the push
#   MONITOR_PROMOTED    monitor interval in the Promoted role (15s)
#   MONITOR_UNPROMOTED  monitor interval in the Unpromoted role (16s); it must
#                       differ from MONITOR_PROMOTED
#   FENCE_DELAY         priority-fencing-delay (5s; 0s with QNETD_HOST)
#   quorum device (empty QNETD_HOST: none):
#   QNETD_HOST          address or name of the corosync-qnetd host
#   QNETD_GATEWAY       required with QNETD_HOST: the address the heuristics
#                       ping (the nodes' default gateway)
#   QNETD_PING_HOSTS    more addresses the heuristics ping, space separated
#                       (e.g. the SMS gateway); every one must answer
#   COROSYNC_CONF       required with QNETD_HOST: a copy of
#                       /etc/corosync/corosync.conf, edited in place
#   QDEVICE_TIMEOUT_MS  quorum.device.timeout (2000; 2000 to 120000)
#   QDEVICE_SYNC_TIMEOUT_MS
#                       quorum.device.sync_timeout (5000; 2000 to 120000)
#   ping fallback (two nodes, no third host; also allowed with QNETD_HOST):
#   PING_HOSTS          addresses ocf:pacemaker:ping pings, space separated;
#                       empty (default): no ping clone
#   STACK_AGENT         benchmarks only: ocf:pacemaker:Stateful in place of
#                       ocf:rapidpro:stack measures what Pacemaker and
#                       Corosync alone take (PRIMARY_HOST and STACK_PARAMS
#                       are then not passed); default ocf:rapidpro:stack
#   FORCE               1: create the stack resource even though
#                       ocf:rapidpro:stack is not installed on this machine
#                       (pcs --force); also forces the fence devices, the
#                       production app tier's systemd units and the sandbox
#                       app tier's missing stand-in files
#   production fencing, per node N (non-alphanumeric characters of N become _):
#   IPMI_N_ADDR, IPMI_N_USER
#                       address and user of N's IPMI/BMC
#   IPMI_N_PASSWORD_FILE
#                       the file, on every node, holding the password of N's
#                       BMC (default /etc/pacemaker/ipmi-N.password; root
#                       only, mode 0600): fence_ipmilan reads it through
#                       password_script="cat FILE"
#   sandbox fencing:
#   the device runs /usr/sbin/fence_rapidpro_sandbox (sandbox/ in this
#   directory); pcs is given --force when that agent is not installed here.
#   the application tier:
#   APP                 yes (default) or no: no leaves the app tier out
#   NGINX_STATUS_URL    the URL nginx's monitor GETs (production
#                       http://localhost/, sandbox http://127.0.0.1/)
#   NGINX_STATUS_REGEX  what its answer must contain (grep -Ei; production
#                       "rapidpro", sandbox "^rapidpro stand-in")
#   sandbox only, the stand-in app (names and defaults as rapidpro-standin-setup):
#   APP_DIR             its directory, holding bin/ (/usr/share/rapidpro-ha/standin)
#   STANDIN_ETC         directory of standin.env and nginx.conf (/etc/rapidpro-standin)
#   STANDIN_RUN_DIR     pid files (/run/rapidpro-standin)
#   STANDIN_LOG_DIR     stdout and stderr of the three processes
#                       (/var/log/rapidpro-standin); it must exist on every
#                       node: nothing creates it (the operator, or the test
#                       harness in each node)
#   STANDIN_UWSGI_SOCKET
#                       uwsgi's socket, checked by TCP connect (127.0.0.1:3031)
#   alerts:
#   ALERT_RECIPIENTS    space-separated recipients, each a comma-separated
#                       list of email addresses and phone numbers, e.g.
#                       "oncall@example.org,+255700000001 +255700000002";
#                       empty (default): no alert is configured
#   ALERT_OPTIONS       space-separated name=value options of the alert agent:
#                       smtp_server smtp_tls smtp_user smtp_ca_file mail_from
#                       sms_url sms_method sms_user sms_ca_file send_timeout
#                       deadline (values cannot contain blanks; no secrets
#                       here: they would be on pcs's command line), e.g.
#                       "smtp_server=mail:25 sms_url=http://gw:90/send?to={to}&text={text}"
#   ALERT_PATH          the alert agent (/usr/sbin/rapidpro-alert)
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
FORCE=${FORCE:-}
STACK_AGENT=${STACK_AGENT:-ocf:rapidpro:stack}
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
        repl_password=* | redis_password=*)
            die "STACK_PARAMS must not hold ${param%%=*}: it would go on pcs's command line (readable by every user with ps) and into the CIB (printed by pcs resource config). Leave repl_password unset and give system_user a ~/.pgpass on every node, or name it in STACK_SECRETS and store it on every node with rapidpro-secret.sh (see the header of this script)" ;;
    esac
done
secret_params=
for secret in $STACK_SECRETS; do
    case $secret in
        repl_password | redis_password) ;;
        *) die "STACK_SECRETS names stack parameters kept out of the CIB: repl_password and/or redis_password, not '$secret'" ;;
    esac
    case " $secret_params " in
        *" $secret=lrm:// "*) die "STACK_SECRETS names '$secret' twice" ;;
    esac
    # cibsecret's mark: pacemaker-execd replaces it with the value stored in
    # /var/lib/pacemaker/lrm/secrets/stack/$secret on the node it runs on.
    secret_params="$secret_params $secret=lrm://"
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
        *'
'*) die "NGINX_STATUS_REGEX contains a newline" ;;
    esac
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
    fi
fi

# Fencing passwords: a file per BMC, read by fence_ipmilan's password_script.
for node in $NODES; do
    var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
    if eval "[ -n \"\${IPMI_${var}_PASSWORD+set}\" ]"; then
        die "IPMI_${var}_PASSWORD is no longer taken: it would go on pcs's command line (readable by every user with ps) and into the CIB. Put the password of $node's BMC in a root-only file on every node and give its path in IPMI_${var}_PASSWORD_FILE (default /etc/pacemaker/ipmi-$var.password)"
    fi
    if [ "$VARIANT" = production ]; then
        eval "check_path IPMI_${var}_PASSWORD_FILE \"\${IPMI_${var}_PASSWORD_FILE:-/etc/pacemaker/ipmi-$var.password}\""
    fi
done

# The alert agent's options (lib/src/alert/), each a name=value word.
alert_option_names="smtp_server smtp_tls smtp_user smtp_ca_file mail_from sms_url sms_method sms_user sms_ca_file send_timeout deadline"
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
done
alert_seen=" "
for recipient in $ALERT_RECIPIENTS; do
    case $recipient in
        -* | *[!A-Za-z0-9@.+_,-]*) die "ALERT_RECIPIENTS: '$recipient' is not a comma-separated list of email addresses and phone numbers (letters, digits and @ . + _ - only)" ;;
    esac
    case $alert_seen in
        *" $recipient "*) die "ALERT_RECIPIENTS names '$recipient' twice" ;;
    esac
    alert_seen="$alert_seen$recipient "
done
if [ -n "$ALERT_RECIPIENTS" ]; then
    check_path ALERT_PATH "$ALERT_PATH"
elif [ -n "$ALERT_OPTIONS" ]; then
    say "WARNING: ALERT_OPTIONS is set but ALERT_RECIPIENTS is empty: no alert configured"
fi

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
            say "WARNING: $name is set but QNETD_HOST is empty: no quorum device configured"
        fi
    done
fi

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

# The app tier's agents, checked before the CIB file is touched.
if [ "$APP" = yes ] && [ "$VARIANT" = production ]; then
    # pcs refuses a systemd unit that systemd does not know here (it asks
    # crm_resource, which asks systemd over D-Bus), as for the stack agent.
    missing=
    for unit in rapidpro celery celerybeat; do
        if ! timeout 30 crm_resource --show-metadata "systemd:$unit" >/dev/null 2>&1; then
            missing="$missing $unit.service"
        fi
    done
    if [ -n "$missing" ]; then
        [ -n "$force" ] ||
            die "the systemd units of the app tier are not installed on this machine:$missing (systemd:rapidpro, systemd:celery, systemd:celerybeat, as on the old servers). Run this script on a cluster node where they are installed, or APP=no to leave the app tier out; FORCE=1 writes the configuration anyway, unchecked (pcs --force)."
        say "systemd units missing here:$missing: creating them with --force (FORCE=1)"
    fi
elif [ "$APP" = yes ]; then
    # pcs does not look at ocf:heartbeat:anything's binfile; missing stand-in
    # files would only show as failed starts in the cluster.
    missing=
    for file in "$APP_DIR/bin/rapidpro-standin-uwsgi" "$APP_DIR/bin/rapidpro-standin-celery" \
        "$APP_DIR/bin/rapidpro-standin-celerybeat" "$APP_DIR/bin/check-tcp"; do
        [ -x "$file" ] || missing="$missing $file"
    done
    for file in "$STANDIN_ETC/standin.env" "$STANDIN_ETC/nginx.conf"; do
        [ -f "$file" ] || missing="$missing $file"
    done
    if [ -n "$missing" ]; then
        [ -n "$force" ] ||
            die "the stand-in app is not installed here:$missing missing (APP_DIR=$APP_DIR, STANDIN_ETC=$STANDIN_ETC; rapidpro-standin-setup writes STANDIN_ETC). APP=no leaves the app tier out; FORCE=1 writes the configuration anyway."
        say "WARNING: stand-in files missing here:$missing (FORCE=1)"
    fi
fi
if [ -n "$ALERT_RECIPIENTS" ] && [ ! -x "$ALERT_PATH" ]; then
    # pcs accepts any alert path; Pacemaker only fails when it runs it.
    say "WARNING: the alert agent $ALERT_PATH is not installed on this machine: install rapidpro-alert on every node"
fi

pcs_f() {
    pcs -f "$CIB" "$@"
}

# --- Quorum device: corosync.conf --------------------------------------------
# Done first, on a temporary copy: if pcs refuses it (a device already
# there, say), neither COROSYNC_CONF nor the CIB has been touched. The copy
# replaces COROSYNC_CONF's content once the CIB is written too.
# Heuristics: each exec_* pings one address once, 1 s at most (-W 1; -n: no
# name lookup of the reply). They run in parallel and pass only if every one
# succeeds; mode=sync runs them at startup, on a membership change and when
# qdevice connects to qnetd: exactly when a split is decided.
if [ -n "$QNETD_HOST" ]; then
    ping_cmd="/bin/ping -q -n -c 1 -W 1"
    heuristics="exec_gateway=\"$ping_cmd $QNETD_GATEWAY\""
    n=0
    for host in $qnetd_ping_hosts; do
        n=$((n + 1))
        heuristics="$heuristics exec_ping$n=\"$ping_cmd $host\""
    done
    qdevice_args="sync_timeout=$QDEVICE_SYNC_TIMEOUT_MS timeout=$QDEVICE_TIMEOUT_MS model net host=$QNETD_HOST algorithm=ffsplit heuristics mode=sync $heuristics"
    corosync_new=$(mktemp)
    trap 'rm -f "$corosync_new"' EXIT
    cat "$COROSYNC_CONF" >"$corosync_new"
    say "quorum device: host $QNETD_HOST, algorithm ffsplit, heuristics pinging $QNETD_GATEWAY$qnetd_ping_hosts (in $COROSYNC_CONF)"
    # eval only splits qdevice_args and removes its double quotes: every word
    # in it was checked above (addresses, numbers, fixed text).
    eval "pcs --corosync_conf=\"\$corosync_new\" quorum device add $qdevice_args" ||
        die "pcs refused the quorum device (see above): $COROSYNC_CONF and $CIB are unchanged"
fi

# --- Cluster properties -----------------------------------------------------
say "cluster properties"
pcs_f property set stonith-enabled=true "priority-fencing-delay=$FENCE_DELAY"
if [ "$node_count" -ge 3 ] || [ -n "$QNETD_HOST" ]; then
    # A partition without quorum stops everything and fences nobody: that is
    # what makes the majority (or the side holding the quorum device's vote)
    # the only one to act. stop is the default; it is written so that it
    # shows, and stays if a default elsewhere changes. With two nodes and no
    # device, corosync's two_node mode keeps both sides quorate: the default
    # stays implicit there.
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
    stack_params="primary_host=$PRIMARY_HOST $STACK_PARAMS$secret_params"
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

# --- The application tier: uwsgi, celery, celerybeat, nginx -----------------
# One group follows the Promoted instance: a group starts its members in order
# (the old servers' dependency order: the app, celery and celerybeat, nginx
# last) and stops them in reverse. The order is symmetrical, unlike the VIP's:
# the app stops before the demote (celery sends the SMS: it must never run
# next to a demoting or demoted database, nor on two nodes at once).
# Each member has migration-threshold=2 failure-timeout=90s (the old monit
# rule: two failures within 90 s, then tilt): after the second failure the
# group cannot run on this node any more, and with the colocation the
# Promoted role, the VIP and the group move to the other node together.
# Monitors every 10 s, as monit's checks: uwsgi's socket accepts TCP
# (sandbox), celery and celerybeat are alive, nginx answers GET /.
#
# nginx is ocf:heartbeat:nginx in both variants, not systemd:nginx: systemd
# only knows whether the process runs, it cannot GET / (monit did). The
# agent's monitor at OCF_CHECK_LEVEL=10 fetches status10url through the
# local nginx and greps status10regex in the answer; the request goes through
# uwsgi to the app, so it also catches a dead app behind a living nginx.
# The agent runs nginx itself: production must `systemctl disable --now nginx
# rapidpro celery celerybeat` (Pacemaker starts the units, not boot).
# --no-default-ops: only the operations written here, none from the agents'
# meta-data (nginx's reload), the same as the crm script.
if [ "$APP" = yes ]; then
    say "app group: uwsgi, celery, celerybeat, nginx ($VARIANT)"
    if [ "$VARIANT" = production ]; then
        # The systemd units of the old servers; their monitor is systemd's
        # "active" state. uwsgi's socket is checked only through nginx's GET /.
        for member in uwsgi:rapidpro celery:celery celerybeat:celerybeat; do
            # shellcheck disable=SC2086 # force is empty or --force
            pcs_f resource create "${member%%:*}" "systemd:${member#*:}" \
                op start timeout=60s \
                op stop timeout=120s \
                op monitor interval=10s timeout=20s \
                meta migration-threshold=2 failure-timeout=90s \
                --group app --no-default-ops $force
        done
        nginx_conf=/etc/nginx/nginx.conf
    else
        # The stand-in app (app/ in the project) under ocf:heartbeat:anything,
        # which runs `su - root -c "nohup BINFILE CMDLINE_OPTIONS >>logfile
        # 2>>errlogfile &"`, records $! in pidfile and monitors that pid.
        # su - clears the environment, so the launcher is started through
        # env(1) to get RAPIDPRO_STANDIN_ENV (the env file it sources); env
        # execs it and it execs the server: the recorded pid stays the
        # server's. The agent creates the pid directory on start, not the
        # log directory: STANDIN_LOG_DIR must exist on every node.
        # uwsgi's monitor_hook (run by the agent with eval, after the pid
        # check) connects to its socket. During start the agent calls it
        # right after spawning uwsgi, before uwsgi may have bound its
        # socket: only then the hook retries, once a second for 10 s.
        check="$APP_DIR/bin/check-tcp $STANDIN_UWSGI_SOCKET"
        uwsgi_hook="$check || { test \"\$__OCF_ACTION\" = start && for n in 1 2 3 4 5 6 7 8 9 10; do sleep 1; $check && break; done; }"
        for member in uwsgi celery celerybeat; do
            if [ "$member" = uwsgi ]; then
                hook="monitor_hook=$uwsgi_hook"
            else
                hook=
            fi
            # ${hook:+"$hook"}: no empty argument for celery and celerybeat.
            pcs_f resource create "$member" ocf:heartbeat:anything \
                binfile=/usr/bin/env \
                "cmdline_options=RAPIDPRO_STANDIN_ENV=$STANDIN_ETC/standin.env $APP_DIR/bin/rapidpro-standin-$member" \
                "pidfile=$STANDIN_RUN_DIR/pcmk-$member.pid" \
                "logfile=$STANDIN_LOG_DIR/$member.stdout" \
                "errlogfile=$STANDIN_LOG_DIR/$member.stderr" \
                ${hook:+"$hook"} \
                op start timeout=60s \
                op stop timeout=120s \
                op monitor interval=10s timeout=20s \
                meta migration-threshold=2 failure-timeout=90s \
                --group app --no-default-ops
        done
        nginx_conf=$STANDIN_ETC/nginx.conf
    fi
    pcs_f resource create nginx ocf:heartbeat:nginx \
        "configfile=$nginx_conf" \
        "status10url=$NGINX_STATUS_URL" \
        "status10regex=$NGINX_STATUS_REGEX" \
        op start timeout=60s \
        op stop timeout=60s \
        op monitor interval=10s timeout=30s OCF_CHECK_LEVEL=10 \
        meta migration-threshold=2 failure-timeout=90s \
        --group app --no-default-ops
    pcs_f constraint colocation add app with Promoted stack-clone INFINITY
    pcs_f constraint order promote stack-clone then start app kind=Mandatory symmetrical=true
fi

# --- Ping fallback: two nodes without a third host ----------------------------
# ocf:pacemaker:ping on every node sets the node attribute pingd to 1000 times
# the number of PING_HOSTS it reaches (dampen=5s: changes are written 5 s
# after they settle). The rule keeps the Promoted role (and with it the VIP
# and the app) off a node that reaches none of them, or has not pinged yet.
# It does not stop the fence race of a split (see README.md in this
# directory): a cut-off primary still fences the standby first, then gives up
# the Promoted role, and RapidPro is down until the link heals.
if [ -n "$ping_hosts" ]; then
    say "ping-clone (ocf:pacemaker:ping to $ping_hosts) and the rule keeping Promoted off a node that reaches none"
    pcs_f resource create ping ocf:pacemaker:ping \
        "host_list=$ping_hosts" multiplier=1000 dampen=5s \
        op start timeout=60s \
        op stop timeout=20s \
        op monitor interval=10s timeout=60s \
        clone --no-default-ops
    pcs_f constraint location stack-clone rule role=Promoted \
        constraint-id=stack-promoted-needs-ping id=stack-promoted-needs-ping-rule \
        score=-INFINITY not_defined pingd or pingd lte number 0
fi

# --- Fencing -----------------------------------------------------------------
if [ "$VARIANT" = production ]; then
    # REPLACE WITH YOUR HARDWARE'S FENCE AGENT. fence_ipmilan is an example
    # (IPMI over LAN, lanplus); use fence_redfish, fence_ilo*, fence_idrac, ...
    # as your servers need, and test it: `stonith_admin --reboot NODE` from
    # the other node, before going live.
    # No password in the CIB nor on pcs's command line: fence_ipmilan runs
    # password_script (with /bin/sh, as root, on the node running the device)
    # and takes its output as the password. (fence_ipmilan itself then gives
    # it to ipmitool as -P, as fence-agents always does.)
    for node in $NODES; do
        var=$(printf '%s' "$node" | tr -c 'A-Za-z0-9_' '_')
        eval "addr=\${IPMI_${var}_ADDR:-}"
        eval "user=\${IPMI_${var}_USER:-}"
        eval "password_file=\${IPMI_${var}_PASSWORD_FILE:-/etc/pacemaker/ipmi-$var.password}"
        if [ -z "$addr" ] || [ -z "$user" ]; then
            say "WARNING: IPMI_${var}_ADDR or IPMI_${var}_USER unset: fence-$node gets CHANGE-ME placeholders; fencing of $node fails until you set them"
        fi
        if [ ! -f "$password_file" ]; then
            say "WARNING: $password_file (the password of $node's BMC) is not here: create it, root only (mode 0600), on every node before fencing can work"
        fi
        say "fence-$node (stonith:fence_ipmilan for $node)"
        # shellcheck disable=SC2086 # force is empty or --force
        pcs_f stonith create "fence-$node" fence_ipmilan \
            "ip=${addr:-CHANGE-ME-ipmi-address-of-$node}" \
            "username=${user:-CHANGE-ME}" \
            "password_script=cat $password_file" \
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

# --- Alerts: email and SMS to the people on call ------------------------------
# rapidpro-alert (lib/src/alert/) sends on promote, demote, failures, fencing
# and node loss; each recipient value is a comma-separated list of email
# addresses and phone numbers. Its options are the alert's instance
# attributes; it returns within its deadline option (default 20 s), below the
# alert's timeout. ALERT_OPTIONS words go to pcs as separate arguments, so
# sms_url's ? & = { } reach the CIB as they are (no shell expansion: set -f).
if [ -n "$ALERT_RECIPIENTS" ]; then
    say "alert rapidpro-alert ($ALERT_PATH) to $ALERT_RECIPIENTS"
    # shellcheck disable=SC2086 # ALERT_OPTIONS is split on purpose
    pcs_f alert create id=rapidpro-alert "path=$ALERT_PATH" \
        ${ALERT_OPTIONS:+options $ALERT_OPTIONS} \
        meta timeout=30s
    n=0
    for recipient in $ALERT_RECIPIENTS; do
        n=$((n + 1))
        pcs_f alert recipient add rapidpro-alert "value=$recipient" "id=rapidpro-alert-recipient-$n"
    done
fi

if [ -n "$QNETD_HOST" ]; then
    cat "$corosync_new" >"$COROSYNC_CONF"
    say "$COROSYNC_CONF: quorum.device added (model net, ffsplit, heuristics mode sync), two_node removed"
    say "next, on the live cluster, before pushing the CIB (pcs sets up the quorum device itself, through pcsd; do not copy $COROSYNC_CONF by hand):"
    say "  on $QNETD_HOST (TCP port 5403 open to the nodes): apt install corosync-qnetd pcs; pcs qdevice setup model net --enable --start"
    say "  on every node: apt install corosync-qdevice"
    say "  on one node: pcs host auth $QNETD_HOST"
    say "  on one node: pcs quorum device add $qdevice_args"
    say "  pcs creates and distributes the TLS certificates, writes corosync.conf on every node, reloads corosync and starts corosync-qdevice; check with 'pcs quorum device status' and 'corosync-qdevice-tool -sv'"
fi
say "done: check with 'crm_verify --xml-file $CIB -V', push with 'pcs cluster cib-push $CIB --config'"
