#!/usr/bin/env python3
"""A plugin for runbook's tests that misbehaves on demand (MODE in its environment).

Its actions: `ping` (a read answering {"pid": its process id}) always behaves; `act` (a read) and
`create` (a write, not idempotent, no probe) misbehave as MODE says:
  ok          behave
  die         `create` writes the pid to PID_FILE and waits to be killed
  non_json    `act` prints a line that is not JSON
  silent      `act` is never answered
  wrong_id    `act` is answered with the id of a call answered already
  flood       `act` is answered with 100 MB on one line
  leak        `configure` prints the configured token on stderr
  together    `act` is answered only once 4 calls are in flight at once
  slow_create `create` writes the pid to PID_FILE, takes 3 s (reading nothing meanwhile), then
              writes PID_FILE.made and answers
  env_leak    prints its variable GREETING on stderr as it starts, before any handshake
`remove` (destructive) counts the items of its required array `ids`; `create` declares a
planned_result.
Describe lies: bad_effect, cloudflare (a built-in's namespace), bad_type, protocol2.
"""

import json
import os
import sys
import threading
import time

MODE = os.environ.get("MODE", "ok")
lock = threading.Lock()
barrier = threading.Barrier(4, timeout=20)
answered = []


def send(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
        if "id" in obj:
            answered.append(obj["id"])


def describe():
    effect = "sideways" if MODE == "bad_effect" else "read"
    ptype = "float" if MODE == "bad_type" else "string"
    return {
        "namespace": "cloudflare" if MODE == "cloudflare" else "fix",
        "summary": "misbehaves on demand",
        "actions": [
            {"name": "ping", "summary": "the pid", "effect": "read"},
            {"name": "act", "summary": "misbehaves", "effect": effect,
             "params": [{"name": "note", "type": ptype, "required": False, "doc": "anything"}]},
            {"name": "create", "summary": "a write", "effect": "write", "idempotent": False,
             "params": [{"name": "title", "type": "string", "required": True, "doc": "a title"}],
             "planned_result": {"id": "(planned)", "title": "(planned)"}},
            {"name": "remove", "summary": "a removal", "effect": "destructive",
             "params": [{"name": "ids", "type": "array", "required": True, "doc": "ids"}],
             "targets": {"kind": "count_of", "param": "ids"}},
        ],
        "config": {"secret_fields": ["token"]},
    }


def handle(req):
    rid, method, params = req.get("id"), req.get("method"), req.get("params") or {}
    if method == "initialize":
        return send({"jsonrpc": "2.0", "id": rid, "result": {"protocol": 2 if MODE == "protocol2" else 1}})
    if method == "describe":
        return send({"jsonrpc": "2.0", "id": rid, "result": describe()})
    if method == "configure":
        if MODE == "leak":
            print("debug: my token is " + params["config"].get("token", ""), file=sys.stderr, flush=True)
        return send({"jsonrpc": "2.0", "id": rid, "result": {}})
    if method == "shutdown":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
        sys.exit(0)
    action = params.get("action")
    if action == "ping":
        return send({"jsonrpc": "2.0", "id": rid, "result": {"pid": os.getpid()}})
    if action == "create":
        if MODE == "die":
            with open(os.environ["PID_FILE"] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(os.environ["PID_FILE"] + ".tmp", os.environ["PID_FILE"])
            time.sleep(600)
        if MODE == "slow_create":
            with open(os.environ["PID_FILE"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3)
            with open(os.environ["PID_FILE"] + ".made", "w") as f:
                f.write(params["args"]["title"])
        return send({"jsonrpc": "2.0", "id": rid, "result": {"title": params["args"]["title"]}})
    if action == "remove":
        return send({"jsonrpc": "2.0", "id": rid, "result": {"removed": params["args"]["ids"]}})
    if action == "act":
        if MODE == "together":
            def wait():
                try:
                    barrier.wait()
                    send({"jsonrpc": "2.0", "id": rid, "result": "together"})
                except threading.BrokenBarrierError:
                    send({"jsonrpc": "2.0", "id": rid, "error": {"code": 1, "message": "the calls came one by one"}})
            threading.Thread(target=wait, daemon=True).start()
            return
        if MODE == "non_json":
            with lock:
                sys.stdout.write("Traceback (most recent call last): oops\n")
                sys.stdout.flush()
            return
        if MODE == "silent":
            return
        if MODE == "wrong_id":
            return send({"jsonrpc": "2.0", "id": answered[-1], "result": "not yours"})
        if MODE == "flood":
            chunk = "x" * (1 << 20)
            with lock:
                sys.stdout.write('{"jsonrpc":"2.0","id":%d,"result":"' % rid)
                for _ in range(100):
                    sys.stdout.write(chunk)
                sys.stdout.write('"}\n')
                sys.stdout.flush()
            return
        return send({"jsonrpc": "2.0", "id": rid, "result": "acted"})
    send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "unknown"}})


if MODE == "env_leak":
    print("starting with GREETING=" + os.environ.get("GREETING", ""), file=sys.stderr, flush=True)

for line in sys.stdin:
    if line.strip():
        handle(json.loads(line))
