"""`python -m bot check`: validate the settings, reach every dependency, and print a fix for each failure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.core.redis_state import PREFIX, redis_client
from bot.core.store import StateStore
from bot.dbss import (
    CredentialsUnavailable,
    DbssApiError,
    DbssNotSent,
    DbssOutcomeUnknown,
    IamPasswordAuth,
    build_fleet,
    build_metadata_auth,
)
from bot.dbss.errors import DbssError, DbssThrottled


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


SLACK_FIXES = {
    "invalid_auth": "SLACK_BOT_TOKEN is wrong: copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions.",
    "not_authed": "SLACK_BOT_TOKEN is empty.",
    "token_revoked": "The app was uninstalled or the token revoked: reinstall the app and copy the new token.",
    "account_inactive": "The bot user was deactivated: reinstall the app.",
}


def check_slack(settings: Settings) -> Result:
    if settings.slack_bot_token is None:
        return Result("Slack", False, "SLACK_BOT_TOKEN is not set", "Set SLACK_BOT_TOKEN to the bot token (xoxb-...).")
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[],  # one auth.test: a failure is reported as it is, not retried
    )
    try:
        answer = client.auth_test()
    except SlackApiError as err:
        error = str(err.response.get("error", "unknown_error"))
        return Result("Slack", False, f"auth.test failed: {error}", SLACK_FIXES.get(error, "Check SLACK_BOT_TOKEN."))
    except OSError as err:
        return Result(
            "Slack",
            False,
            f"cannot reach {settings.slack_api_url} ({type(err).__name__})",
            "Check SLACK_API_URL and the network path (proxy, firewall) to Slack.",
        )
    return Result("Slack", True, f"bot @{answer.get('user')} in workspace {answer.get('team')} ({answer.get('url')})")


def check_slack_mode(settings: Settings) -> Result:
    if settings.socket_mode:
        assert settings.slack_app_token is not None
        if not settings.slack_app_token.get_secret_value().startswith("xapp-"):
            return Result(
                "Slack mode",
                False,
                "SLACK_APP_TOKEN does not start with xapp-",
                "Create an app-level token with connections:write (Basic Information > App-Level Tokens).",
            )
        return Result("Slack mode", True, "Socket Mode (SLACK_APP_TOKEN is set)")
    if settings.slack_signing_secret is None:
        return Result(
            "Slack mode",
            False,
            "HTTP mode without SLACK_SIGNING_SECRET",
            "Set SLACK_SIGNING_SECRET (Basic Information > App Credentials), or SLACK_APP_TOKEN for Socket Mode.",
        )
    return Result("Slack mode", True, f"HTTP mode on port {settings.port} (POST /slack/events, GET /healthz)")


AGENCY_FIX = (
    "Bind an agency with DBSS rights in this project to the ECS server or CCE node pool (IAM > Agencies; the "
    "server's Management Information > Agency), and check DBSS_METADATA_ENDPOINT."
)
REFUSED_FIXES = {
    "token": "check DBSS_AUTH_TOKEN, and that it was issued for this region",
    "aksk": "check DBSS_AK and DBSS_SK; temporary keys also need their DBSS_SECURITY_TOKEN, and expire",
    "iam": "check DBSS_IAM_DOMAIN, DBSS_IAM_USER and DBSS_IAM_PASSWORD",
    "metadata": "the agency's temporary keys were refused; check the agency bound to this server",
}


def credential_description(settings: Settings) -> str:
    """Which kind of DBSS credential the settings hold, in words."""
    kind = settings.credential_kind
    if kind == "token":
        return "a ready IAM token (DBSS_AUTH_TOKEN)"
    if kind == "aksk" and settings.dbss_security_token is not None:
        return "temporary AK/SK with a security token (DBSS_AK, DBSS_SK, DBSS_SECURITY_TOKEN)"
    if kind == "aksk":
        return "AK/SK signing (DBSS_AK, DBSS_SK)"
    if kind == "metadata":
        return f"the agency's temporary AK/SK from the metadata service at {settings.dbss_metadata_endpoint}"
    return f"IAM password login as {settings.dbss_iam_user} (DBSS_IAM_DOMAIN, DBSS_IAM_USER, DBSS_IAM_PASSWORD)"


def _dbss_fix(err: DbssError, settings: Settings) -> str:
    if isinstance(err, CredentialsUnavailable):
        return AGENCY_FIX
    if isinstance(err, DbssNotSent):
        return "Check DBSS_ENDPOINT (or DBSS_REGION, or the endpoints in DBSS_TARGETS) and the network path to it."
    if isinstance(err, DbssOutcomeUnknown):
        return "DBSS did not answer in time: check the endpoint, or raise DBSS_TIMEOUT_SECONDS."
    if isinstance(err, DbssThrottled):
        return "APIGW.0308: throttled. Wait a minute and run the check again."
    if isinstance(err, DbssApiError):
        code = err.gateway_code
        if code in ("0301", "0305", "0307"):
            return f"The credentials were refused (APIGW.{code}): {REFUSED_FIXES[settings.credential_kind]}."
        if code in ("0302", "0306") or err.status_code == 403:
            return "The credentials lack permission: grant the IAM user DBSS read and reboot rights in this project."
        if code == "0101" or err.status_code == 404:
            return "The API was not found: check DBSS_ENDPOINT and DBSS_REGION."
        if code == "0310":
            return "The project is unavailable: check DBSS_PROJECT_ID (or the project IDs in DBSS_TARGETS)."
    return "See the error above and the README's troubleshooting section."


def check_iam(settings: Settings) -> list[Result] | None:
    """One project-scoped login per target: each target's token is its own."""
    if settings.credential_kind != "iam":
        return None
    assert settings.dbss_iam_domain and settings.dbss_iam_user and settings.dbss_iam_password
    results = []
    # One login per target, reported as it went: httpx re-sends nothing.
    with httpx.Client(base_url=settings.dbss_iam_endpoint, timeout=settings.dbss_timeout_seconds) as iam:
        for target in settings.targets:
            name = "IAM login" + (f" ({target.label})" if len(settings.targets) > 1 else "")
            auth = IamPasswordAuth(
                iam_client=iam,
                domain=settings.dbss_iam_domain,
                user=settings.dbss_iam_user,
                password=settings.dbss_iam_password.get_secret_value(),
                project_id=target.project_id,
            )
            try:
                auth.token()
            except DbssApiError as err:
                results.append(
                    Result(
                        name,
                        False,
                        f"HTTP {err.status_code}: {err.error_msg} (project {target.project_id})",
                        "Check DBSS_IAM_DOMAIN (the account name), DBSS_IAM_USER and DBSS_IAM_PASSWORD, that the user "
                        "is enabled, and that the project ID is right and the user has a role in it.",
                    )
                )
            except DbssError as err:
                results.append(Result(name, False, str(err), "Check DBSS_IAM_ENDPOINT and the network path to it."))
            else:
                results.append(
                    Result(name, True, f"token issued for {settings.dbss_iam_user} in project {target.project_id}")
                )
    return results


