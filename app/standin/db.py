"""PostgreSQL connections: one fresh, bounded connection per unit of work.

A connection per request or task run costs a few milliseconds and needs no
reconnect logic: after a failover the next request simply connects to
whatever answers at STANDIN_PG_HOST now.
"""

import psycopg2

from . import config


def connect():
    """A new connection (autocommit off) whose every wait is bounded."""
    return psycopg2.connect(
        host=config.PG_HOST,
        port=config.PG_PORT,
        user=config.PG_USER,
        password=config.PG_PASSWORD,
        dbname=config.PG_DB,
        application_name="rapidpro-standin",
        connect_timeout=config.PG_CONNECT_TIMEOUT_S,
        options=f"-c statement_timeout={config.PG_STATEMENT_TIMEOUT_MS}",
        # A server that vanished (power loss) must not hang us on TCP
        # retransmissions for minutes.
        tcp_user_timeout=10000,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=2,
    )
