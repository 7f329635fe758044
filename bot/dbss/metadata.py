"""Temporary credentials of the server's agency, from the ECS/CCE metadata service, as huaweicloudsdkcore gets them.

The bot asks `{DBSS_METADATA_ENDPOINT}/openstack/latest/securitykey` for a temporary AK/SK and security token
(huaweicloudsdkcore's MetadataAccessor), with a metadata session token when the platform offers one
(`PUT /meta-data/latest/api/token`). One set is shared by every thread and fetched again 40 minutes before it
expires, the SDK's margin.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.dbss.auth import TOKEN_REJECTED_CODES, AccessKey, Clock, sign
from bot.dbss.client import CallObserver
from bot.dbss.errors import CredentialsUnavailable, DbssApiError
from bot.dbss.responses import api_error

log = logging.getLogger(__name__)

SECURITY_KEY_PATH = "/openstack/latest/securitykey"
SESSION_PATH = "/meta-data/latest/api/token"
SESSION_HEADER = "X-Metadata-Token"
SESSION_TTL_HEADER = "X-Metadata-Token-Ttl-Seconds"
SESSION_TTL_SECONDS = 6 * 3600  # what huaweicloudsdkcore asks for
SESSION_RECHECK_SECONDS = 24 * 3600  # a platform without session tokens is asked again after a day, as the SDK does
NO_AGENCY_TEXT = "Please configure Cloud Service Agency first"
TIMEOUT_SECONDS = 3.0  # huaweicloudsdkcore's (3, 3): the service is on the host, it answers at once or not at all
REFRESH_BEFORE_SECONDS = 40 * 60  # huaweicloudsdkcore's Credentials._DEFAULT_EXPIRATION_THRESHOLD_SECONDS
RETRY_AFTER_SECONDS = 60.0  # inside the refresh margin, ask the service again at most this often
USABLE_MARGIN_SECONDS = 60.0  # a held key closer than this to its expiry is not used any more


class MetadataAuth(httpx.Auth):
    """SDK-HMAC-SHA256 signing with the agency's temporary AK/SK and security token from the metadata service.

    Fetched on first use and shared by all threads (one fetch however many callers wait for it); fetched again
    once within 40 minutes of expiry. If a refresh fails while the held key is still good, the held key is
    used and the refresh tried again a minute later. When the gateway rejects the key (401 APIGW.0301 or
    APIGW.0307) the request never reached DBSS: the key is fetched again and, if the service gave another
    one, the request is resent once.
    """

    requires_request_body = True
    requires_response_body = True

    def __init__(
        self,
        *,
        metadata_client: httpx.Client,
        project_id: str | None,
        refresh_before_seconds: float = REFRESH_BEFORE_SECONDS,
        clock: Clock = time.time,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        observe: CallObserver | None = None,
    ) -> None:
        self._metadata = metadata_client
        self._observe = observe
        self._project_id = project_id
        self._refresh_before = refresh_before_seconds
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._key: AccessKey | None = None
        self._next_attempt = 0.0
        self._session_token: str | None = None
        self._session_checked_at: float | None = None

    def __repr__(self) -> str:
        return f"MetadataAuth(endpoint={str(self._metadata.base_url)!r})"

    @property
    def endpoint(self) -> str:
        return str(self._metadata.base_url).rstrip("/")

    def close(self) -> None:
        self._metadata.close()

    def key(self, *, rejected: AccessKey | None = None) -> AccessKey:
        """The shared temporary key, fetched first if there is none, it is near expiry, or it was rejected."""
        with self._lock:
            now = self._clock()
            held = self._key if self._key is not None and self._key != rejected else None
            expires_at = held.expires_at if held is not None and held.expires_at is not None else 0.0
            usable = held is not None and now < expires_at - USABLE_MARGIN_SECONDS
            if held is not None and (now < expires_at - self._refresh_before or (usable and now < self._next_attempt)):
                return held
            self._next_attempt = now + RETRY_AFTER_SECONDS
            started = time.perf_counter()
            try:
                fresh = self._fetch()
            except CredentialsUnavailable as err:
                self._observed("not_sent", started)
                if held is None or not usable:
                    raise
                log.warning("refreshing the temporary credentials failed; the held ones are still valid: %s", err)
                return held
            self._observed("ok", started)
            self._key = fresh
            return fresh

    def _observed(self, result: str, started: float) -> None:
        if self._observe is not None:
            self._observe("metadata", result, time.perf_counter() - started)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        key = self.key()
        sign(request, key, project_id=self._project_id, now=self._now())
        response = yield request
        if response.status_code != 401:
            return
        if api_error(response, error_class=DbssApiError).gateway_code not in TOKEN_REJECTED_CODES:
            return
        try:
            fresh = self.key(rejected=key)
        except CredentialsUnavailable as err:
            log.warning("the gateway refused the temporary credentials and no others could be had: %s", err)
            return
        if fresh != key:  # the gateway refused the request before DBSS saw it: resend it once, with the new key
            sign(request, fresh, project_id=self._project_id, now=self._now())
            yield request

    # --- the metadata service ----------------------------------------------------------------------------

    def _fetch(self) -> AccessKey:
        try:
            if self._session_token is None and (
                self._session_checked_at is None or self._clock() - self._session_checked_at > SESSION_RECHECK_SECONDS
            ):
                self._session_token = self._new_session_token(required=False)
            response = self._get_security_key()
            if response.status_code == 401 and NO_AGENCY_TEXT not in response.text:
                self._session_token = self._new_session_token(required=True)  # the session token lapsed
                response = self._get_security_key()
        except httpx.HTTPError as err:
            raise CredentialsUnavailable(
                f"the metadata service at {self.endpoint} did not answer ({type(err).__name__}), so there are no "
                "temporary credentials; the DBSS request was not sent"
            ) from err
        if response.status_code == 401 and NO_AGENCY_TEXT in response.text:
            raise CredentialsUnavailable(
                'the metadata service says no agency is bound to this server ("Please configure Cloud Service '
                'Agency first"); the DBSS request was not sent'
            )
        if response.status_code != 200:
            raise CredentialsUnavailable(
                f"the metadata service at {self.endpoint} answered HTTP {response.status_code} for "
                f"{SECURITY_KEY_PATH}; the DBSS request was not sent"
            )
        return _parse_security_key(response, endpoint=self.endpoint)

    def _get_security_key(self) -> httpx.Response:
        headers = {SESSION_HEADER: self._session_token} if self._session_token else {}
        return self._metadata.get(SECURITY_KEY_PATH, headers=headers)

    def _new_session_token(self, *, required: bool) -> str | None:
        """A metadata session token; None where the platform has none (404, 405, 503), unless it is required."""
        self._session_checked_at = self._clock()
        response = self._metadata.put(SESSION_PATH, headers={SESSION_TTL_HEADER: str(SESSION_TTL_SECONDS)})
        if response.status_code == 200 and response.text:
            return response.text.strip()
        if response.status_code in (404, 405, 503) and not required:
            return None
        raise CredentialsUnavailable(
            f"the metadata service at {self.endpoint} refused a session token (HTTP {response.status_code}); "
            "the DBSS request was not sent"
        )


def _first(values: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _parse_security_key(response: httpx.Response, *, endpoint: str) -> AccessKey:
    """The credential in the answer, read as huaweicloudsdkcore's StsAccessor reads it (never echoed in errors)."""
    unreadable = CredentialsUnavailable(
        f"the answer of {endpoint}{SECURITY_KEY_PATH} holds no usable temporary credentials (access, secret, "
        "securitytoken, expires_at; is DBSS_METADATA_ENDPOINT the metadata service?); the DBSS request was not sent"
    )
    try:
        body = json.loads(response.content)
    except ValueError:
        raise unreadable from None
    if not isinstance(body, dict):
        raise unreadable
    inner = body.get("credential") or body.get("credentials") or body
    if not isinstance(inner, dict):
        raise unreadable
    access = _first(inner, "access", "accessKeyId", "access_key_id")
    secret = _first(inner, "secret", "secretAccessKey", "secret_access_key")
    token = _first(inner, "securitytoken", "securityToken", "security_token")
    expires_text = _first(inner, "expires_at", "expiration")
    if not (access and secret and token and expires_text):
        raise unreadable
    try:
        expires = datetime.fromisoformat(expires_text)
    except ValueError:
        raise unreadable from None
    if expires.tzinfo is None:  # the platform writes UTC ("...Z"); huaweicloudsdkcore reads it with mktime, as local
        expires = expires.replace(tzinfo=UTC)
    return AccessKey(access, secret, token, expires.timestamp())
