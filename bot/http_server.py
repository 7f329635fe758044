"""The production HTTP server: gunicorn, one worker process with a few request threads."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

from bot import logs

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

# Request threads only acknowledge (slow work goes to the bot's own pool), so a few suffice; more only add
# contenders for the one interpreter lock and lengthen the tail of ack latency (docs/benchmarks.md). Under the
# storm, interleaved runs gave p99/p50 about 3.0 with 4 threads, 2.5 with 3, 2.3 with 2; 2 also raised the p50
# (less overlap of socket waits) and left every request waiting whenever two clients stall. 3 keeps a spare.
THREADS = 3
# How long a thread may run Python before one that waits for the interpreter lock gets it (CPython: 5 ms). A
# request thread back from a socket call waits that long whenever a background thread is busy in Python (the
# instance list's parsing, a follow-up tick, the deliverer, a collection); in a storm most gaps with no ack sent
# were 4-6 ms long. 1 ms bounds each wait. Measured gain: about 1 ms of p99, in three interleaved comparisons.
SWITCH_INTERVAL_SECONDS = 0.001
BACKLOG = 2048  # far above socketserver's 5, which drops connections under a burst of senders
# Options GUNICORN_CMD_ARGS may not change: one worker process owns the state, the pool and the follow-ups
# (more replicas share state through REDIS_URL instead); its request threads only acknowledge; the app is built
# in the worker, after the fork, with its threads. A config file (-c) could replace the bot's hooks: not read.
FIXED = {
    "workers": "one worker process owns the bot's state and follow-ups; for more, run replicas with REDIS_URL",
    "worker_class": "the bot's request threads (gthread) only acknowledge; the slow work runs on its own pool",
    "preload_app": "the bot must be built in the worker, after the fork, with its threads",
    "config": "a config file could replace the bot's server hooks; give the options themselves instead",
}

log = logging.getLogger(__name__)


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
    accepting, lets requests in hand finish, then calls `on_exit` in the worker. GUNICORN_CMD_ARGS is
    honoured as gunicorn honours it (access log, forwarded_allow_ips, timeouts, TLS...), except for FIXED.
    """

    def post_worker_init(worker: Any) -> None:
        prepare_worker()

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
            # gunicorn's own Application reads GUNICORN_CMD_ARGS in its load_config; BaseApplication does not.
            parser = self.cfg.parser()
            parser.prog = "GUNICORN_CMD_ARGS"  # argparse's errors then name the variable
            for key, value in vars(parser.parse_args(self.cfg.get_cmd_args_from_env())).items():
                if value is None or key == "args":
                    continue
                if key in FIXED:
                    log.warning("GUNICORN_CMD_ARGS: %s is ignored: %s", key, FIXED[key])
                    continue
                self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            return load()

    Server().run()


def prepare_worker() -> None:
    """In the worker, once the app is built and before the first request: set the process up for acks."""
    settle_heap()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    # gunicorn's master passes SIGUSR1 on to its worker (it reopens log files, which the bot has none of).
    logs.dump_stacks_on_signal()


def settle_heap() -> None:
    """Once the app is built: move every object alive now (modules, classes, the app) out of the collector's
    reach. A full collection would otherwise walk them all, some tens of milliseconds with the interpreter
    lock held, and every request in flight would wait that long (benchmarked in docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
