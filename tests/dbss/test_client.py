"""The DBSS client against the fake DBSS: reboot, list, errors of every shape, timeouts and connect failures."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.dbss import (
    DbssApiError,
    DbssClient,
    DbssNotSent,
    DbssOutcomeUnknown,
    DbssThrottled,
    RebootFailed,
    TokenAuth,
)
from tests.conftest import INSTANCE_ID, OTHER_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.http import Answer

_open: list[DbssClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def client_for(fake: FakeDbss, *, token: str = "good-token", timeout: float = 5.0, **kwargs: Any) -> DbssClient:
    client = DbssClient(
        base_url=fake.url, project_id=PROJECT_ID, auth=TokenAuth(token), timeout_seconds=timeout, **kwargs
    )
    _open.append(client)
    return client


def test_reboot_posts_instance_id_to_the_current_path(fake_dbss: FakeDbss) -> None:
    """A reboot is one POST to /v1/{pid}/audit/instance/reboot with the instance ID as JSON and the token."""
    accepted = client_for(fake_dbss).reboot(INSTANCE_ID)
    [sent] = fake_dbss.reboot_requests()
    assert sent.path == f"/v1/{PROJECT_ID}/audit/instance/reboot"
    assert sent.json == {"instance_id": INSTANCE_ID}
    assert sent.headers["x-auth-token"] == "good-token"
    assert sent.headers["content-type"].startswith("application/json")
    assert accepted.request_id and len(accepted.request_id) == 32
    assert fake_dbss.instances[INSTANCE_ID].task == "rebooting"


def test_deprecated_path_is_reachable_by_setting(fake_dbss: FakeDbss) -> None:
    """reboot_path='deprecated' uses the path of the original API page."""
    client_for(fake_dbss, reboot_path="deprecated").reboot(INSTANCE_ID)
    [sent] = fake_dbss.reboot_requests()
    assert sent.path == f"/v1/{PROJECT_ID}/dbss/audit/instance/reboot"


def test_http_200_with_result_failed_is_a_failure(fake_dbss: FakeDbss) -> None:
    """200 {"result": "failed"} raises RebootFailed carrying the request ID."""
    fake_dbss.script("reboot", Answer(200, {"result": "failed"}, {"X-Request-Id": "rid-failed"}))
    with pytest.raises(RebootFailed) as caught:
        client_for(fake_dbss).reboot(INSTANCE_ID)
    assert caught.value.status_code == 200
    assert caught.value.request_id == "rid-failed"


def test_invalid_instance_id_never_reaches_a_url(fake_dbss: FakeDbss) -> None:
    """An ID with a slash or the wrong length is refused before any request."""
    for bad in ["../../etc/passwd" + "a" * 20, "short", "a" * 65, INSTANCE_ID + "/"]:
        with pytest.raises(ValueError):
            client_for(fake_dbss).reboot(bad)
    assert fake_dbss.received == []


def test_busy_instance_error_shape_a(fake_dbss: FakeDbss) -> None:
    """A nested {"error": {...}} body is read into error_code and error_msg, with X-Request-Id."""
    fake_dbss.instances[INSTANCE_ID].task = "rebooting"
    with pytest.raises(DbssApiError) as caught:
        client_for(fake_dbss).reboot(INSTANCE_ID)
    err = caught.value
    assert (err.status_code, err.error_code, err.error_msg) == (
        400,
        "DBSS.10020132",
        "Restarting DBSS instance failed.",
    )
    assert err.request_id and err.request_id == caught.value.request_id


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            Answer(
                400,
                {"error": {"error_code": "DBSS.10020132", "error_msg": "Restarting failed."}},
                {"X-Request-Id": "r-a"},
            ),
            (400, "DBSS.10020132", "Restarting failed.", "r-a"),
        ),
        (
            Answer(
                403,
                {
                    "error_code": "DBSS.10020100",
                    "error_msg": "denied",
                    "encoded_authorization_message": "enc",
                    "details": [{"error_code": "x", "error_msg": "y"}],
                },
                {"X-Request-Id": "r-b"},
            ),
            (403, "DBSS.10020100", "denied", "r-b"),
        ),
        (
            Answer(404, {"error_code": "APIGW.0101", "error_msg": "API not found", "request_id": "r-gw"}),
            (404, "APIGW.0101", "API not found", "r-gw"),
        ),
        (
            Answer(502, raw=b"<html><body>Bad   Gateway</body></html>", headers={"Content-Type": "text/html"}),
            (502, "502", "<html><body>Bad Gateway</body></html>", None),
        ),
        (
            Answer(500, {"errorCode": "DBSS.11000000", "errorMsg": "Internal system exception."}),
            (500, "DBSS.11000000", "Internal system exception.", None),
        ),
    ],
)
def test_every_error_shape_is_parsed(fake_dbss: FakeDbss, answer: Answer, expected: tuple[object, ...]) -> None:
    """Nested, flat DBSS, flat gateway, camelCase and non-JSON error bodies all yield the server's facts."""
    fake_dbss.script("reboot", answer)
    with pytest.raises(DbssApiError) as caught:
        client_for(fake_dbss).reboot(INSTANCE_ID)
    err = caught.value
    status, code, msg, rid = expected
    assert (err.status_code, err.error_code, err.error_msg) == (status, code, msg)
    if rid is not None:
        assert err.request_id == rid
    else:
        assert err.request_id  # the fake's X-Request-Id header
    assert not isinstance(err, DbssThrottled)


