#!/usr/bin/env python3
"""Check that Cloudflare's official Python SDK works against a Zero Trust users API endpoint.

Run it against runbook's simulator to prove the simulator is faithful enough that the official SDK
cannot tell it from the real service (envelope, result_info paging, typed models, errors).

    pip install cloudflare     # the official SDK, v4.x or v5.x
    CLOUDFLARE_BASE_URL=http://127.0.0.1:PORT/client/v4 \
    CLOUDFLARE_API_TOKEN=... CLOUDFLARE_ACCOUNT_ID=... python tests/sdk/cloudflare_sdk_check.py

Optional: CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY also check the legacy X-Auth-Email/X-Auth-Key
scheme; CLOUDFLARE_SDK_CHECK_USER_ID names the user whose sessions to read (otherwise the first
user with an active session is used).

What the tenant needs: more than PER_PAGE users; one user with an active session whose nonce has
an identity, at least one failed login, and a last seen identity, all with that user's email.

It CREATES, UPDATES AND DELETES a user (sdk-check-<random>@example.com): never point it at an
account you care about.

Exit status: 0 when every check held (one summary line on stdout), 1 when a check failed,
2 when it could not run (SDK not installed, environment incomplete).
"""

from __future__ import annotations

import datetime
import inspect
import os
import sys
import traceback
import uuid

PER_PAGE = 3
SESSION_SCAN_LIMIT = 50
UNKNOWN_USER_ID = "00000000-0000-4000-8000-00000000dead"


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_error(error_type, action, what: str):
    try:
        action()
    except error_type as error:
        return error
    except Exception as error:  # noqa: BLE001 - reported as a failed check
        raise CheckFailed(f"{what}: expected {error_type.__name__}, got {type(error).__name__}: {error}") from error
    raise CheckFailed(f"{what}: expected {error_type.__name__}, but the call succeeded")


def is_time(value) -> bool:
    return value is None or isinstance(value, datetime.datetime)


