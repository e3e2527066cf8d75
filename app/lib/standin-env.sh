# Sourced by the launchers in ../bin: loads the stand-in's environment file.
#
# standin_load_env [ENVFILE] exports every KEY=value line of ENVFILE, which
# defaults to $RAPIDPRO_STANDIN_ENV, then /etc/rapidpro-standin/standin.env.
# (ocf:heartbeat:anything starts its binfile through `su -`, which drops the
# environment: there the file is passed as the argument, in cmdline_options.)
# Sets STANDIN_APP_DIR (the app/ directory) and STANDIN_CELERY.

standin_load_env() {
    env_file=${1:-${RAPIDPRO_STANDIN_ENV:-/etc/rapidpro-standin/standin.env}}
    if [ ! -r "$env_file" ]; then
        echo "$0: cannot read the environment file $env_file (write it with" \
            "rapidpro-standin-setup; pass it as the argument or in RAPIDPRO_STANDIN_ENV)" >&2
        exit 1
    fi
    # `. file` searches PATH for a name without a slash.
    case $env_file in */*) ;; *) env_file=./$env_file ;; esac
    set -a
    . "$env_file"
    set +a
    STANDIN_CELERY=${STANDIN_CELERY:-/opt/rapidpro-ha-standin/venv/bin/celery}
}

# standin_require NAME...: exits naming the first variable that is unset or empty.
standin_require() {
    for name in "$@"; do
        eval "value=\${$name:-}"
        if [ -z "$value" ]; then
            echo "$0: $name is not set in $env_file" >&2
            exit 1
        fi
    done
}

# standin_require_celery: exits unless the celery program exists.
standin_require_celery() {
    if [ ! -x "$STANDIN_CELERY" ]; then
        echo "$0: $STANDIN_CELERY is missing: install the celery venv" \
            "(scripts/install-deps) or set STANDIN_CELERY" >&2
        exit 1
    fi
}
