"""Celery app: beat queues flush_outbox every second, the worker sends the
outbox to the SMS gateway.

Run from the app directory (the wrappers do):
    celery -A standin.tasks worker ...    celery -A standin.tasks beat ...
"""

import urllib.parse
import urllib.request

from celery import Celery
from celery.utils.log import get_task_logger

from . import config, db

log = get_task_logger(__name__)

app = Celery("standin", broker=config.REDIS_URL)
app.conf.update(
    # Redis moves with the primary: keep reconnecting, never give up.
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_transport_options={"socket_connect_timeout": 3},
    task_ignore_result=True,
    timezone="UTC",
    beat_schedule={
        "flush-outbox": {
            "task": "standin.tasks.flush_outbox",
            "schedule": 1.0,
            # Ticks queued while no worker ran are worthless later.
            "options": {"expires": 10},
        },
    },
)

# Rows sent per run at most; the next tick goes on.
BATCH = 100

# No proxy from the environment: the gateway is reached directly.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@app.task
def flush_outbox():
    """Sends the unsent outbox rows, oldest first, one transaction per row:
    lock it (SKIP LOCKED, so a second worker never sends it too), POST it,
    mark it sent, commit. A failed POST leaves the row unsent for the next
    run."""
    sent = 0
    conn = db.connect()
    try:
        while sent < BATCH:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, recipient, body FROM outbox WHERE sent_at IS NULL"
                    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
                row = cur.fetchone()
                if row is None:
                    break
                post_to_gateway(*row)
                cur.execute(
                    "UPDATE outbox SET sent_at = now(), sent_by = %s WHERE id = %s",
                    (config.NODE, row[0]),
                )
            conn.commit()
            sent += 1
            log.info("sent outbox %s to %s", row[0], row[1])
    finally:
        conn.close()
    return sent


def post_to_gateway(outbox_id, to, text):
    """POSTs one SMS as a form; raises unless the gateway answers 2xx in time."""
    form = {"id": outbox_id, "to": to, "text": text, "node": config.NODE}
    request = urllib.request.Request(
        config.GATEWAY_URL, data=urllib.parse.urlencode(form).encode(), method="POST"
    )
    with _opener.open(request, timeout=config.GATEWAY_TIMEOUT_S) as response:
        response.read()
