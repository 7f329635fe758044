"""The production HTTP server: gunicorn, one worker process with many threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

THREADS = 32
BACKLOG = 2048  # far above socketserver's 5, which drops connections under a burst of senders


def serve(
    load: Callable[[], WSGIApplication],
    *,
    port: int,
    graceful_timeout: int = 30,
    on_exit: Callable[[], None] | None = None,
) -> None:
    """Serve the WSGI app that `load` builds, in the worker (after the fork), on 0.0.0.0:port.

    One worker: the bot's state, worker pool and follow-ups live in one process. On SIGTERM gunicorn stops
    accepting, lets requests in hand finish, then calls `on_exit` in the worker.
    """

    def worker_exit(server: Any, worker: Any) -> None:
        if on_exit is not None:
            on_exit()

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn's base class is untyped
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"0.0.0.0:{port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": THREADS,
                "backlog": BACKLOG,
                "timeout": 30,
                "graceful_timeout": graceful_timeout,
                "keepalive": 75,
                "accesslog": None,
                "worker_exit": worker_exit,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            return load()

    Server().run()
