"""Authenticating to DBSS, as httpx Auth classes: token, IAM password login, AK/SK signing (see also metadata.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from bot.dbss import signing
from bot.dbss.client import CallObserver, call_result
from bot.dbss.errors import DbssApiError, DbssNotSent, IamLoginError
from bot.dbss.responses import api_error

# Gateway answers that mean "this token is no longer good": the request was rejected before DBSS saw it.
TOKEN_REJECTED_CODES = frozenset({"0301", "0307"})
Clock = Callable[[], float]


class TokenAuth(httpx.Auth):
    """A ready IAM token sent as X-Auth-Token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(token=<hidden>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request


class IamPasswordAuth(httpx.Auth):
    """Project-scoped IAM password login; one cached token shared by all threads, renewed before expiry.

    When the gateway rejects the token (401 APIGW.0301 or APIGW.0307) the request never reached DBSS, so
    the flow logs in again once and resends it.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        iam_client: httpx.Client,
        domain: str,
        user: str,
        password: str,
        project_id: str,
        renew_before_seconds: float = 600.0,
        clock: Clock = time.time,
        observe: CallObserver | None = None,
    ) -> None:
        self._iam = iam_client
        self._observe = observe
        self._domain = domain
        self._user = user
        self._password = password
        self._project_id = project_id
        self._renew_before = renew_before_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.logins = 0

    def __repr__(self) -> str:
        return f"IamPasswordAuth(domain={self._domain!r}, user={self._user!r}, password=<hidden>)"

    def close(self) -> None:
        self._iam.close()

    def token(self, *, rejected: str | None = None) -> str:
        """The cached token, logging in first if there is none, it is near expiry, or it was rejected."""
        with self._lock:
            fresh = self._token is not None and self._clock() < self._expires_at - self._renew_before
            if fresh and self._token != rejected:
                assert self._token is not None
                return self._token
            self._token, self._expires_at = self._login()
            self.logins += 1
            return self._token

    def _login(self) -> tuple[str, float]:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"domain": {"name": self._domain}, "name": self._user, "password": self._password}
                    },
                },
                "scope": {"project": {"id": self._project_id}},
            }
        }
        started = time.perf_counter()
        try:
            response = self._iam.post(
                "/v3/auth/tokens",
                params={"nocatalog": "true"},
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json;charset=utf8"},
            )
        except httpx.HTTPError as err:
            self._observed("not_sent" if isinstance(err, httpx.ConnectError) else "transport_error", started)
            raise DbssNotSent(f"IAM login failed ({type(err).__name__}); the DBSS request was not sent") from err
        self._observed(call_result(response.status_code), started)
        if response.status_code != 201 or not response.headers.get("X-Subject-Token"):
            raise api_error(response, error_class=IamLoginError)
        token = response.headers["X-Subject-Token"]
        return token, _expiry(response, default=self._clock() + 3600)

    def _observed(self, result: str, started: float) -> None:
        if self._observe is not None:
            self._observe("iam_login", result, time.perf_counter() - started)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["X-Auth-Token"] = token
        response = yield request
        if response.status_code == 401:
            error = api_error(response, error_class=DbssApiError)
            if error.gateway_code in TOKEN_REJECTED_CODES:
                request.headers["X-Auth-Token"] = self.token(rejected=token)
                yield request


def _expiry(response: httpx.Response, *, default: float) -> float:
    try:
        text = response.json()["token"]["expires_at"]
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except (ValueError, KeyError, TypeError):
        return default
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AK/SK pair; a temporary one comes with its security token and expiry (epoch seconds)."""

    access: str
    secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None


# The headers signed besides Host: the ones that reach the gateway as we set them (not Connection,
# Accept-Encoding...). huaweicloudsdkcore adds X-Project-Id and X-Security-Token before signing, so both are signed.
SIGNED_HEADERS = ("Content-Type", "X-Sdk-Date", "X-Project-Id", "X-Security-Token", "X-Sdk-Content-Sha256")


def sign(request: httpx.Request, key: AccessKey, *, project_id: str | None, now: datetime) -> None:
    """Set X-Sdk-Date, X-Project-Id, X-Security-Token and Authorization on the request, as the official signer does."""
    request.headers["X-Sdk-Date"] = now.strftime(signing.DATE_FORMAT)
    if project_id:
        request.headers["X-Project-Id"] = project_id
    if key.security_token is not None:
        request.headers["X-Security-Token"] = key.security_token
    else:
        request.headers.pop("X-Security-Token", None)
    content_type = request.headers.get("Content-Type")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        request.headers["X-Sdk-Content-Sha256"] = signing.UNSIGNED_PAYLOAD
    to_sign = {"Host": request.headers["Host"]}
    for name in SIGNED_HEADERS:
        if name in request.headers:
            to_sign[name] = request.headers[name]
    request.headers["Authorization"] = signing.authorization(
        access_key=key.access,
        secret_key=key.secret,
        method=request.method,
        path=request.url.raw_path.split(b"?", 1)[0].decode("ascii"),
        query=request.url.query.decode("ascii"),
        headers=to_sign,
        body=request.content,
    )


class AkSkAuth(httpx.Auth):
    """SDK-HMAC-SHA256 signing with an access key and secret key, and a security token for temporary keys."""

    requires_request_body = True

    def __init__(
        self,
        *,
        access_key: str,
        secret_key: str,
        security_token: str | None = None,
        project_id: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._key = AccessKey(access_key, secret_key, security_token)
        self._project_id = project_id
        self._now = now

    def __repr__(self) -> str:
        token = ", security_token=<hidden>" if self._key.security_token is not None else ""
        return f"AkSkAuth(access_key={self._key.access!r}, secret_key=<hidden>{token})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sign(request, self._key, project_id=self._project_id, now=self._now())
        yield request
