"""Temporary credentials: the agency's from the metadata service (fetched once, shared, refreshed before they
expire) and static ones with DBSS_SECURITY_TOKEN, all checked by the simulator's gateway."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bot.config import Settings
from bot.dbss import (
    AkSkAuth,
    CredentialsUnavailable,
    DbssApiError,
    DbssClient,
    DbssNotSent,
    MetadataAuth,
    build_client,
)
from bot.dbss.signing import parse_authorization
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss, TemporaryKey
from tests.fakes.http import Answer, Received

SESSION = "/meta-data/latest/api/token"
SECURITY_KEY = "/openstack/latest/securitykey"


def metadata_settings(fake: FakeDbss, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "dbss_project_id": PROJECT_ID,
        "dbss_endpoint": fake.url,
        "dbss_metadata_credentials": True,
        "dbss_metadata_endpoint": fake.url,  # never the link-local default
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class Clock:
    """A clock the test moves; it starts at the real time, so the simulator's expiries line up with it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(fake_dbss: FakeDbss, clock: Clock) -> Iterator[DbssClient]:
    auth = MetadataAuth(
        metadata_client=httpx.Client(base_url=fake_dbss.url, timeout=3), project_id=PROJECT_ID, clock=clock
    )
    with DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as c:
        yield c


def issued(fake: FakeDbss) -> list[TemporaryKey]:
    with fake.lock:
        return list(fake.temporary_keys.values())


def access_key(request: Received) -> str:
    parts = parse_authorization(request.headers["authorization"])
    assert parts is not None
    return parts["Access"]


def metadata_calls(fake: FakeDbss) -> list[tuple[str, str]]:
    with fake.lock:
        return [(r.method, r.path) for r in fake.received if r.path in (SESSION, SECURITY_KEY)]


def test_agency_credentials_sign_requests_the_gateway_accepts(fake_dbss: FakeDbss) -> None:
    """The bot asks for a metadata session token, then for the agency's key with it; the reboot is signed with
    that temporary AK and carries its security token, signed; the simulator's gateway accepts it."""
    with build_client(metadata_settings(fake_dbss)) as c:
        c.reboot(INSTANCE_ID)
    assert metadata_calls(fake_dbss) == [("PUT", SESSION), ("GET", SECURITY_KEY)]
    [put] = fake_dbss.requests_to(SESSION)
    assert put.headers["x-metadata-token-ttl-seconds"] == "21600"
    [get] = fake_dbss.metadata_requests()
    assert get.headers["x-metadata-token"] in fake_dbss.metadata_sessions
    [key] = issued(fake_dbss)
    [reboot] = fake_dbss.reboot_requests()
    assert access_key(reboot) == key.access
    assert reboot.headers["x-security-token"] == key.security_token
    assert (
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token," in reboot.headers["authorization"]
    )
    assert fake_dbss.reboots_done == [INSTANCE_ID]


def test_concurrent_callers_share_one_fetch(fake_dbss: FakeDbss, client: DbssClient) -> None:
    """Thirty threads listing at once, with a slow metadata service: one session token, one key, thirty lists
    all signed with it."""
    fake_dbss.delays["metadata"] = 0.3
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.list_instances()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert metadata_calls(fake_dbss) == [("PUT", SESSION), ("GET", SECURITY_KEY)]
    [key] = issued(fake_dbss)
    lists = fake_dbss.list_requests()
    assert len(lists) == 30 and {access_key(r) for r in lists} == {key.access}


def test_refreshed_40_minutes_before_expiry(fake_dbss: FakeDbss, client: DbssClient, clock: Clock) -> None:
    """A key valid for an hour is reused while more than 40 minutes remain, then fetched again; the next
    request is signed with the new AK and carries the new security token."""
    client.list_instances()
    clock.advance(19 * 60)  # 41 minutes left
    client.list_instances()
    assert len(fake_dbss.metadata_requests()) == 1
    clock.advance(2 * 60)  # 39 minutes left: inside huaweicloudsdkcore's 40-minute margin
    client.list_instances()
    assert len(fake_dbss.metadata_requests()) == 2
    first, second = issued(fake_dbss)
    lists = fake_dbss.list_requests()
    assert [access_key(r) for r in lists] == [first.access, first.access, second.access]
    assert [r.headers["x-security-token"] for r in lists] == [
        first.security_token,
        first.security_token,
        second.security_token,
    ]


