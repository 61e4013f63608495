#!/usr/bin/env python3
"""A small ticketing API to try tickets.py against (standard library only).

    python3 examples/plugin-python/ticket_server.py [--port 9000] [--token T] [--latency-ms 0]

Prints `listening on PORT` once ready. GET /tickets[?status=&idempotency_key=], POST /tickets
(honours Idempotency-Key), POST /tickets/ID/close, GET /stats (requests per method and path).
Every request but /stats needs `Authorization: Bearer TOKEN`.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

lock = threading.Lock()
tickets = []
stats = {}


def make_handler(token, latency):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes: without this, Nagle and delayed ACKs add 40 ms
        # to every answer on a kept-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self, method):
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path == "/stats":
                with lock:
                    return self.reply(200, dict(stats))
            with lock:
                stats[f"{method} {path}"] = stats.get(f"{method} {path}", 0) + 1
            if latency:
                time.sleep(latency / 1000)
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self.reply(401, {"error": "bad or missing token"})
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            params = {k: unquote(v) for k, v in params.items()}
            with lock:
                if method == "GET" and path == "/tickets":
                    found = [t for t in tickets
                             if all(t.get(k) == v for k, v in params.items() if k in ("status", "idempotency_key"))]
                    return self.reply(200, found)
                if method == "POST" and path == "/tickets":
                    body = json.loads(raw or b"{}")
                    key = self.headers.get("Idempotency-Key")
                    for t in tickets:
                        if key and t["idempotency_key"] == key:
                            return self.reply(200, t)
                    ticket = {"id": f"T-{len(tickets) + 1}", "title": body.get("title", ""),
                              "body": body.get("body", ""), "status": "open", "idempotency_key": key}
                    tickets.append(ticket)
                    return self.reply(201, ticket)
                if method == "POST" and path.startswith("/tickets/") and path.endswith("/close"):
                    tid = path[len("/tickets/"):-len("/close")]
                    for t in tickets:
                        if t["id"] == tid:
                            t["status"] = "closed"
                            return self.reply(200, t)
                    return self.reply(404, {"error": f"no ticket {tid}"})
                if method == "GET" and path == "/ping":
                    return self.reply(200, {"ok": True})
            return self.reply(404, {"error": "no such endpoint"})

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", default="tickets-example-token")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.token, args.latency_ms))
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
