"""The DBSS client: reboot an audit instance and read the instance list, over httpx."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from bot.dbss.errors import DbssApiError, DbssError, DbssNotSent, DbssOutcomeUnknown, RebootFailed
from bot.dbss.models import Instance, is_instance_id, parse_instance
from bot.dbss.responses import api_error

log = logging.getLogger(__name__)

REBOOT_PATHS = {
    "current": "/v1/{project_id}/audit/instance/reboot",
    # Marked "to be taken offline" by Huawei; kept for clouds that still serve only this path.
    "deprecated": "/v1/{project_id}/dbss/audit/instance/reboot",
}
LIST_PATH = "/v2/{project_id}/audit/instances"
PAGE_LIMIT = 1000
MAX_PAGES = 100  # 100,000 instances: far beyond any project, and a guard against a server that pages forever

# Told of every call: operation (list, reboot, iam_login, metadata), result (see call_result), seconds.
CallObserver = Callable[[str, str, float], None]


def call_result(status_code: int) -> str:
    """A call's result as metrics name it: ok, http_4xx or http_5xx (the other results are not_sent, timeout,
    transport_error and error)."""
    return "ok" if status_code < 400 else f"http_{min(status_code // 100, 5)}xx"


@dataclass(frozen=True, slots=True)
class RebootAccepted:
    """DBSS accepted the reboot; it runs asynchronously and has no job ID."""

    instance_id: str
    request_id: str | None


class DbssClient:
    """Calls DBSS for one project. Never retries a reboot: a reboot is not idempotent."""

    def __init__(
        self,
        *,
        base_url: str,
        project_id: str,
        auth: httpx.Auth,
        timeout_seconds: float,
        reboot_path: Literal["current", "deprecated"] = "current",
        transport: httpx.BaseTransport | None = None,
        observe: CallObserver | None = None,
        target: str | None = None,
        where: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.project_id = project_id
        self.target = target  # region:project_id, tagged on every instance this client lists
        self.where = where  # and the target's label
        self._auth = auth
        self._observe = observe
        self._reboot_path = REBOOT_PATHS[reboot_path].format(project_id=project_id)
        self._list_path = LIST_PATH.format(project_id=project_id)
        # Retry policy: none. httpx never re-sends a request (a transport's `retries`, 0 by default, would only
        # repeat a connection attempt), and a reboot is not idempotent: a timeout after sending is
        # DbssOutcomeUnknown, told as such, never sent again (tests/dbss/test_retry_policy.py).
        self._http = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout_seconds),
            transport=transport,
            headers={"Content-Type": "application/json", "User-Agent": "dbss-reboot-bot", **(headers or {})},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"DbssClient(base_url={str(self._http.base_url)!r}, project_id={self.project_id!r})"

    def close(self) -> None:
        self._http.close()
        close_auth = getattr(self._auth, "close", None)  # IamPasswordAuth owns an IAM connection pool
        if callable(close_auth):
            close_auth()

    def __enter__(self) -> DbssClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, operation: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport failures become DbssNotSent or DbssOutcomeUnknown, translated here only."""
        started = time.perf_counter()
        result = "error"
        try:
            response = self._http.request(method, path, **kwargs)
            result = call_result(response.status_code)
            return response
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as err:
            result = "not_sent"
            raise DbssNotSent(f"could not connect to DBSS ({type(err).__name__}); the request was not sent") from err
        except httpx.TimeoutException as err:
            result = "timeout"
            raise DbssOutcomeUnknown(f"DBSS did not answer in time ({type(err).__name__})") from err
        except httpx.TransportError as err:
            result = "transport_error"
            raise DbssOutcomeUnknown(f"the connection to DBSS failed mid-request ({type(err).__name__})") from err
        except DbssNotSent:  # from the Auth: no IAM token or temporary key, so nothing was sent
            result = "not_sent"
            raise
        finally:
            if self._observe is not None:
                self._observe(operation, result, time.perf_counter() - started)

    def reboot(self, instance_id: str) -> RebootAccepted:
        """Ask DBSS to reboot one audit instance. Raises a DbssError subclass on anything but success."""
        if not is_instance_id(instance_id):
            raise ValueError("instance ID must be 32 to 64 letters, digits or '-'")
        body = json.dumps({"instance_id": instance_id}).encode()
        response = self._send(
            "reboot",
            "POST",
            self._reboot_path,
            content=body,
            headers={"Content-Type": "application/json;charset=UTF-8"},
        )
        request_id = response.headers.get("X-Request-Id")
        if response.status_code >= 400:
            raise api_error(response, error_class=DbssApiError)
        try:
            result = response.json().get("result")
        except (ValueError, AttributeError) as err:
            raise DbssOutcomeUnknown(
                f"DBSS answered HTTP {response.status_code} with an unreadable body (request id {request_id})"
            ) from err
        if result == "success":
            return RebootAccepted(instance_id=instance_id, request_id=request_id)
        if result == "failed":
            raise RebootFailed(
                status_code=response.status_code,
                error_code=None,
                error_msg='DBSS answered "result": "failed"',
                request_id=request_id,
            )
        raise DbssOutcomeUnknown(
            f"DBSS answered HTTP {response.status_code} with result {result!r} (request id {request_id})"
        )

    def list_instances(self) -> list[Instance]:
        """Every audit instance of the project, reading all pages."""
        instances: list[Instance] = []
        offset = 0
        for _ in range(MAX_PAGES):
            response = self._send(
                "list", "GET", self._list_path, params={"offset": str(offset), "limit": str(PAGE_LIMIT)}
            )
            if response.status_code >= 400:
                raise api_error(response, error_class=DbssApiError)
            try:
                body = response.json()
            except ValueError as err:
                raise DbssError("DBSS answered the instance list with a body that is not JSON") from err
            page = body.get("instances", body.get("servers")) if isinstance(body, dict) else None
            if not isinstance(page, list):  # an answer without the list is no evidence that instances are gone
                shape = sorted(body)[:10] if isinstance(body, dict) else type(body).__name__
                raise DbssError(f"DBSS answered the instance list without an instance list ({shape})")
            tags = {"target": self.target, "where": self.where}
            instances.extend(i for raw in page if isinstance(raw, dict) and (i := parse_instance(raw, **tags)))
            total = body.get("total") if isinstance(body, dict) else None
            offset += len(page)
            if not page or len(page) < PAGE_LIMIT or (isinstance(total, int) and offset >= total):
                return instances
        log.warning("instance list stopped after %d pages", MAX_PAGES)
        return instances

    def find_instance(self, instance_id: str) -> Instance | None:
        """The instance with this ID, or None. There is no get-one API, so this reads the list."""
        return next((i for i in self.list_instances() if i.id == instance_id), None)
