"""Settings from the environment (the wrappers export standin.env)."""

import os
import socket


def _env(name, default):
    return os.environ.get(name, default)


PG_HOST = _env("STANDIN_PG_HOST", "127.0.0.1")
PG_PORT = int(_env("STANDIN_PG_PORT", "5432"))
PG_USER = _env("STANDIN_PG_USER", "writer")
PG_PASSWORD = _env("STANDIN_PG_PASSWORD", "secret")
PG_DB = _env("STANDIN_PG_DB", "postgres")
REDIS_URL = _env("STANDIN_REDIS_URL", "redis://127.0.0.1:6379/0")
GATEWAY_URL = _env("STANDIN_GATEWAY_URL", "http://127.0.0.1:90/send")

# Bounds on every wait, so that a dead or frozen server yields an error
# in seconds instead of a hung request or task.
PG_CONNECT_TIMEOUT_S = 3
PG_STATEMENT_TIMEOUT_MS = 5000
GATEWAY_TIMEOUT_S = 5

# Recorded in received_by / sent_by and sent to the gateway as `node`.
NODE = socket.gethostname()