def test_a_refused_key_is_fetched_again_and_the_reboot_resent_once(fake_dbss: FakeDbss, client: DbssClient) -> None:
    """The gateway refuses an expired key (401 APIGW.0307) before DBSS sees the reboot: a new key is fetched
    and the reboot resent once with it; DBSS reboots once."""
    client.list_instances()
    fake_dbss.expire_temporary_keys()
    accepted = client.reboot(INSTANCE_ID)
    assert accepted.instance_id == INSTANCE_ID
    first, second = issued(fake_dbss)
    assert [access_key(r) for r in fake_dbss.reboot_requests()] == [first.access, second.access]
    assert fake_dbss.reboots_done == [INSTANCE_ID]


def test_a_refused_key_is_not_resent_when_the_service_gives_the_same_one(
    fake_dbss: FakeDbss, client: DbssClient
) -> None:
    """If the metadata service answers with the very key the gateway refused, the reboot is not sent again:
    the gateway's error is raised."""
    key = fake_dbss.issue_temporary_key()
    fake_dbss.expire_temporary_keys()
    for _ in range(2):
        fake_dbss.script("metadata", Answer(200, key.body()))
    with pytest.raises(DbssApiError) as caught:
        client.reboot(INSTANCE_ID)
    assert caught.value.gateway_code == "0307"
    assert len(fake_dbss.reboot_requests()) == 1 and len(fake_dbss.metadata_requests()) == 2
    assert fake_dbss.reboots_done == []


def test_platform_without_session_tokens(fake_dbss: FakeDbss, client: DbssClient) -> None:
    """Where PUT .../api/token answers 404, the key is asked for without X-Metadata-Token, as the SDK does."""
    fake_dbss.metadata_session_api = False
    client.reboot(INSTANCE_ID)
    [get] = fake_dbss.metadata_requests()
    assert "x-metadata-token" not in get.headers
    assert fake_dbss.reboots_done == [INSTANCE_ID]


def test_a_lapsed_session_token_is_renewed(fake_dbss: FakeDbss, client: DbssClient, clock: Clock) -> None:
    """A 401 from the metadata service for the session token: a new session token, then the key."""
    fake_dbss.metadata_session_required = True
    client.list_instances()
    with fake_dbss.lock:
        fake_dbss.metadata_sessions.clear()
    clock.advance(21 * 60)
    client.list_instances()
    assert metadata_calls(fake_dbss) == [
        ("PUT", SESSION),
        ("GET", SECURITY_KEY),
        ("GET", SECURITY_KEY),
        ("PUT", SESSION),
        ("GET", SECURITY_KEY),
    ]
    assert len(issued(fake_dbss)) == 2


def test_no_agency_means_not_sent(fake_dbss: FakeDbss, client: DbssClient) -> None:
    """No agency bound to the server: a DbssNotSent that says so, and the reboot never leaves."""
    fake_dbss.agency = False
    with pytest.raises(CredentialsUnavailable) as caught:
        client.reboot(INSTANCE_ID)
    assert isinstance(caught.value, DbssNotSent)
    assert "no agency is bound to this server" in str(caught.value) and "was not sent" in str(caught.value)
    assert fake_dbss.reboot_requests() == []


