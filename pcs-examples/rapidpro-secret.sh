#!/bin/sh
# rapidpro-secret.sh - stores one secret resource parameter on THIS node as
# Pacemaker's CIB secrets (cibsecret) store it, reading the value from stdin.
#
#   printf '%s\n' 'the-password' | sh rapidpro-secret.sh stack redis_password
#   sh rapidpro-secret.sh stack redis_password < /root/redis.password
#
# Run it as root on EVERY cluster node (or on one, then `cibsecret sync`,
# which copies the secrets directory to the other nodes over ssh), before the
# CIB holds the parameter as `lrm://` (rapidpro-cluster.pcs.sh and
# rapidpro-cluster.crm.sh write `lrm://` for each name in STACK_SECRETS).
#
# What Pacemaker does with it: for every operation, pacemaker-execd (and
# pacemaker-fenced for fence devices) replaces a parameter whose CIB value is
# exactly `lrm://` with the first line of
#   /var/lib/pacemaker/lrm/secrets/<resource>/<parameter>
# (trailing white space stripped, at most 254 bytes), after checking it
# against the MD5 sum in the file of the same name plus `.sign`; a missing
# file or a wrong sum fails the operation. The CIB, `pcs resource config`,
# `crm configure show` and crm_report then hold only `lrm://`.
#
# Why not `cibsecret set` itself (Pacemaker's tool, pacemaker-cli-utils):
#   - `cibsecret set RSC PARAM VALUE` puts VALUE on its command line, which
#     every user of the node can read (ps, /proc/PID/cmdline); its
#     three-argument form reads the value with bash `read` without -r
#     (backslashes are eaten, leading and trailing blanks dropped);
#   - it needs the resource in the live CIB already, a running
#     pacemaker-controld, and root ssh (pssh, pdsh or ssh) to every other
#     node for its sync, and it fails when no other node answers. The
#     configuration is pushed only after these secrets are in place (or the
#     first start would fail on a missing file).
# This script writes the same layout (so `cibsecret get`, `check`, `sync`,
# `unstash` work on it afterwards), with the value only ever in this shell's
# memory, on stdin and in the files: never in an argument of any command.
set -eu

SECRETS_DIR=/var/lib/pacemaker/lrm/secrets

die() {
    printf 'rapidpro-secret.sh: error: %s\n' "$*" >&2
    exit 1
}

[ "$#" -eq 2 ] ||
    die "usage: rapidpro-secret.sh RESOURCE PARAMETER < file-holding-the-value (e.g. 'rapidpro-secret.sh stack redis_password')"
rsc=$1 param=$2
for name in "$rsc" "$param"; do
    case $name in
        '' | .* | *[!A-Za-z0-9_.:-]*) die "'$name' is not a resource or parameter name (letters, digits and _ . : - only)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run it as root: Pacemaker reads $SECRETS_DIR as root, and only root may read it"

# One line, taken as it is (-r: backslashes stay; IFS=: blanks stay).
value=
IFS= read -r value || [ -n "$value" ] ||
    die "no value on stdin for $rsc $param: give it on stdin, e.g. < /root/$param"
if IFS= read -r more || [ -n "${more:-}" ]; then
    die "the value of $rsc $param must be one line: Pacemaker reads only the first"
fi
[ -n "$value" ] || die "the value of $rsc $param is empty"
case $value in
    *[[:space:]]) die "the value of $rsc $param ends with white space, which Pacemaker strips when it reads the file: the agent would get another value" ;;
esac
length=$(printf '%s' "$value" | wc -c)
[ "$length" -le 254 ] ||
    die "the value of $rsc $param is $length bytes: Pacemaker reads at most 254"

umask 077
mkdir -p "$SECRETS_DIR/$rsc"
dir=$SECRETS_DIR/$rsc
# Written beside, then renamed: a reader sees the old file or the new one.
tmp=$(mktemp "$dir/.$param.XXXXXX")
trap 'rm -f "$tmp" "$tmp.sign"' EXIT
printf '%s\n' "$value" >"$tmp"
sum=$(printf '%s' "$value" | md5sum)
printf '%s\n' "${sum%% *}" >"$tmp.sign"
mv -f "$tmp" "$dir/$param"
mv -f "$tmp.sign" "$dir/$param.sign"
trap - EXIT
printf 'rapidpro-secret.sh: %s %s stored in %s (mode 0600); the CIB must hold %s=lrm://\n' \
    "$rsc" "$param" "$dir/$param" "$param" >&2
