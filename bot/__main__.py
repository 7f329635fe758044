"""`python -m bot [http|socket]`: read Settings, set up logging, build the bot and run it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from bot import logs
from bot.config import ConfigError, Settings, load_settings
from bot.wiring import Bot, build, require_slack

log = logging.getLogger("bot")


def serve_http(settings: Settings) -> None:
    """HTTP mode under gunicorn. On SIGTERM, after the requests in hand, the bot is closed: it waits for
    in-flight DBSS calls (bounded by DBSS_TIMEOUT_SECONDS) and leaves unfinished follow-ups in the store."""
    from bot.http_server import serve
    from bot.slack.app import wsgi_app

    running: list[Bot] = []

    def load() -> Any:
        bot = build(settings)
        running.append(bot)
        return wsgi_app(bot.app)

    def close() -> None:
        for bot in running:
            bot.close(wait=True)

    serve(load, port=settings.port, graceful_timeout=int(settings.dbss_timeout_seconds) + 15, on_exit=close)


def serve_socket_mode(settings: Settings) -> None:
    """Socket Mode until SIGTERM or SIGINT; then stop taking commands and finish the work in hand."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    bot = build(settings)
    handler = SocketModeHandler(bot.app, app_token=settings.slack_app_token.get_secret_value())
    handler.connect()  # type: ignore[no-untyped-call]
    log.info("connected in Socket Mode")
    stop.wait()
    log.info("stopping: no new commands; finishing the work in hand")
    handler.close()  # type: ignore[no-untyped-call]
    bot.close(wait=True)
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Reboot DBSS audit instances from Slack.")
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["http", "socket"],
        help="default: Socket Mode when SLACK_APP_TOKEN is set, HTTP mode otherwise",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_format)
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