def test_shape_b_keeps_encoded_authorization_message(fake_dbss: FakeDbss) -> None:
    """The flat DBSS body's encoded_authorization_message is kept for the IAM policy investigation."""
    fake_dbss.script(
        "reboot", Answer(403, {"error_code": "DBSS.1", "error_msg": "no", "encoded_authorization_message": "ENC"})
    )
    with pytest.raises(DbssApiError) as caught:
        client_for(fake_dbss).reboot(INSTANCE_ID)
    assert caught.value.encoded_authorization_message == "ENC"


@pytest.mark.parametrize("code", ["APIGW.0308", "APIG.0308"])
def test_throttling_is_its_own_error(fake_dbss: FakeDbss, code: str) -> None:
    """429 with APIGW.0308 (or APIG.0308) raises DbssThrottled, and the client does not retry."""
    fake_dbss.script("reboot", fake_dbss.gateway_error(429, code, "The throttling threshold has been reached"))
    with pytest.raises(DbssThrottled) as caught:
        client_for(fake_dbss).reboot(INSTANCE_ID)
    assert caught.value.error_code == code
    assert len(fake_dbss.reboot_requests()) == 1


def test_timeout_after_sending_is_outcome_unknown_and_not_retried(fake_dbss: FakeDbss) -> None:
    """A reboot that DBSS received but did not answer in time is 'outcome unknown', sent exactly once."""
    fake_dbss.delays["reboot"] = 2.0
    with pytest.raises(DbssOutcomeUnknown):
        client_for(fake_dbss, timeout=0.3).reboot(INSTANCE_ID)
    assert len(fake_dbss.reboot_requests()) == 1


def test_dropped_connection_mid_request_is_outcome_unknown(fake_dbss: FakeDbss) -> None:
    """A connection closed with no answer after the request was sent is 'outcome unknown'."""
    fake_dbss.script("reboot", None)
    with pytest.raises(DbssOutcomeUnknown):
        client_for(fake_dbss).reboot(INSTANCE_ID)
    assert len(fake_dbss.reboot_requests()) == 1