def check_metadata(settings: Settings) -> Result | None:
    if settings.credential_kind != "metadata":
        return None
    auth = build_metadata_auth(settings)
    try:
        key = auth.key()
    except CredentialsUnavailable as err:
        return Result("Metadata credentials", False, str(err), AGENCY_FIX)
    finally:
        auth.close()
    until = datetime.fromtimestamp(key.expires_at or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Result(
        "Metadata credentials",
        True,
        f"temporary AK/SK and security token of the agency from {auth.endpoint}, valid until {until}",
    )


def check_dbss(settings: Settings) -> list[Result]:
    """Every target reached with the credentials, each reported on its own line."""
    results = []
    fleet = build_fleet(settings)
    try:
        for member in fleet.members:
            target = member.target
            name = "DBSS" + (f" ({target.label})" if not fleet.single else "")
            try:
                instances = member.client.list_instances()
            except DbssError as err:
                failed = f"listing instances at {target.endpoint} failed: {err}"
                results.append(Result(name, False, failed, _dbss_fix(err, settings)))
                continue
            results.append(
                Result(
                    name,
                    True,
                    f"{len(instances)} audit instance(s) visible in project {target.project_id} at {target.endpoint} "
                    f"({target.region}; credentials accepted)",
                )
            )
    finally:
        fleet.close()
    return results


def check_state(settings: Settings) -> Result:
    path = Path(settings.bot_state_path)
    try:  # opening creates the file and its key, as the bot's first start would
        store = StateStore(path)
        store.confirmation_key()
        store.close()
    except Exception as err:  # any failure here means the bot could not keep its single-use guarantee
        return Result(
            "State", False, f"{path}: {err}", "Point BOT_STATE_PATH at a writable file on a persistent volume."
        )
    return Result("State", True, f"{path} is writable")


# The key names of bot/core/redis_state.py (RedisBackedStore's default prefix); the check's test has a store write them.


def _count(client: redis.Redis, pattern: str) -> int:
    return sum(1 for _ in client.scan_iter(match=PREFIX + pattern, count=1000))


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def check_redis(settings: Settings) -> Result | None:
    """PING the shared Redis and say what replica-shared state it holds."""
    if settings.redis_url is None:
        return None
    url = settings.redis_url.get_secret_value()
    parts = urlsplit(url)
    where = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))  # no password
    client = redis_client(url)  # reads only; no retry all the same (redis_client)
    try:
        client.ping()
        key = bool(client.exists(PREFIX + "confirm-key"))
        locks = _count(client, "lock:*")
        followups = int(client.scard(PREFIX + "followups"))
        owners = {client.get(k) for k in client.scan_iter(match=PREFIX + "followup-owner:*", count=1000)} - {None}
        used = _count(client, "used:*")
        cooldowns = _count(client, "last-reboot:*")
        audit = int(client.xlen(PREFIX + "audit"))
    except redis.RedisError as err:
        return Result(
            "Redis",
            False,
            f"{where}: {type(err).__name__}: {err}",
            "Check REDIS_URL (host, port, password; rediss:// for TLS) and that Redis accepts connections from here.",
        )
    finally:
        client.close()
    if not (key or locks or followups or used or cooldowns or audit):
        return Result("Redis", True, f"{where} answers PING; no shared state yet (no replica has used it)")
    found = [
        "the shared confirmation key" if key else "no confirmation key yet",
        _plural(locks, "in-flight lock"),
        _plural(followups, "follow-up") + f" (leased by {_plural(len(owners), 'live replica')})",
        _plural(used, "used confirmation"),
        _plural(cooldowns, "cooldown"),
        f"{audit} audit " + ("entry" if audit == 1 else "entries") + " in the shared trail",
    ]
    return Result("Redis", True, f"{where} answers PING; shared state: {', '.join(found)}")


