"""Huawei Cloud AK/SK request signing, SDK-HMAC-SHA256 (the algorithm of huaweicloudsdkcore's Signer)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment of the decoded path percent-encoded, always ending in '/'."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: str) -> str:
    """The query's (key, value) pairs sorted and percent-encoded; '' when there is no query."""
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Lower-cased header names to sign: every header without an underscore, sorted."""
    return sorted(name.lower() for name in headers if "_" not in name)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    if not body:
        return EMPTY_SHA256
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()


def string_to_sign(
    *, method: str, path: str, query: str, headers: Mapping[str, str], signed: list[str], body: bytes
) -> str:
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    canonical_request = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(signed),
            payload_hash(headers, body),
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{lowered['x-sdk-date']}\n{digest}"


def signature(secret_key: str, text: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    *, access_key: str, secret_key: str, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> str:
    """The Authorization header value for a request whose headers already hold Host and X-Sdk-Date.

    Every header given is signed (as the official signer does), so pass only headers that reach the
    gateway unchanged.
    """
    signed = signed_header_names(headers)
    text = string_to_sign(method=method, path=path, query=query, headers=headers, signed=signed, body=body)
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={signature(secret_key, text)}"


def parse_authorization(value: str) -> dict[str, str] | None:
    """The Access, SignedHeaders and Signature parts of an Authorization header, or None if malformed."""
    scheme, _, rest = value.partition(" ")
    if scheme != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    if not {"Access", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    return parts