def test_unreachable_metadata_service_means_not_sent(fake_dbss: FakeDbss) -> None:
    """A metadata service that does not answer: DbssNotSent naming the endpoint; nothing reaches DBSS."""
    settings = metadata_settings(fake_dbss, dbss_metadata_endpoint="http://127.0.0.1:9")
    with build_client(settings) as c, pytest.raises(CredentialsUnavailable) as caught:
        c.reboot(INSTANCE_ID)
    assert "http://127.0.0.1:9 did not answer" in str(caught.value)
    assert fake_dbss.reboot_requests() == []


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, {"hello": "world"}),
        Answer(200, raw=b"<html>captive portal</html>"),
        Answer(200, {"credential": {"access": "A", "secret": "S", "securitytoken": "T", "expires_at": "soon"}}),
        Answer(500, raw=b"internal error"),
    ],
)
def test_an_unusable_answer_means_not_sent(fake_dbss: FakeDbss, client: DbssClient, answer: Answer) -> None:
    """An answer without the credential's four fields, or an error status, is a clear DbssNotSent."""
    fake_dbss.script("metadata", answer)
    with pytest.raises(CredentialsUnavailable, match="the DBSS request was not sent"):
        client.reboot(INSTANCE_ID)
    assert fake_dbss.reboot_requests() == []


def test_a_failed_refresh_keeps_the_held_key_while_it_is_valid(
    fake_dbss: FakeDbss, client: DbssClient, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside the refresh margin, a metadata failure does not stop a reboot while the held key is still valid;
    the refresh is tried again a minute later, not on every request."""
    client.list_instances()
    [key] = issued(fake_dbss)
    fake_dbss.agency = False
    clock.advance(25 * 60)
    client.reboot(INSTANCE_ID)
    client.list_instances()
    assert len(fake_dbss.metadata_requests()) == 2
    clock.advance(61)
    client.list_instances()
    assert len(fake_dbss.metadata_requests()) == 3
    assert {access_key(r) for r in fake_dbss.reboot_requests() + fake_dbss.list_requests()} == {key.access}
    assert "refreshing the temporary credentials failed" in caplog.text
    assert fake_dbss.reboots_done == [INSTANCE_ID]


def test_secrets_stay_out_of_logs_reprs_and_errors(fake_dbss: FakeDbss, caplog: pytest.LogCaptureFixture) -> None:
    """The temporary SK and security token appear in no log record, repr or error text."""
    caplog.set_level(logging.DEBUG)
    with build_client(metadata_settings(fake_dbss)) as c:
        c.list_instances()
        fake_dbss.script(
            "reboot", Answer(500, {"error_code": "DBSS.11000000", "error_msg": "Internal system exception."})
        )
        with pytest.raises(DbssApiError) as caught:
            c.reboot(INSTANCE_ID)
        texts = [repr(c), repr(c._http.auth), str(caught.value), caplog.text]
    [key] = issued(fake_dbss)
    for text in texts:
        assert key.secret not in text and key.security_token not in text


def test_static_temporary_keys_are_signed_with_their_security_token(fake_dbss: FakeDbss) -> None:
    """DBSS_AK/DBSS_SK with DBSS_SECURITY_TOKEN: the gateway accepts them; a wrong or missing token is refused
    (401 APIGW.0301) and an expired key too (APIGW.0307), and neither is resent: nothing can renew them."""
    key = fake_dbss.issue_temporary_key()
    settings = Settings(
        _env_file=None,
        dbss_project_id=PROJECT_ID,
        dbss_endpoint=fake_dbss.url,  # type: ignore[call-arg]
        dbss_ak=key.access,
        dbss_sk=key.secret,
        dbss_security_token=key.security_token,
    )
    with build_client(settings) as c:
        c.reboot(INSTANCE_ID)
    [reboot] = fake_dbss.reboot_requests()
    assert reboot.headers["x-security-token"] == key.security_token

    for token in ("not-the-token", None):
        auth = AkSkAuth(access_key=key.access, secret_key=key.secret, security_token=token, project_id=PROJECT_ID)
        with (
            DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as c,
            pytest.raises(DbssApiError) as caught,
        ):
            c.list_instances()
        assert caught.value.error_code == "APIGW.0301" and caught.value.status_code == 401

    fake_dbss.expire_temporary_keys()
    with build_client(settings) as c, pytest.raises(DbssApiError) as caught:
        c.reboot(INSTANCE_ID)
    assert caught.value.error_code == "APIGW.0307"
    assert len(fake_dbss.reboot_requests()) == 2 and fake_dbss.reboots_done == [INSTANCE_ID]