def check_postgres(settings: Settings) -> Result | None:
    """With DATABASE_URL: connect, bring the schema up to date (as the bot's first start would), a test write."""
    if settings.database_url is None:
        return None
    url = settings.database_url.get_secret_value()
    parts = urlsplit(url)
    where = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))  # no password
    try:
        from bot.core.postgres_state import PostgresStore

        store = PostgresStore(url)
        try:
            store.heartbeat()
            version = store.schema_version
        finally:
            store.close()
    except Exception as err:  # the bot could not keep its single-use guarantee there
        return Result(
            "PostgreSQL",
            False,
            f"{where}: {err.__cause__ or err}".replace(url, where),
            "Check DATABASE_URL (host, port, user, password, database; ?sslmode=require for TLS) and that the user "
            "may create tables in it.",
        )
    return Result("PostgreSQL", True, f"{where} answers; a test write succeeded; schema version {version}")


def check_size(settings: Settings) -> Result:
    """How much state the store holds, each number read in constant time (no count of the trail)."""
    from bot.core.stores import open_store

    try:
        store = open_store(settings)
        try:
            size = store.size()
        finally:
            store.close()
    except Exception as err:
        return Result("State size", False, f"cannot be read: {type(err).__name__}", "See the store's line above.")
    since = f" since {datetime.fromtimestamp(size.oldest_entry, UTC):%Y-%m-%d}" if size.oldest_entry is not None else ""
    entries = "" if size.audit_entries is None else f"{size.audit_entries} audit entries{since}, "
    detail = f"{size.backend}: {entries}{_plural(size.pending_outbox, 'message')} waiting to be sent"
    warning = any("evicts keys" in note for note in size.notes)
    return Result(
        "State size",
        not warning,
        detail + "".join(f"; {note}" for note in size.notes),
        "CONFIG SET maxmemory-policy noeviction (or your provider's parameter group): with eviction, Redis may "
        "forget a used confirmation.",
        warning=warning,
    )


def check_policy(settings: Settings) -> Result:
    if not settings.bot_allowed_users:
        return Result(
            "Allow-list",
            False,
            "BOT_ALLOWED_USERS is empty: nobody can reboot",
            "List the on-call engineers' Slack user IDs (or a user group S...) in BOT_ALLOWED_USERS.",
            warning=True,
        )
    channels = ", ".join(settings.bot_allowed_channels) or "any channel"
    return Result("Allow-list", True, f"{len(settings.bot_allowed_users)} user(s) or group(s); channels: {channels}")


CHECKS: list[Callable[[Settings], Result | list[Result] | None]] = [
    check_slack_mode,
    check_slack,
    check_iam,
    check_metadata,
    check_dbss,
    check_state,
    check_redis,
    check_postgres,
    check_size,
    check_policy,
]


def _as_list(result: Result | list[Result] | None) -> list[Result]:
    return [] if result is None else result if isinstance(result, list) else [result]


def run(settings: Settings, out: TextIO) -> int:
    """Print one line per check, with a fix under each failure; 1 if anything failed, else 0."""
    failed = False
    out.write(f"Configuration: OK (DBSS credentials: {credential_description(settings)})\n")
    results = [r for check in CHECKS for r in _as_list(check(settings))]
    for result in results:
        mark = "OK  " if result.ok else ("WARN" if result.warning else "FAIL")
        out.write(f"{result.name}: {mark} {result.detail}\n")
        if not result.ok:
            out.write(f"    fix: {result.fix}\n")
            failed = failed or not result.warning
    out.write("All checks passed.\n" if not failed else "Some checks failed; see the fixes above.\n")
    return 1 if failed else 0
