"""`python -m bot [http|socket]`: read Settings, set up logging, build the bot and run it."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from bot.config import ConfigError, Settings, load_settings
from bot.wiring import build, require_slack

log = logging.getLogger("bot")


def serve_http(settings: Settings) -> None:
    """HTTP mode under gunicorn: one worker process (state and follow-ups live in it), many threads."""
    from gunicorn.app.base import BaseApplication

    from bot.slack.app import wsgi_app

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn's base class is untyped
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"0.0.0.0:{settings.port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": 32,
                "backlog": 2048,
                "timeout": 30,
                "graceful_timeout": 25,
                "accesslog": None,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Built in the worker, after the fork: threads, sockets and SQLite belong to the serving process.
            return wsgi_app(build(settings).app)

    Server().run()


def serve_socket_mode(settings: Settings) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    assert settings.slack_app_token is not None
    bot = build(settings)
    handler = SocketModeHandler(bot.app, app_token=settings.slack_app_token.get_secret_value())
    handler.start()  # type: ignore[no-untyped-call]  # blocks until the process is stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Reboot DBSS audit instances from Slack.")
    parser.add_argument(
        "mode",
        nargs="?",
        choices=["http", "socket"],
        help="default: Socket Mode when SLACK_APP_TOKEN is set, HTTP mode otherwise",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
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
