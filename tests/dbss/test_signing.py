"""AK/SK signing: the two reference vectors, and agreement with the official Huawei Cloud signer."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from bot.dbss import signing
from bot.dbss.auth import AkSkAuth

AK = "AKEXAMPLE0000000000"
SK = "SKEXAMPLEsecretsecretsecretsecretsecret00"
HOST = "dbss.cn-north-4.myhuaweicloud.com"
PID = "0123456789abcdef0123456789abcdef"
DATE = "20250101T000000Z"


def test_vector_1_reboot_post() -> None:
    """The reboot POST of dbss-api.md section 8 signs to the documented signature."""
    body = b'{"instance_id": "0f3b6a5c7d8e4f9a8b7c6d5e4f3a2b1c"}'
    headers = {"Content-Type": "application/json;charset=UTF-8", "X-Project-Id": PID, "Host": HOST, "X-Sdk-Date": DATE}
    assert signing.payload_hash(headers, body) == "c35a1fdd77dc89ebf0d0c16cbda14d2d6245eb3358a97ef55b4579756dd08c40"
    value = signing.authorization(
        access_key=AK,
        secret_key=SK,
        method="POST",
        path=f"/v1/{PID}/audit/instance/reboot",
        query="",
        headers=headers,
        body=body,
    )
    assert value == (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        "Signature=ec0e17448c0f2001ee6e0ef3d84e8fe31d2f1fe8684cedf33f9f13377afc017d"
    )


def test_vector_2_list_get() -> None:
    """The list GET of dbss-api.md section 8 signs to the documented signature, query sorted."""
    assert signing.canonical_query("offset=0&limit=100") == "limit=100&offset=0"
    value = signing.authorization(
        access_key=AK,
        secret_key=SK,
        method="GET",
        path=f"/v2/{PID}/audit/instances",
        query="offset=0&limit=100",
        headers={"Content-Type": "application/json", "Host": HOST, "X-Sdk-Date": DATE},
        body=b"",
    )
    assert value.endswith(
        "SignedHeaders=content-type;host;x-sdk-date, "
        "Signature=ab645fe04cf50fa0be68d36d87a37c86c269fc7672f0fcc25bf98fdc49d150f3"
    )


def test_auth_class_reproduces_vector_1_on_a_real_httpx_request() -> None:
    """AkSkAuth, driven by httpx, produces vector 1's Authorization header byte for byte."""
    auth = AkSkAuth(access_key=AK, secret_key=SK, project_id=PID, now=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    request = httpx.Request(
        "POST",
        f"https://{HOST}/v1/{PID}/audit/instance/reboot",
        content=b'{"instance_id": "0f3b6a5c7d8e4f9a8b7c6d5e4f3a2b1c"}',
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    signed = next(auth.sync_auth_flow(request))
    assert signed.headers["Authorization"].endswith(
        "Signature=ec0e17448c0f2001ee6e0ef3d84e8fe31d2f1fe8684cedf33f9f13377afc017d"
    )


def _official(
    method: str, host: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> str:
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    Signer(BasicCredentials(AK, SK)).sign(request)
    return str(request.header_params["Authorization"])


CASES = [
    ("GET", HOST, f"/v2/{PID}/audit/instances", [("offset", "0"), ("limit", "1000")], b""),
    ("GET", "127.0.0.1:8443", f"/v2/{PID}/audit/instances", [("name", "审计 实例"), ("a", "x y~z*")], b""),
    ("POST", "dbss.example:9443", f"/v1/{PID}/audit/instance/reboot", [], b'{"instance_id": "\xc3\xa9"}'),
    ("POST", HOST, f"/v1/{PID}/dbss/audit/instance/reboot", [], b""),
    ("GET", HOST, "/v1/x/audit/a%20b/reports", [("k", ""), ("k2", "v/2"), ("b", "1"), ("a", "2")], b""),
    ("DELETE", "[::1]:1234", f"/v1/{PID}/audit/instance", [("id", "é&=?")], b'{"id": "x"}'),
]


@pytest.mark.parametrize(("method", "host", "path", "query", "body"), CASES)
def test_matches_official_signer(method: str, host: str, path: str, query: list[tuple[str, str]], body: bytes) -> None:
    """Our signer agrees with huaweicloudsdkcore's on queries, non-ASCII, empty bodies and custom ports."""
    headers = {"Content-Type": "application/json", "Host": host, "X-Sdk-Date": DATE, "X-Project-Id": PID}
    expected = _official(method, host, path, query, headers, body)
    query_text = "&".join(f"{httpx.QueryParams({k: v})}" for k, v in query)
    ours = signing.authorization(
        access_key=AK, secret_key=SK, method=method, path=path, query=query_text, headers=headers, body=body
    )
    assert ours == expected


def test_matches_official_signer_on_random_requests() -> None:
    """A hundred random requests (seeded) sign identically with ours and the official signer."""
    rng = random.Random(20261127)
    alphabet = "abcXYZ019-_.~ /?&=+%é中🙂"
    for _ in range(100):
        query = [
            ("".join(rng.choices(alphabet, k=rng.randint(1, 6))), "".join(rng.choices(alphabet, k=rng.randint(0, 8))))
            for _ in range(rng.randint(0, 4))
        ]
        body = json.dumps({"instance_id": "".join(rng.choices(alphabet, k=40))}).encode() if rng.random() < 0.5 else b""
        host = rng.choice([HOST, "127.0.0.1:" + str(rng.randint(1, 65535))])
        path = f"/v1/{PID}/audit/" + "".join(rng.choices("abc-~._", k=8))
        headers = {"Content-Type": "application/json;charset=UTF-8", "Host": host, "X-Sdk-Date": DATE}
        expected = _official("POST", host, path, query, headers, body)
        query_text = str(httpx.QueryParams(query))
        ours = signing.authorization(
            access_key=AK, secret_key=SK, method="POST", path=path, query=query_text, headers=headers, body=body
        )
        assert ours == expected, (query, body, host)


def test_non_json_content_type_is_unsigned_payload() -> None:
    """A non-JSON content type is signed as UNSIGNED-PAYLOAD, as the official signer does."""
    auth = AkSkAuth(access_key=AK, secret_key=SK, now=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    request = httpx.Request("POST", f"https://{HOST}/x", content=b"a=b", headers={"Content-Type": "text/plain"})
    signed = next(auth.sync_auth_flow(request))
    assert signed.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    expected = _official(
        "POST", HOST, "/x", [], {"Content-Type": "text/plain", "Host": HOST, "X-Sdk-Date": DATE}, b"a=b"
    )
    assert signed.headers["Authorization"] == expected


# A security token as the platform issues them: long, with '+', '/' and '=' (base64).
SECURITY_TOKEN = "gQpjbi1ub3J0aC00hqP+AbC/def==" + "x7Yz" * 300


def _official_with_token(method: str, host: str, path: str, query: list[tuple[str, str]], body: bytes) -> SdkRequest:
    """The official path for temporary keys: BasicCredentials.sign_request adds X-Project-Id and X-Security-Token,
    then signs."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params={"Content-Type": "application/json;charset=UTF-8", "X-Sdk-Date": DATE},
        body=body,
    )
    BasicCredentials(AK, SK, PID).with_security_token(SECURITY_TOKEN).sign_request(request)
    return request


@pytest.mark.parametrize(("method", "host", "path", "query", "body"), CASES)
def test_security_token_is_sent_and_signed_as_the_official_signer_does(
    method: str, host: str, path: str, query: list[tuple[str, str]], body: bytes
) -> None:
    """With a security token, AkSkAuth on a real httpx request sends the same X-Security-Token and the same
    Authorization (x-security-token among the SignedHeaders) as huaweicloudsdkcore's BasicCredentials."""
    official = _official_with_token(method, host, path, query, body)
    auth = AkSkAuth(
        access_key=AK,
        secret_key=SK,
        security_token=SECURITY_TOKEN,
        project_id=PID,
        now=lambda: datetime(2025, 1, 1, tzinfo=UTC),
    )
    request = httpx.Request(
        method,
        f"https://{host}{path}",
        params=query,
        content=body,
        headers={"Content-Type": "application/json;charset=UTF-8"},
    )
    signed = next(auth.sync_auth_flow(request))
    assert signed.headers["X-Security-Token"] == official.header_params["X-Security-Token"] == SECURITY_TOKEN
    assert "x-security-token" in official.header_params["Authorization"]
    assert signed.headers["Authorization"] == official.header_params["Authorization"]


def test_without_a_security_token_no_header_is_sent_or_signed() -> None:
    """Permanent keys send no X-Security-Token, and it is not among the SignedHeaders."""
    auth = AkSkAuth(access_key=AK, secret_key=SK, project_id=PID, now=lambda: datetime(2025, 1, 1, tzinfo=UTC))
    signed = next(auth.sync_auth_flow(httpx.Request("GET", f"https://{HOST}/v2/{PID}/audit/instances")))
    assert "X-Security-Token" not in signed.headers
    assert "x-security-token" not in signed.headers["Authorization"]
    assert "security_token=<hidden>" in repr(AkSkAuth(access_key=AK, secret_key=SK, security_token=SECURITY_TOKEN))
    assert SECURITY_TOKEN not in repr(AkSkAuth(access_key=AK, secret_key=SK, security_token=SECURITY_TOKEN))
