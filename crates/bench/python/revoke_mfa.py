#!/usr/bin/env python3
"""The revoke-MFA job, written the way a careful user would with the vendors' tools.

Cloudflare Access through Cloudflare's official SDK (`pip install cloudflare`), PrivX through httpx
(PrivX has no official Python SDK on PyPI), a thread pool for the per-user calls. Same job as
scripts/revoke_mfa_for_failed_logins.rhai: users with 3+ failed logins in the last 24 hours have
their PrivX MFA reset with one call; ambiguous emails are skipped.

Reads the same variables as runbook's providers. Prints one JSON line with the counts.
"""

import argparse
import base64
import datetime
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
from cloudflare import Cloudflare


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--window-hours", type=int, default=24)
    args = parser.parse_args()

    account_id = os.environ["CLOUDFLARE_ACCOUNT_ID"]
    cf = Cloudflare(max_retries=2)  # CLOUDFLARE_API_TOKEN and CLOUDFLARE_BASE_URL from the environment
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=args.window_hours)

    users = list(cf.zero_trust.access.users.list(account_id=account_id, per_page=1000))

    def recent_failures(user_id: str) -> int:
        count = 0
        for failure in cf.zero_trust.access.users.failed_logins.list(user_id, account_id=account_id):
            metadata = failure.metadata or {}
            when = metadata.get("datetime") if isinstance(metadata, dict) else getattr(metadata, "datetime", None)
            if when:
                try:
                    if datetime.datetime.fromisoformat(when.replace("Z", "+00:00")) >= since:
                        count += 1
                except ValueError:
                    pass
        return count

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        counts = list(pool.map(recent_failures, [u.id for u in users]))
    flagged = [u.email for u, n in zip(users, counts) if n >= args.threshold and u.email]

    base = os.environ["PRIVX_API_BASE_URL"].rstrip("/")
    basic = base64.b64encode(
        f"{os.environ.get('PRIVX_API_OAUTH_CLIENT_ID', 'privx-external')}:{os.environ['PRIVX_API_OAUTH_CLIENT_SECRET']}".encode()
    ).decode()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    with httpx.Client(base_url=base, limits=limits, timeout=30) as px:
        token = px.post(
            "/auth/api/v1/oauth/token",
            headers={"Authorization": f"Basic {basic}"},
            data={
                "grant_type": "password",
                "username": os.environ["PRIVX_API_CLIENT_ID"],
                "password": os.environ["PRIVX_API_CLIENT_SECRET"],
            },
        ).raise_for_status().json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        def find(email: str):
            response = px.post(
                "/role-store/api/v1/users/search", params={"offset": 0, "limit": 1000}, json={"keywords": email}, headers=auth
            ).raise_for_status()
            items = response.json().get("items") or []
            exact = {u["id"]: u for u in items if email.lower() in ((u.get("email") or "").lower(), (u.get("principal") or "").lower())}
            return list(exact.values())

        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            found = list(pool.map(find, flagged))
        acted = [matches[0]["id"] for matches in found if len(matches) == 1]
        if acted:
            px.post("/role-store/api/v1/users/mfa/reset", json=acted, headers=auth).raise_for_status()

    print(json.dumps({"checked": len(users), "flagged": len(flagged), "acted_on": len(acted)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