def main() -> int:
    try:
        import cloudflare
        from cloudflare import Cloudflare
    except ImportError as error:
        print(f"cloudflare-sdk-check: cannot import the SDK ({error}); run `pip install cloudflare`", file=sys.stderr)
        return 2

    missing = [name for name in ("CLOUDFLARE_BASE_URL", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID") if not os.environ.get(name)]
    if missing:
        print(f"cloudflare-sdk-check: set {', '.join(missing)}", file=sys.stderr)
        return 2

    base_url = os.environ["CLOUDFLARE_BASE_URL"]
    token = os.environ["CLOUDFLARE_API_TOKEN"]
    account_id = os.environ["CLOUDFLARE_ACCOUNT_ID"]
    # The SDK prefers X-Auth-Email/X-Auth-Key over the token whenever they are in the environment;
    # keep them aside so the main checks use the token, and check the legacy scheme on its own.
    legacy_email = os.environ.pop("CLOUDFLARE_EMAIL", None)
    legacy_key = os.environ.pop("CLOUDFLARE_API_KEY", None)
    os.environ.pop("CLOUDFLARE_API_USER_SERVICE_KEY", None)

    # No retries: a check must see the first answer, not one a retry papered over.
    client = Cloudflare(max_retries=0)
    done: list[str] = []
    try:
        run_checks(cloudflare, Cloudflare, client, base_url, token, account_id, legacy_email, legacy_key, done)
    except CheckFailed as failure:
        print(f"cloudflare-sdk-check: FAILED: {failure}", file=sys.stderr)
        print(f"cloudflare-sdk-check: passed before the failure: {', '.join(done) or 'nothing'}", file=sys.stderr)
        return 1
    except cloudflare.APIError as error:
        print(f"cloudflare-sdk-check: FAILED: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        print(f"cloudflare-sdk-check: passed before the failure: {', '.join(done) or 'nothing'}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - a bug in this script or an SDK incompatibility, shown whole
        traceback.print_exc()
        print("cloudflare-sdk-check: FAILED: unexpected exception (above)", file=sys.stderr)
        return 1
    print(f"cloudflare-sdk-check: OK: cloudflare {cloudflare.__version__} against {base_url}: {', '.join(done)}")
    return 0


def run_checks(cloudflare, Cloudflare, client, base_url, token, account_id, legacy_email, legacy_key, done) -> None:
    users = client.zero_trust.access.users
    version = cloudflare.__version__

    def note(message: str) -> None:
        print(f"cloudflare-sdk-check: note: cloudflare {version}: {message}", file=sys.stderr)

    # Listing across pages. SDK v5 pages by itself (page+1 until an empty page); v4 declares the
    # list a single page and takes no page/per_page, so there the pages are requested by hand.
    list_params = inspect.signature(users.list).parameters
    if "per_page" in list_params:
        first_page = users.list(account_id=account_id, per_page=PER_PAGE)
        info = first_page.result_info
        check(info is not None, "the list page has no result_info")
        check(info.page == 1, f"result_info.page is {info.page!r}, not 1")
        check(info.per_page == PER_PAGE, f"result_info.per_page is {info.per_page!r}, not {PER_PAGE}")
        pages = list(first_page.iter_pages())
        how = "auto-paginated"
    else:
        note("users.list is a single page without page/per_page: paging with extra_query")
        pages = []
        while not pages or pages[-1].result:
            check(len(pages) < 10_000, "paging never reaches an empty page")
            query = {"page": len(pages) + 1, "per_page": PER_PAGE}
            pages.append(users.list(account_id=account_id, extra_query=query))
        how = "paged by hand"
    listed = [user for page in pages for user in page.result]
    check(len(pages) >= 3, f"only {len(listed)} users: the tenant needs more than {PER_PAGE} to exercise paging")
    ids = [user.id for user in listed]
    check(len(ids) == len(set(ids)), "a user came back on two pages")
    for user in listed:
        check(isinstance(user.id, str) and isinstance(user.email, str), f"untyped user {user!r}")
        check(is_time(user.created_at) and is_time(user.updated_at), f"timestamps of {user.email} are not datetimes")
        check(is_time(user.last_successful_login), f"last_successful_login of {user.email} is not a datetime")
    if len(listed) <= 1000:
        one_page = users.list(account_id=account_id, extra_query={"per_page": 1000})
        check([u.id for u in one_page.result] == ids, f"pages of {PER_PAGE} and one page of 1000 disagree")
    done.append(f"listed {len(listed)} users in {len(pages)} pages of {PER_PAGE} ({how})")

    sample = listed[0]
    by_email = list(users.list(account_id=account_id, email=sample.email.upper()))
    check([u.id for u in by_email] == [sample.id], f"email filter for {sample.email} gave {[u.email for u in by_email]}")
    done.append("email filter")

    has_get = hasattr(users, "get")
    if has_get:
        fetched = users.get(sample.id, account_id=account_id)
        check(fetched is not None and fetched.id == sample.id, f"get({sample.id}) returned {fetched!r}")
        check(fetched.email == sample.email, "get and list disagree on the email")
        error = expect_error(cloudflare.NotFoundError, lambda: users.get(UNKNOWN_USER_ID, account_id=account_id), "get of an unknown user")
        check(error.status_code == 404, f"NotFoundError with status {error.status_code}")
        done.append("get + NotFoundError")
    else:
        note("no zero_trust.access.users.get (added to the API in 2026): get skipped")

    # Create, refuse a duplicate, update the name, delete. SDK v4 has none of these methods: there
    # they go through the SDK's generic client.post/put/delete (same auth, errors and envelope)
    # and the result is parsed into the SDK's user model.
    typed_writes = all(hasattr(users, name) for name in ("create", "update", "delete"))
    users_path = f"/accounts/{account_id}/access/users"
    if not typed_writes:
        note("no users.create/update/delete: using the generic client.post/put/delete")

    def create(**body):
        if typed_writes:
            return users.create(account_id=account_id, **body)
        return generic_result(client, "post", users_path, body, expected_status=(200, 201))

    def update(user_id: str, **body):
        if typed_writes:
            return users.update(user_id, account_id=account_id, **body)
        return generic_result(client, "put", f"{users_path}/{user_id}", body, expected_status=(200,))

    def delete(user_id: str):
        if typed_writes:
            return users.delete(user_id, account_id=account_id)
        return generic_result(client, "delete", f"{users_path}/{user_id}", None, expected_status=(200, 202))

    email = f"sdk-check-{uuid.uuid4().hex[:12]}@example.com"
    created = create(email=email, name="SDK Check")
    check(created is not None and isinstance(created.id, str) and created.id, f"create returned {created!r}")
    check(created.email == email and created.name == "SDK Check", f"create returned {created!r}")
    check(created.access_seat is False and created.gateway_seat is False, "a new user has no seats")
    check(isinstance(created.created_at, datetime.datetime), "created_at is not a datetime")
    expect_error(cloudflare.ConflictError, lambda: create(email=email), "a duplicate create")
    updated = update(created.id, email=email, name="SDK Check Renamed")
    check(updated is not None and updated.name == "SDK Check Renamed", f"update returned {updated!r}")
    check(updated.id == created.id and updated.email == email, "update changed more than the name")
    expect_error(
        cloudflare.BadRequestError,
        lambda: update(created.id, email="changed-" + email, name="x"),
        "an update that changes the email",
    )
    delete(created.id)
    if has_get:
        expect_error(cloudflare.NotFoundError, lambda: users.get(created.id, account_id=account_id), "get after delete")
    check(not list(users.list(account_id=account_id, email=email)), "the deleted user is still listed")
    done.append("create/update/delete + ConflictError + BadRequestError")

    # Sessions, failed logins and identities of one user.
    subject_id = os.environ.get("CLOUDFLARE_SDK_CHECK_USER_ID")
    candidates = [u for u in listed if u.id == subject_id] if subject_id else listed[:SESSION_SCAN_LIMIT]
    subject, sessions = None, []
    for user in candidates:
        sessions = list(users.active_sessions.list(user.id, account_id=account_id))
        if sessions:
            subject = user
            break
    check(subject is not None, "no user with an active session (set CLOUDFLARE_SDK_CHECK_USER_ID)")
    for session in sessions:
        check(isinstance(session.expiration, int), f"session expiration {session.expiration!r} is not an int")
        check(session.metadata is not None and isinstance(session.metadata.nonce, str), "a session without metadata.nonce")
        for key, app in (session.metadata.apps or {}).items():
            check(isinstance(app.hostname, str), f"app {key} has no typed hostname")
    nonce = sessions[0].metadata.nonce
    identity = users.active_sessions.get(nonce, account_id=account_id, user_id=subject.id)
    check(identity is not None, "the active session has no identity")
    check(identity.is_active is True, f"isActive is {identity.is_active!r}, not true")
    check(identity.email == subject.email, f"the session identity is {identity.email!r}, not {subject.email!r}")
    check(identity.geo is not None and isinstance(identity.geo.country, str), "the session identity has no geo.country")
    for key, posture in (identity.device_posture or {}).items():
        check(posture.__class__.__name__ == "DevicePosture", f"devicePosture[{key}] is not typed")
    expect_error(
        cloudflare.NotFoundError,
        lambda: users.active_sessions.get("no-such-nonce", account_id=account_id, user_id=subject.id),
        "an unknown nonce",
    )
    done.append(f"{len(sessions)} active session(s) + session identity")

    failed = list(users.failed_logins.list(subject.id, account_id=account_id))
    check(failed, f"{subject.email} has no failed logins")
    for login in failed:
        check(isinstance(login.expiration, int), f"failed login expiration {login.expiration!r} is not an int")
        check(isinstance(login.metadata, dict), "failed login metadata is not an object")
    done.append(f"{len(failed)} failed login(s)")

    last_seen = users.last_seen_identity.get(subject.id, account_id=account_id)
    check(last_seen is not None and last_seen.email == subject.email, f"last seen identity is {last_seen!r}")
    check(last_seen.geo is not None and isinstance(last_seen.geo.country, str), "the last seen identity has no geo.country")
    expect_error(
        cloudflare.NotFoundError,
        lambda: users.last_seen_identity.get(UNKNOWN_USER_ID, account_id=account_id),
        "last seen identity of an unknown user",
    )
    done.append("last seen identity")

    # Credentials the service refuses.
    wrong = Cloudflare(api_token="wrong-" + token, base_url=base_url, max_retries=0)
    error = expect_error(
        cloudflare.PermissionDeniedError,
        lambda: wrong.zero_trust.access.users.list(account_id=account_id),
        "a wrong token",
    )
    codes = [e.get("code") for e in (error.body or {}).get("errors", [])] if isinstance(error.body, dict) else []
    check(error.status_code == 403 and 10000 in codes, f"a wrong token got {error.status_code} {error.body!r}")
    done.append("PermissionDeniedError")

    if legacy_email and legacy_key:
        legacy = Cloudflare(api_email=legacy_email, api_key=legacy_key, base_url=base_url, max_retries=0)
        legacy_page = legacy.zero_trust.access.users.list(account_id=account_id, extra_query={"per_page": 1})
        check(len(legacy_page.result) == 1, "legacy X-Auth-Email/X-Auth-Key auth listed nothing")
        done.append("legacy key auth")


def generic_result(client, method: str, path: str, body, expected_status):
    """Sends a request through the SDK's generic verb methods and parses the envelope's result
    into the SDK's user model; error statuses still raise the SDK's own exceptions."""
    import httpx
    from cloudflare.types.zero_trust.access.user_list_response import UserListResponse

    kwargs = {"cast_to": httpx.Response}
    if body is not None:
        kwargs["body"] = body
    response = getattr(client, method)(path, **kwargs)
    check(response.status_code in expected_status, f"{method.upper()} {path} answered {response.status_code}")
    envelope = response.json()
    check(envelope.get("success") is True, f"{method.upper()} {path}: success is not true: {envelope!r}")
    result = envelope.get("result")
    if method == "delete":
        return result
    check(isinstance(result, dict), f"{method.upper()} {path}: result is not an object: {envelope!r}")
    return UserListResponse.construct(**result)


if __name__ == "__main__":
    sys.exit(main())
