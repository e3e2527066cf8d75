#!/bin/sh
# Runs as the only child of tini, PID 1 of a cluster node's fresh namespaces
# (mount, UTS, IPC, net, PID; see netns/node.rs). It builds the node's view of
# the filesystem, then becomes `sleep infinity` while tini reaps every orphan
# at once (daemons double-fork; a late reap would keep a killed postmaster's
# pid answering kill(pid, 0)).
#
# Environment: NODE_NAME, NODE_DIR (host path of the node's directories),
# FENCE_DIR (the test's shared fence directory), OCF_EXTRA (holds
# rapidpro/stack), SBIN_EXTRA (holds the sandbox fence agent), DOC_EXTRA
# (optional: holds rapidpro-ha/, the package's docs), READY (file to create
# once done). Every mount below lives in this mount namespace only and
# ends with it: the root namespace gets no mount from here.
set -eu

fail() { echo "node-init: $*" >&2; exit 1; }

hostname "$NODE_NAME"
mount --make-rprivate /

# /run and /dev/shm: fresh per boot, as on a real machine.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/crm /run/lock /run/resource-agents /run/postgresql /run/redis /run/rapidpro-ha /run/corosync-qdevice
chmod 1755 /run/crm /run/lock /run/resource-agents
chown hacluster:haclient /run/crm
chown postgres:postgres /run/postgresql && chmod 2775 /run/postgresql
chown redis:redis /run/redis && chmod 2775 /run/redis
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm

# Per-node persistent directories (they survive a power-off and boot).
bind() { mount --bind "$NODE_DIR/$1" "$2" || fail "cannot bind $1 on $2"; }
bind etc-corosync /etc/corosync
bind var-lib-corosync /var/lib/corosync
bind var-lib-pacemaker /var/lib/pacemaker
bind var-log /var/log
if [ -f "$NODE_DIR/pgdata.img" ]; then
    # PostgreSQL on a small file system of its own, to fill up in tests.
    mount -o loop "$NODE_DIR/pgdata.img" /var/lib/postgresql ||
        fail "cannot mount $NODE_DIR/pgdata.img on /var/lib/postgresql"
else
    bind var-lib-postgresql /var/lib/postgresql
fi
bind var-lib-redis /var/lib/redis
bind etc-redis /etc/redis
# systemd's unit links: the host's own (Debian enables postgresql and
# redis-server) must not be what a node's `rapidproctl check` reads, and a
# test that enables a unit in a node must not touch the host.
if [ -d "$NODE_DIR/etc-systemd-system" ]; then
    bind etc-systemd-system /etc/systemd/system
fi

# Nodes laid out as Debian ships them (NsClusterBuilder::by_the_book): the
# PostgreSQL configuration of the node's own clusters, and copies of the
# host's SysV runlevel links (its systemd unit links are bound above), so
# that `systemctl disable` (which also runs update-rc.d) changes the node's
# copies only;
# root's home, where an administrator's shell starts.
if [ -d "$NODE_DIR/etc-postgresql" ]; then
    bind etc-postgresql /etc/postgresql
    for rc in 0 1 2 3 4 5 6 S; do
        bind "etc-rc$rc.d" "/etc/rc$rc.d"
    done
    bind root-home /root
fi

# The stand-in RapidPro app (clusters built with the app tier): its
# configuration (standin.env, nginx.conf) per node at /etc/rapidpro-standin,
# its pid files in /run, its logs in the node's /var/log. The mountpoint is an
# empty directory of the shared filesystem, like the fence directory below.
mkdir -p /run/rapidpro-standin /var/log/rapidpro-standin
if [ -d "$NODE_DIR/etc-standin" ]; then
    mkdir -p /etc/rapidpro-standin
    bind etc-standin /etc/rapidpro-standin
fi

# The fence directory shared with the harness. The mountpoint is an empty
# directory of the shared filesystem (the only thing created outside the
# test directory).
mkdir -p /var/lib/rapidpro-fence
mount --bind "$FENCE_DIR" /var/lib/rapidpro-fence

# ocf:rapidpro:stack and the fence agent, added read-only over the system
# directories without touching them (pacemaker-fenced only looks in /usr/sbin).
mount -t overlay overlay -o "ro,lowerdir=$OCF_EXTRA:/usr/lib/ocf/resource.d" /usr/lib/ocf/resource.d
mount -t overlay overlay -o "ro,lowerdir=$SBIN_EXTRA:/usr/sbin" /usr/sbin
# The package's documentation and examples (clusters installed from the .deb).
if [ -n "${DOC_EXTRA:-}" ]; then
    mount -t overlay overlay -o "ro,lowerdir=$DOC_EXTRA:/usr/share/doc" /usr/share/doc
fi

ip link set lo up
# A node killed while its link is down keeps its network namespace, and so
# its veth on the bridge, until its open TCP connections give up: minutes by
# default. One retry lets a fenced, partitioned node boot again promptly.
sysctl -q -w net.ipv4.tcp_orphan_retries=1 || true
: > "$READY"
exec sleep infinity
