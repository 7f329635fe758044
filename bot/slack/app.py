"""Building the Bolt app, and the WSGI application that serves it over HTTP with health checks and metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.health import PATHS as OPS_PATHS
from bot.health import ops_app
from bot.metrics import Metrics
from bot.slack import guard
from bot.slack.listeners import Deps, register
from bot.slack.metering import AckMetrics

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def build_app(*, client: WebClient, signing_secret: str | None, deps: Deps, metrics: Metrics | None = None) -> App:
    """The Bolt app. Listeners only acknowledge and hand slow work to `deps.acks_first` (which holds it while
    requests are being acknowledged, then runs it on the work pool) or `deps.urgent`, so acks never wait on DBSS.

    process_before_response=True runs the (fast) listener on the request thread and answers when it returns,
    instead of Bolt's default of polling every 10 ms for ack() from its own five-thread executor.

    `metrics`: acknowledgement time and commands are measured by the first of the bot's middleware.
    """
    app = App(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        request_verification_enabled=signing_secret is not None,
        # The bot takes commands and interactivity only: no Events API, so no middleware for events.
        ignoring_self_events_enabled=False,
        url_verification_enabled=False,
        attaching_function_token_enabled=False,
    )
    if metrics is not None:
        app.use(AckMetrics(metrics))
    register(app, deps)
    return app


def wsgi_app(
    app: App, *, signing_secret: str, path: str = "/slack/events", ops: WSGIApplication | None = None
) -> WSGIApplication:
    """Slack's commands and interactivity at POST `path`, through the guard (bot/slack/guard.py: signed, fresh,
    small and well-formed only); GET or HEAD /healthz, /readyz and /metrics go to `ops` (bot/health.py; without
    it, /healthz alone, always 200)."""
    slack = guard.guarded(SlackRequestHandler(app, path=path), signing_secret=signing_secret, path=path)
    health = ops or ops_app(None, None)

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in OPS_PATHS and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            return health(environ, start_response)
        return slack(environ, start_response)

    return application
