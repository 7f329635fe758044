"""`python -m bot [http|socket]`: read Settings, set up logging, build the bot and run it."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import pwd
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from bot import logs
from bot.config import ConfigError, Settings, load_settings, require_slack

if TYPE_CHECKING:
    from bot.core.confirmation import Confirmation, ConfirmationSigner
    from bot.wiring import Bot

log = logging.getLogger("bot")


def serve_http(settings: Settings) -> None:
    """HTTP mode under gunicorn. On SIGTERM, after the requests in hand, the bot is closed: it waits for
    in-flight DBSS calls (bounded by DBSS_TIMEOUT_SECONDS) and leaves unfinished follow-ups in the store."""
    from bot.http_server import serve

    running: list[Bot] = []

    # Heavy imports happen in the worker (in load), so gunicorn's master process stays small.

    def load() -> Any:
        from bot.slack.app import wsgi_app
        from bot.wiring import build

        bot = build(settings)
        running.append(bot)
        assert settings.slack_signing_secret is not None  # require_slack checked it for HTTP mode
        return wsgi_app(bot.app, signing_secret=settings.slack_signing_secret.get_secret_value(), ops=bot.ops())

    def close() -> None:
        for bot in running:
            bot.close(wait=True)

    serve(
        load,
        port=settings.port,
        graceful_timeout=int(settings.dbss_timeout_seconds) + 15,
        on_exit=close,
        log_level=settings.log_level.lower(),
    )


def serve_socket_mode(settings: Settings) -> None:
    """Socket Mode until SIGTERM or SIGINT; then stop taking commands and finish the work in hand.

    /healthz, /readyz and /metrics are served on BOT_HEALTH_PORT from before the first connection (readiness
    fails until it is made) until the work in hand is done."""
    from slack_sdk.errors import SlackApiError
    from websockets.exceptions import WebSocketException

    from bot.health import OpsServer
    from bot.http_server import settle_heap
    from bot.slack.socket_mode import SocketMode
    from bot.wiring import build

    assert settings.slack_app_token is not None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logs.dump_stacks_on_signal()
    bot = build(settings)
    settle_heap()
    socket = SocketMode(bot.app, app_token=settings.slack_app_token.get_secret_value())
    bot.readiness.socket_connected = socket.connected
    try:
        ops = OpsServer(bot.ops(), port=settings.bot_health_port)
    except OSError as err:
        log.error(
            "cannot serve /healthz, /readyz and /metrics: check BOT_HEALTH_PORT",
            extra={"port": settings.bot_health_port, "error": f"{type(err).__name__}: {err}"},
        )
        bot.close(wait=True)
        raise SystemExit(1) from None
    ops.start()
    try:
        socket.connect()
    except (SlackApiError, OSError, WebSocketException) as err:
        if isinstance(err, SlackApiError):  # invalid_auth, not_allowed_token_type...
            log.error(
                "Slack refused a Socket Mode connection: check SLACK_APP_TOKEN (xapp-, scope connections:write)",
                extra={"error": err.response.get("error")},
            )
        else:
            log.error("could not open a Socket Mode connection", extra={"error": f"{type(err).__name__}: {err}"})
        socket.close()
        ops.stop()
        bot.close(wait=True)
        raise SystemExit(1) from None
    log.info("connected in Socket Mode", extra={"health_port": ops.port})
    stop.wait()
    log.info("stopping: no new commands; finishing the work in hand")
    socket.close()
    bot.close(wait=True)
    ops.stop()
    log.info("stopped")


def run_demo(*, reboot_seconds: float, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """The terminal demo against the built-in simulator: no Slack workspace, no cloud account."""
    from bot.config import Target
    from bot.console import Console
    from bot.core.confirmation import ConfirmationSigner
    from bot.core.fleet import Fleet
    from bot.core.policy import AccessPolicy
    from bot.core.reboots import RebootService
    from bot.core.store import StateStore
    from bot.dbss import AkSkAuth, DbssClient
    from bot.simulator import (
        DEMO_AK,
        DEMO_PROJECT_ID,
        DEMO_SK,
        DEMO_TOKEN,
        DbssSimulator,
        demo_second_region,
        with_demo_instances,
    )

    # Two regions, each its own endpoint and project, as DBSS_TARGETS would configure them; one AK/SK signs for both.
    north = with_demo_instances(
        DbssSimulator(
            project_id=DEMO_PROJECT_ID,
            tokens=(DEMO_TOKEN,),
            aksk={DEMO_AK: DEMO_SK},
            reboot_seconds=reboot_seconds,
        )
    )
    south = demo_second_region(north.cloud, reboot_seconds=reboot_seconds)
    targets = [Target("cn-north-4", DEMO_PROJECT_ID, ""), Target("ap-southeast-1", south.project_id, "")]
    for simulator in (north, south):
        simulator.record = False
        simulator.delays.update({"list": 0.2, "reboot": 0.4})  # roughly what a real region answers in
        simulator.start()
    targets = [Target(t.region, t.project_id, s.url) for t, s in zip(targets, (north, south), strict=True)]
    user = getpass.getuser() or "you"
    out.write(
        "DBSS reboot bot, demo: built-in DBSS simulators for two regions, "
        + " and ".join(f"{t.region} at {t.endpoint} (project {t.project_id})" for t in targets)
        + ".\n"
    )
    store = StateStore(":memory:")
    fleet = Fleet(
        [
            (
                t,
                DbssClient(
                    base_url=t.endpoint,
                    project_id=t.project_id,
                    auth=AkSkAuth(access_key=DEMO_AK, secret_key=DEMO_SK, project_id=t.project_id),
                    timeout_seconds=10,
                    target=t.key,
                    where=t.label,
                ),
            )
            for t in targets
        ]
    )
    try:
        service = RebootService(
            dbss=fleet,
            project_id=", ".join(t.label for t in targets),
            store=store,
            policy=AccessPolicy(frozenset({user}), frozenset()),
            signer=ConfirmationSigner(store.confirmation_key()),
            confirm_ttl_seconds=300,
            followup_timeout_seconds=120,
        )
        return Console(service=service, user=user, poll_interval=1.0, inp=inp, out=out).run()
    finally:
        fleet.close()
        store.close()
        north.stop()
        south.stop()


def console_user() -> str:
    """The console's user in the audit trail: the operating-system account, from the process's user ID (not from
    $USER or $LOGNAME, which anyone can set: a second approver must be another account)."""
    from bot.core.reboots import CONSOLE_CHANNEL

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid{uid}"
    return f"{CONSOLE_CHANNEL}:{name}"


def run_console(
    settings: Settings,
    *,
    approve: str | None = None,
    user: str | None = None,
    inp: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    """Break-glass: the same conversation against the configured DBSS, on the bot's own state store (so with
    REDIS_URL, its shared locks, cooldowns and used confirmations), recorded in the same audit trail.

    `approve`: the second operator's side of a break-glass approval (BOT_REQUIRE_SECOND_APPROVER)."""
    from bot.console import Console
    from bot.core.confirmation import ConfirmationSigner
    from bot.core.policy import AccessPolicy
    from bot.core.reboots import CONSOLE_CHANNEL, RebootService
    from bot.core.stores import open_store
    from bot.dbss import build_fleet

    user = user or console_user()
    where = ", ".join(f"{t.label} (project {t.project_id} at {t.endpoint})" for t in settings.targets)
    out.write(f"Break-glass console for {where}, as {user}.\n")
    store = open_store(settings)
    try:
        signer = ConfirmationSigner.from_secrets(settings.confirmation_secrets, store.confirmation_key)
        # Whoever holds the credentials is at the keyboard; when approving, so was the console user who asked.
        users = {user}
        if approve is not None:
            asked = _verified(signer, approve)
            if asked is not None and asked.requester.startswith(f"{CONSOLE_CHANNEL}:"):
                users.add(asked.requester)
        fleet = build_fleet(settings)
        try:
            service = RebootService(
                dbss=fleet,
                project_id=settings.dbss_project,
                store=store,
                policy=AccessPolicy(frozenset(users), frozenset()),
                signer=signer,
                confirm_ttl_seconds=settings.bot_confirm_ttl_seconds,
                followup_timeout_seconds=settings.bot_poll_timeout_seconds,
                cooldown_seconds=settings.bot_cooldown_seconds,
                require_second_approver=settings.bot_require_second_approver,
            )
            console = Console(
                service=service, user=user, poll_interval=settings.bot_poll_interval_seconds, inp=inp, out=out
            )
            return console.approve(approve) if approve is not None else console.run()
        finally:
            fleet.close()
    finally:
        store.close()


