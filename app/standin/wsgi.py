"""The web app, served by uWSGI behind nginx.

GET /        200 "rapidpro stand-in on <node>" (does not touch PostgreSQL)
POST /sms    form id, from, text: stored in incoming_sms, then 200 "stored <id>"
POST /send   form to, text: queued in outbox, then 200 "queued <outbox id>"

A 200 from /sms or /send means the row is committed. Every failure
(PostgreSQL down, read-only, timed out, ...) is a 503, so the gateway or
client retries; incoming_sms ignores a repeated id.
"""

from urllib.parse import parse_qs

from . import config, db

OK = "200 OK"


def application(environ, start_response):
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    try:
        if path == "/" and method in ("GET", "HEAD"):
            status, body = OK, f"rapidpro stand-in on {config.NODE}\n"
        elif path == "/sms" and method == "POST":
            status, body = receive_sms(read_form(environ))
        elif path == "/send" and method == "POST":
            status, body = queue_sms(read_form(environ))
        else:
            status, body = "404 Not Found", "not found\n"
    except Exception as e:  # noqa: BLE001 - any failure must be a non-200
        environ["wsgi.errors"].write(f"standin: {method} {path} failed: {e!r}\n")
        status, body = "503 Service Unavailable", f"unavailable: {e}\n"
    data = body.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


def read_form(environ):
    """The urlencoded request body as {name: first value}."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length).decode("utf-8")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def missing(form, *fields):
    absent = [f for f in fields if f not in form]
    return ("400 Bad Request", f"missing {', '.join(absent)}\n") if absent else None


def receive_sms(form):
    bad = missing(form, "id", "from", "text")
    if bad:
        return bad
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO incoming_sms (id, sender, body, received_by)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (form["id"], form["from"], form["text"], config.NODE),
            )
        conn.commit()
    finally:
        conn.close()
    return OK, f"stored {form['id']}\n"


def queue_sms(form):
    bad = missing(form, "to", "text")
    if bad:
        return bad
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO outbox (recipient, body) VALUES (%s, %s) RETURNING id",
                (form["to"], form["text"]),
            )
            (outbox_id,) = cur.fetchone()
        conn.commit()
    finally:
        conn.close()
    return OK, f"queued {outbox_id}\n"
