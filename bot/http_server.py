"""The production HTTP server: gunicorn, one worker process with a few request threads."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

# Request threads only acknowledge (slow work goes to the bot's own pool), so a few suffice; more only add
# contenders for the one interpreter lock and lengthen the tail of ack latency (docs/benchmarks.md).
THREADS = 4
BACKLOG = 2048  # far above socketserver's 5, which drops connections under a burst of senders


def serve(
    load: Callable[[], WSGIApplication],
    *,
    port: int,
    graceful_timeout: int = 30,
    on_exit: Callable[[], None] | None = None,
    threads: int = THREADS,
    log_level: str = "info",
) -> None:
    """Serve the WSGI app that `load` builds, in the worker (after the fork), on 0.0.0.0:port.

    One worker: the bot's state, worker pool and follow-ups live in one process. On SIGTERM gunicorn stops
    accepting, lets requests in hand finish, then calls `on_exit` in the worker.
    """

    def post_worker_init(worker: Any) -> None:
        settle_heap()

    def worker_exit(server: Any, worker: Any) -> None:
        if on_exit is not None:
            on_exit()

    class Server(BaseApplication):  # type: ignore[misc]  # gunicorn's base class is untyped
        def load_config(self) -> None:
            options: dict[str, Any] = {
                "bind": f"0.0.0.0:{port}",
                "workers": 1,
                "worker_class": "gthread",
                "threads": threads,
                "backlog": BACKLOG,
                "timeout": 30,
                "graceful_timeout": graceful_timeout,
                "keepalive": 75,
                "accesslog": None,
                "loglevel": log_level,
                "post_worker_init": post_worker_init,
                "worker_exit": worker_exit,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            return load()

    Server().run()


def settle_heap() -> None:
    """Once the app is built: move every object alive now (modules, classes, the app) out of the collector's
    reach. A full collection would otherwise walk them all, some tens of milliseconds with the interpreter
    lock held, and every request in flight would wait that long (benchmarked in docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