def _verified(signer: ConfirmationSigner, token: str) -> Confirmation | None:
    from bot.core.confirmation import InvalidToken

    try:
        return signer.verify(token)
    except InvalidToken:
        return None


def run_simulator(*, host: str, port: int, reboot_seconds: float, ak: str | None, sk: str | None) -> int:
    """The DBSS + IAM simulator on its own, for trying a Slack-connected bot without a cloud account."""
    from bot.simulator import DEMO_PROJECT_ID, DEMO_TOKEN, DbssSimulator, with_demo_instances

    simulator = with_demo_instances(
        DbssSimulator(
            project_id=DEMO_PROJECT_ID,
            tokens=(DEMO_TOKEN,),
            aksk={ak: sk} if ak and sk else None,
            reboot_seconds=reboot_seconds,
        )
    )
    simulator.record = False
    simulator.start(host=host, port=port)
    print("DBSS simulator listening. Point the bot at it with:", flush=True)
    print(f"  DBSS_ENDPOINT={simulator.url} DBSS_PROJECT_ID={DEMO_PROJECT_ID} DBSS_AUTH_TOKEN={DEMO_TOKEN}", flush=True)
    if ak and sk:
        print(f"  or, signed: DBSS_AK={ak} DBSS_SK=<the --sk you gave> instead of DBSS_AUTH_TOKEN", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    simulator.stop()
    return 0


def run_audit(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The audit export: only the state settings are read, so it runs without Slack or DBSS credentials."""
    import io

    from bot import audit
    from bot.config import load_state_settings
    from bot.dbss.models import INSTANCE_ID_RE

    try:
        since = audit.parse_since(args.since) if args.since is not None else None
    except ValueError as err:
        parser.error(str(err))
    if args.instance is not None and not INSTANCE_ID_RE.fullmatch(args.instance):
        parser.error(f"--instance: {args.instance!r} is not a DBSS instance ID (32 to 64 letters, digits or '-')")
    try:
        settings = load_state_settings()
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    logs.configure("text", logging.WARNING)  # stdout is the export; warnings go to stderr
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(encoding="utf-8")  # an export is UTF-8 whatever the locale
    fmt: audit.Format = "csv" if args.format == "csv" else "jsonl"
    return audit.run(settings, sys.stdout, sys.stderr, since=since, instance_id=args.instance, fmt=fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Reboot DBSS audit instances from Slack.")
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["http", "socket", "demo", "console", "check", "simulator", "audit"],
        help="http or socket: run the bot (default: Socket Mode when SLACK_APP_TOKEN is set, else HTTP); "
        "demo: a terminal demo on a built-in DBSS simulator; console: the same against the configured DBSS "
        "(break-glass); check: validate the configuration and reach Slack, IAM and DBSS; simulator: run the "
        "DBSS simulator alone; audit: export the audit trail to stdout (needs only BOT_STATE_PATH or REDIS_URL)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="simulator: address to listen on")
    parser.add_argument("--port", type=int, default=0, help="simulator: port to listen on (0: any free port)")
    parser.add_argument("--reboot-seconds", type=float, default=8.0, help="demo, simulator: how long a reboot takes")
    parser.add_argument("--ak", help="simulator: also accept requests signed with this access key...")
    parser.add_argument("--sk", help="simulator: ...and this secret key")
    parser.add_argument(
        "--approve",
        metavar="CODE",
        help="console: approve, as a second operator (another OS user), the reboot whose one-time code a console "
        "printed when BOT_REQUIRE_SECOND_APPROVER is true",
    )
    parser.add_argument("--since", help="audit: entries from this ISO date or date-time on (UTC unless it says)")
    parser.add_argument("--instance", help="audit: only the entries of this instance ID")
    parser.add_argument(
        "--format", choices=["jsonl", "csv"], metavar="jsonl|csv", help="audit: JSON Lines (default) or CSV"
    )
    args = parser.parse_args(argv)
    if args.approve is not None and args.mode != "console":
        parser.error("--approve is an option of console")
    if args.mode == "audit":
        return run_audit(parser, args)
    audit_options = [f"--{name}" for name in ("since", "instance", "format") if getattr(args, name) is not None]
    if audit_options:
        parser.error(f"{', '.join(audit_options)}: only for `audit`")
    if args.mode == "demo":
        return run_demo(reboot_seconds=args.reboot_seconds)
    if args.mode == "simulator":
        return run_simulator(host=args.host, port=args.port, reboot_seconds=args.reboot_seconds, ak=args.ak, sk=args.sk)
    try:
        settings = load_settings()
        level = logging.getLevelNamesMapping()[settings.log_level]
        logs.configure(
            settings.log_format if args.mode in ("http", "socket", None) else "text",
            max(level, logging.WARNING) if args.mode in ("check", "console") else level,  # a person reads these
        )
        if args.mode == "check":
            from bot import check

            return check.run(settings, sys.stdout)
        if args.mode == "console":
            return run_console(settings, approve=args.approve)
        http = args.mode == "http" or (args.mode is None and not settings.socket_mode)
        require_slack(settings, http=http)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    if http:
        serve_http(settings)
    else:
        serve_socket_mode(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
