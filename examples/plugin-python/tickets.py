#!/usr/bin/env python3
"""A runbook plugin for a small ticketing API, in Python with the standard library only.

runbook starts this program, writes JSON-RPC 2.0 requests on its stdin, one JSON object per
line, and reads the answers on its stdout, one per line (protocol 1, docs/plugins.md). Logs go to
stderr: runbook forwards them to its own log, secrets scrubbed. Calls may arrive while others are
in flight; each is served on a thread of its own, and answers are written whole, one at a time.

Declare it in runbook.toml:

    [[plugins]]
    command = ["python3", "examples/plugin-python/tickets.py"]
    config = { base_url = "http://127.0.0.1:9000", token = "${TICKETS_TOKEN}" }
"""

import http.client
import json
import queue
import sys
import threading
import urllib.parse

PROTOCOL = 1

TICKET = "ticket: #{id, title, body, status, idempotency_key}"

DESCRIBE = {
    "namespace": "tickets",
    "summary": "A small ticketing API (examples/plugin-python)",
    "actions": [
        {
            "name": "list_tickets",
            "summary": "List tickets, optionally only those with a status",
            "params": [{"name": "status", "type": "string", "required": False, "doc": "open or closed"}],
            "returns": "array of " + TICKET,
            "effect": "read",
            "example": 'tickets::list_tickets(#{status: "open"})',
        },
        {
            "name": "create_ticket",
            "summary": "Open a ticket",
            "params": [
                {"name": "title", "type": "string", "required": True, "doc": "one line"},
                {"name": "body", "type": "string", "required": False, "doc": "the details"},
            ],
            "returns": TICKET,
            "effect": "write",
            "idempotent": False,
            "targets": {"kind": "one"},
            "label": "title",
            # The call's run id and step key are its idempotency key: the probe looks for a
            # ticket made with it.
            "probe": "a ticket made with this call's idempotency key (run id and step key)",
            "example": 'tickets::create_ticket("MFA reset for ana@example.com", #{body: "done by runbook"})',
        },
        {
            "name": "close_ticket",
            "summary": "Close a ticket (closing a closed ticket changes nothing)",
            "params": [{"name": "id", "type": "string", "required": True, "doc": "the ticket's id"}],
            "returns": TICKET,
            "effect": "write",
            "idempotent": True,
            "targets": {"kind": "one"},
            "label": "id",
            "example": 'tickets::close_ticket("T-1")',
        },
    ],
    "config": {"secret_fields": ["token"]},
}

out_lock = threading.Lock()
config = {}


def log(text):
    print(f"tickets: {text}", file=sys.stderr, flush=True)


def send(message):
    line = json.dumps(message, separators=(",", ":")) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# Kept-alive connections to the API, shared by the calls' threads.
pool = queue.LifoQueue()


def connect():
    base = urllib.parse.urlsplit(config["base_url"])
    kind = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    return kind(base.netloc, timeout=20)


def api(method, path, body=None, headers=None):
    base_path = urllib.parse.urlsplit(config["base_url"]).path.rstrip("/")
    data = None if body is None else json.dumps(body).encode()
    sent_headers = {"Authorization": "Bearer " + config["token"], "Content-Type": "application/json"}
    sent_headers.update(headers or {})
    try:
        conn, reused = pool.get_nowait(), True
    except queue.Empty:
        conn, reused = connect(), False
    try:
        conn.request(method, base_path + path, body=data, headers=sent_headers)
        answer = conn.getresponse()
        raw = answer.read()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        conn.close()
        if not reused:
            raise
        # A kept-alive connection the API had closed: sent again on a new one. Safe for every
        # action here: a create carries its idempotency key, and closing is idempotent.
        conn = connect()
        conn.request(method, base_path + path, body=data, headers=sent_headers)
        answer = conn.getresponse()
        raw = answer.read()
    except BaseException:
        conn.close()
        raise
    pool.put(conn)
    if answer.status >= 400:
        raise ApiError(answer.status, f"the ticketing API answered {answer.status}: {raw[:200].decode(errors='replace')}")
    return json.loads(raw or b"null")


def idempotency_key(params):
    return f"{params['run_id']}/{params['step_key']}"


def call(params):
    action, args = params["action"], params["args"]
    if action == "list_tickets":
        query = "?" + urllib.parse.urlencode({"status": args["status"]}) if "status" in args else ""
        return api("GET", "/tickets" + query)
    if action == "create_ticket":
        body = {"title": args["title"], "body": args.get("body", "")}
        return api("POST", "/tickets", body, {"Idempotency-Key": idempotency_key(params)})
    if action == "close_ticket":
        return api("POST", "/tickets/" + urllib.parse.quote(args["id"], safe="") + "/close")
    raise KeyError(action)


def probe(params):
    key = urllib.parse.urlencode({"idempotency_key": idempotency_key(params)})
    found = api("GET", "/tickets?" + key)
    return {"found": True, "result": found[0]} if found else {"found": False}


def serve(request):
    rid, method, params = request.get("id"), request.get("method"), request.get("params") or {}
    try:
        if method == "initialize":
            result = {"protocol": PROTOCOL, "name": "tickets-example"}
        elif method == "describe":
            result = DESCRIBE
        elif method == "configure":
            config.clear()
            config.update(params["config"])
            missing = [k for k in ("base_url", "token") if not config.get(k)]
            if missing:
                send({"jsonrpc": "2.0", "id": rid,
                      "error": {"code": -32602, "message": "set " + " and ".join(missing) + " in the plugin's config"}})
                return
            log(f"configured for {config['base_url']}")
            result = {}
        elif method == "call":
            result = call(params)
        elif method == "probe":
            result = probe(params)
        elif method == "shutdown":
            result = {}
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})
            return
        send({"jsonrpc": "2.0", "id": rid, "result": result})
    except ApiError as e:
        send({"jsonrpc": "2.0", "id": rid,
              "error": {"code": 1, "message": str(e), "data": {"status": e.status, "retryable": e.status >= 500}}})
    except (OSError, http.client.HTTPException) as e:
        # The request may or may not have reached the API: say so, and the engine keeps a
        # change in doubt.
        send({"jsonrpc": "2.0", "id": rid,
              "error": {"code": 2, "message": f"the ticketing API did not answer: {e}",
                        "data": {"kind": "transport", "retryable": True}}})
    except Exception as e:  # a bug here must not take the plugin down
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"{type(e).__name__}: {e}"}})


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("method") == "shutdown":
            serve(request)
            break
        if request.get("method") in ("call", "probe"):
            threading.Thread(target=serve, args=(request,), daemon=True).start()
        else:
            serve(request)


if __name__ == "__main__":
    main()
