"""The Huawei Cloud side: the DBSS client, its authentication and its errors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from bot.config import Settings, Target
from bot.dbss.auth import AccessKey, AkSkAuth, IamPasswordAuth, TokenAuth
from bot.dbss.client import CallObserver, DbssClient, RebootAccepted
from bot.dbss.errors import (
    CredentialsUnavailable,
    DbssApiError,
    DbssError,
    DbssNotSent,
    DbssOutcomeUnknown,
    DbssThrottled,
    IamLoginError,
    RebootFailed,
)
from bot.dbss.metadata import TIMEOUT_SECONDS as METADATA_TIMEOUT_SECONDS
from bot.dbss.metadata import MetadataAuth
from bot.dbss.models import Instance, is_instance_id

__all__ = [
    "AccessKey",
    "AkSkAuth",
    "CredentialsUnavailable",
    "DbssApiError",
    "DbssClient",
    "DbssError",
    "DbssNotSent",
    "DbssOutcomeUnknown",
    "DbssThrottled",
    "IamLoginError",
    "IamPasswordAuth",
    "Instance",
    "MetadataAuth",
    "RebootAccepted",
    "RebootFailed",
    "TokenAuth",
    "build_auth",
    "build_client",
    "build_fleet",
    "build_metadata_auth",
    "is_instance_id",
]

if TYPE_CHECKING:
    from bot.core.fleet import Fleet

# httpcore's DEBUG records print raw response headers, IAM's X-Subject-Token among them: never let them through.
logging.getLogger("httpcore").setLevel(logging.INFO)


def build_auth(
    settings: Settings,
    target: Target | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    observe: CallObserver | None = None,
) -> httpx.Auth:
    """The Auth for the one kind of credential the settings hold, for one target (default: the first).

    A token, an AK/SK signature and an IAM token are each bound to a project: one Auth per target."""
    project_id = (target or settings.targets[0]).project_id
    if settings.credential_kind == "token":
        assert settings.dbss_auth_token is not None
        return TokenAuth(settings.dbss_auth_token.get_secret_value())
    if settings.credential_kind == "aksk":
        assert settings.dbss_ak is not None and settings.dbss_sk is not None
        return AkSkAuth(
            access_key=settings.dbss_ak,
            secret_key=settings.dbss_sk.get_secret_value(),
            security_token=settings.dbss_security_token.get_secret_value() if settings.dbss_security_token else None,
            project_id=project_id,
        )
    if settings.credential_kind == "metadata":
        return build_metadata_auth(settings, transport=transport, observe=observe, project_id=project_id)
    assert settings.dbss_iam_domain and settings.dbss_iam_user and settings.dbss_iam_password
    # One login attempt per request that needs a token (httpx re-sends nothing): a login that fails or times out
    # leaves the DBSS request not sent. IamPasswordAuth logs in again only after DBSS refused the token (401),
    # a request DBSS did not act on.
    iam = httpx.Client(
        base_url=settings.dbss_iam_endpoint,
        timeout=httpx.Timeout(settings.dbss_timeout_seconds),
        transport=transport,
    )
    return IamPasswordAuth(
        iam_client=iam,
        domain=settings.dbss_iam_domain,
        user=settings.dbss_iam_user,
        password=settings.dbss_iam_password.get_secret_value(),
        project_id=project_id,
        observe=observe,
    )


def build_metadata_auth(
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    observe: CallObserver | None = None,
    project_id: str | None = None,
) -> MetadataAuth:
    """The agency's temporary credentials from the metadata service at DBSS_METADATA_ENDPOINT.

    `project_id` None: the project is not signed in by the Auth but by the client's X-Project-Id header, so that
    one key (fetched once) signs for every target."""
    metadata = httpx.Client(  # reads only; and, as every httpx client of the bot, re-sends nothing
        base_url=settings.dbss_metadata_endpoint,
        timeout=httpx.Timeout(min(METADATA_TIMEOUT_SECONDS, settings.dbss_timeout_seconds)),
        transport=transport,
        trust_env=False,  # a link-local service: never through HTTP_PROXY, which would fetch some other host's keys
    )
    return MetadataAuth(metadata_client=metadata, project_id=project_id, observe=observe)


def build_client(
    settings: Settings,
    target: Target | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    observe: CallObserver | None = None,
    auth: httpx.Auth | None = None,
) -> DbssClient:
    """The client of one target (default: the first). `observe` is told of every DBSS, IAM and metadata-service
    call (the bot's metrics). `auth`: an Auth shared between targets (the metadata service's one key)."""
    target = target or settings.targets[0]
    return DbssClient(
        base_url=target.endpoint,
        project_id=target.project_id,
        auth=auth or build_auth(settings, target, transport=transport, observe=observe),
        timeout_seconds=settings.dbss_timeout_seconds,
        reboot_path=settings.dbss_reboot_path,
        transport=transport,
        observe=observe,
        # Instances are tagged with their target only when there are several: one target needs no region shown.
        target=target.key if len(settings.targets) > 1 else None,
        where=target.label if len(settings.targets) > 1 else None,
        headers={"X-Project-Id": target.project_id} if auth is not None else None,
    )


def build_fleet(
    settings: Settings, *, transport: httpx.BaseTransport | None = None, observe: CallObserver | None = None
) -> Fleet:
    """A client per target: each its own IAM token or signature (project-scoped), one metadata key for all."""
    from bot.core.fleet import Fleet  # bot.core imports bot.dbss's models: imported here, not at the top

    shared: httpx.Auth | None = None
    if settings.credential_kind == "metadata" and len(settings.targets) > 1:
        shared = build_metadata_auth(settings, transport=transport, observe=observe)
    return Fleet(
        [(t, build_client(settings, t, transport=transport, observe=observe, auth=shared)) for t in settings.targets]
    )