def test_connect_failure_is_not_sent() -> None:
    """Nobody listening on the port: DbssNotSent, which callers read as 'did not happen'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        DbssClient(
            base_url=f"http://127.0.0.1:{port}", project_id=PROJECT_ID, auth=TokenAuth("t"), timeout_seconds=1
        ) as c,
        pytest.raises(DbssNotSent),
    ):
        c.reboot(INSTANCE_ID)


def test_not_sent_and_unknown_are_distinct() -> None:
    """Neither error is a subclass of the other, so callers can tell 'did not happen' from 'unknown'."""
    assert not issubclass(DbssNotSent, DbssOutcomeUnknown)
    assert not issubclass(DbssOutcomeUnknown, DbssNotSent)


def test_list_reads_every_page(fake_dbss: FakeDbss) -> None:
    """2,345 instances come back complete over three pages of at most 1,000."""
    fake_dbss.instances.clear()
    ids = [f"{n:032d}" for n in range(2345)]
    for n, iid in enumerate(ids):
        fake_dbss.add_instance(iid, f"audit-{n}")
    instances = client_for(fake_dbss).list_instances()
    assert [i.id for i in instances] == ids
    pages = fake_dbss.list_requests()
    assert [(r.params["offset"], r.params["limit"]) for r in pages] == [
        ("0", "1000"),
        ("1000", "1000"),
        ("2000", "1000"),
    ]


def test_list_parses_tolerantly(fake_dbss: FakeDbss) -> None:
    """camelCase keys, missing fields and unknown statuses are accepted and kept as they are."""
    fake_dbss.script(
        "list",
        Answer(
            200,
            {
                "instances": [
                    {"id": INSTANCE_ID, "name": "a", "status": "MIGRATING", "task": "NO_TASK"},
                    {"instanceId": OTHER_ID, "status": "ACTIVE"},
                    {"name": "no id at all"},
                    "not an object",
                ],
                "total": 4,
            },
        ),
    )
    [first, second] = client_for(fake_dbss).list_instances()
    assert (first.id, first.status, first.rebootable) == (INSTANCE_ID, "MIGRATING", False)
    assert (second.id, second.name, second.task, second.rebootable) == (OTHER_ID, "", "UNKNOWN", False)


def test_find_instance_by_id(fake_dbss: FakeDbss) -> None:
    """find_instance reads the list and returns the match, or None for an unknown ID."""
    client = client_for(fake_dbss)
    found = client.find_instance(OTHER_ID)
    assert found is not None and (found.name, found.status, found.task) == ("audit-prod-2", "ACTIVE", "NO_TASK")
    assert found.version == "23.04.18.102306" and found.region == "cn-north-4"
    assert client.find_instance("f" * 32) is None


def test_camel_case_list_is_read(fake_dbss: FakeDbss) -> None:
    """A list whose fields come in camelCase still yields every instance."""
    fake_dbss.camel_case = True
    assert {i.id for i in client_for(fake_dbss).list_instances()} == {INSTANCE_ID, OTHER_ID}


def test_list_error_is_raised_with_facts(fake_dbss: FakeDbss) -> None:
    """A refused list (IAM policy) raises DbssApiError with the gateway's code."""
    fake_dbss.script("list", fake_dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    with pytest.raises(DbssApiError) as caught:
        client_for(fake_dbss).list_instances()
    assert (caught.value.status_code, caught.value.error_code) == (403, "APIGW.0302")


def test_unknown_token_is_rejected_like_the_gateway(fake_dbss: FakeDbss) -> None:
    """A wrong token gets 401 APIGW.0301 from the fake, surfaced as DbssApiError."""
    with pytest.raises(DbssApiError) as caught:
        client_for(fake_dbss, token="wrong").list_instances()
    assert (caught.value.status_code, caught.value.gateway_code) == (401, "0301")


def test_timeouts_are_explicit() -> None:
    """The client sets the configured timeout on connect, read, write and pool."""
    with DbssClient(base_url="http://127.0.0.1:9", project_id=PROJECT_ID, auth=TokenAuth("t"), timeout_seconds=7) as c:
        assert c._http.timeout == httpx.Timeout(7)
