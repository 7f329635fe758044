"""Authentication against the fake gateway: IAM password login, token renewal, and AK/SK signatures."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.config import Settings
from bot.dbss import AkSkAuth, DbssApiError, DbssClient, DbssNotSent, IamLoginError, IamPasswordAuth, build_client
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.http import Answer

PASSWORD = "correct horse battery staple"


@pytest.fixture
def iam_auth(fake_dbss: FakeDbss) -> Iterator[IamPasswordAuth]:
    with httpx.Client(base_url=fake_dbss.url, timeout=5) as iam:
        yield IamPasswordAuth(
            iam_client=iam, domain="acme", user="oncall-bot", password=PASSWORD, project_id=PROJECT_ID
        )


def test_iam_login_is_project_scoped_and_token_comes_from_header(
    fake_dbss: FakeDbss, iam_auth: IamPasswordAuth
) -> None:
    """The login body scopes to the project; the X-Subject-Token is then sent to DBSS as X-Auth-Token."""
    with DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=iam_auth, timeout_seconds=5) as client:
        client.reboot(INSTANCE_ID)
    [login] = fake_dbss.requests_to("/v3/auth/tokens")
    assert login.params == {"nocatalog": "true"}
    assert login.json["auth"]["scope"] == {"project": {"id": PROJECT_ID}}
    assert login.json["auth"]["identity"]["password"]["user"] == {
        "domain": {"name": "acme"},
        "name": "oncall-bot",
        "password": PASSWORD,
    }
    [reboot] = fake_dbss.reboot_requests()
    assert reboot.headers["x-auth-token"].startswith("MII") and reboot.headers["x-auth-token"] in fake_dbss.tokens


def test_concurrent_callers_share_one_login(fake_dbss: FakeDbss, iam_auth: IamPasswordAuth) -> None:
    """Thirty threads listing at once cause exactly one IAM login, even when IAM is slow."""
    fake_dbss.delays["iam"] = 0.3
    errors: list[BaseException] = []
    with DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=iam_auth, timeout_seconds=5) as client:

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
    assert fake_dbss.logins == 1
    assert len(fake_dbss.list_requests()) == 30


def test_token_is_cached_until_shortly_before_expiry(fake_dbss: FakeDbss) -> None:
    """The token is reused while fresh and renewed once the clock nears expires_at."""
    now = [datetime.now(UTC).timestamp()]
    with httpx.Client(base_url=fake_dbss.url, timeout=5) as iam:
        auth = IamPasswordAuth(
            iam_client=iam,
            domain="acme",
            user="oncall-bot",
            password=PASSWORD,
            project_id=PROJECT_ID,
            renew_before_seconds=600,
            clock=lambda: now[0],
        )
        first = auth.token()
        now[0] += timedelta(hours=23).total_seconds()
        assert auth.token() == first
        now[0] += timedelta(minutes=51).total_seconds()  # 9 minutes before expiry: inside the renewal margin
        assert auth.token() != first
    assert fake_dbss.logins == 2


@pytest.mark.parametrize(
    ("code", "msg"),
    [
        ("APIGW.0307", "The token must be updated."),
        ("APIGW.0301", "Incorrect IAM authentication information: token expires"),
    ],
)
def test_rejected_token_logs_in_again_once_and_resends(
    fake_dbss: FakeDbss, iam_auth: IamPasswordAuth, code: str, msg: str
) -> None:
    """A gateway 401 for the token means DBSS never saw the reboot: log in again, resend it once."""
    fake_dbss.script("reboot", fake_dbss.gateway_error(401, code, msg))
    with DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=iam_auth, timeout_seconds=5) as client:
        accepted = client.reboot(INSTANCE_ID)
    assert accepted.instance_id == INSTANCE_ID
    first, second = fake_dbss.reboot_requests()
    assert first.headers["x-auth-token"] != second.headers["x-auth-token"]
    assert fake_dbss.logins == 2
    assert fake_dbss.reboots_done == [INSTANCE_ID]


def test_second_rejection_is_not_retried_again(fake_dbss: FakeDbss, iam_auth: IamPasswordAuth) -> None:
    """If the fresh token is rejected too, the error is raised: one re-login, no loop."""
    for _ in range(2):
        fake_dbss.script("reboot", fake_dbss.gateway_error(401, "APIGW.0307", "The token must be updated."))
    with (
        DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=iam_auth, timeout_seconds=5) as client,
        pytest.raises(DbssApiError) as caught,
    ):
        client.reboot(INSTANCE_ID)
    assert caught.value.gateway_code == "0307"
    assert len(fake_dbss.reboot_requests()) == 2


def test_other_401_or_403_is_not_retried(fake_dbss: FakeDbss, iam_auth: IamPasswordAuth) -> None:
    """A 403 policy denial is not a token problem: no re-login, no resend."""
    fake_dbss.script("reboot", fake_dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    with (
        DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=iam_auth, timeout_seconds=5) as client,
        pytest.raises(DbssApiError),
    ):
        client.reboot(INSTANCE_ID)
    assert fake_dbss.logins == 1 and len(fake_dbss.reboot_requests()) == 1


def test_wrong_password_is_an_iam_login_error(fake_dbss: FakeDbss) -> None:
    """IAM's Keystone-style 401 becomes IamLoginError with its message; DBSS is never called."""
    with httpx.Client(base_url=fake_dbss.url, timeout=5) as iam:
        auth = IamPasswordAuth(
            iam_client=iam, domain="acme", user="oncall-bot", password="wrong", project_id=PROJECT_ID
        )
        with (
            DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as client,
            pytest.raises(IamLoginError) as caught,
        ):
            client.reboot(INSTANCE_ID)
    assert caught.value.status_code == 401
    assert caught.value.error_msg == "The username or password is wrong."
    assert fake_dbss.reboot_requests() == []


def test_iam_unreachable_means_not_sent(fake_dbss: FakeDbss) -> None:
    """If IAM cannot be reached, the DBSS request was never sent: DbssNotSent."""
    fake_dbss.script("iam", None)
    with httpx.Client(base_url=fake_dbss.url, timeout=5) as iam:
        auth = IamPasswordAuth(
            iam_client=iam, domain="acme", user="oncall-bot", password=PASSWORD, project_id=PROJECT_ID
        )
        fake_dbss.delays["iam"] = 2
        with (
            DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as client,
            pytest.raises(DbssNotSent),
        ):
            iam.timeout = httpx.Timeout(0.2)
            client.reboot(INSTANCE_ID)
    assert fake_dbss.reboot_requests() == []


def test_aksk_signed_requests_are_accepted_by_the_fake_gateway(fake_dbss: FakeDbss) -> None:
    """Reboot and paged list signed with AK/SK pass the fake's signature check, with X-Project-Id signed."""
    auth = AkSkAuth(
        access_key="AKFAKE0000000000000", secret_key="SKFAKEsecretsecretsecretsecretsecret00", project_id=PROJECT_ID
    )
    with DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as client:
        assert len(client.list_instances()) == 2
        client.reboot(INSTANCE_ID)
    [reboot] = fake_dbss.reboot_requests()
    assert "SignedHeaders=content-type;host;x-project-id;x-sdk-date," in reboot.headers["authorization"]
    assert reboot.headers["host"] == fake_dbss.url.removeprefix("http://")


def test_bad_signature_is_rejected_as_the_gateway_does(fake_dbss: FakeDbss) -> None:
    """A wrong secret key gets 401 APIGW.0301 'verify aksk signature fail', and nothing is rebooted."""
    auth = AkSkAuth(access_key="AKFAKE0000000000000", secret_key="wrong-secret", project_id=PROJECT_ID)
    with (
        DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as client,
        pytest.raises(DbssApiError) as caught,
    ):
        client.reboot(INSTANCE_ID)
    assert caught.value.status_code == 401 and caught.value.error_msg.endswith("verify aksk signature fail")
    assert fake_dbss.reboots_done == []


def test_stale_signature_date_is_rejected(fake_dbss: FakeDbss) -> None:
    """A signature dated more than 15 minutes away is rejected (clock skew)."""
    auth = AkSkAuth(
        access_key="AKFAKE0000000000000",
        secret_key="SKFAKEsecretsecretsecretsecretsecret00",
        now=lambda: datetime.now(UTC) - timedelta(minutes=16),
    )
    with (
        DbssClient(base_url=fake_dbss.url, project_id=PROJECT_ID, auth=auth, timeout_seconds=5) as client,
        pytest.raises(DbssApiError),
    ):
        client.list_instances()


def test_tampered_body_is_rejected(fake_dbss: FakeDbss) -> None:
    """Changing the body after signing breaks the signature: the fake really checks the payload hash."""
    auth = AkSkAuth(access_key="AKFAKE0000000000000", secret_key="SKFAKEsecretsecretsecretsecretsecret00")
    request = httpx.Request(
        "POST",
        f"{fake_dbss.url}/v1/{PROJECT_ID}/audit/instance/reboot",
        content=b'{"instance_id": "%s"}' % INSTANCE_ID.encode(),
        headers={"Content-Type": "application/json"},
    )
    signed = next(auth.sync_auth_flow(request))
    tampered = httpx.Request(
        "POST", signed.url, headers=signed.headers, content=b'{"instance_id": "%s"}' % ("f" * 32).encode()
    )
    with httpx.Client() as http:
        response = http.send(tampered)
    assert response.status_code == 401 and response.json()["error_code"] == "APIGW.0301"


def test_secrets_never_appear_in_reprs_errors_or_logs(fake_dbss: FakeDbss, caplog: pytest.LogCaptureFixture) -> None:
    """Token, password and SK stay out of reprs, exception text and log records."""
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        _env_file=None,
        dbss_project_id=PROJECT_ID,
        dbss_endpoint=fake_dbss.url,  # type: ignore[call-arg]
        dbss_iam_endpoint=fake_dbss.url,
        dbss_iam_domain="acme",
        dbss_iam_user="oncall-bot",
        dbss_iam_password=PASSWORD,
    )
    fake_dbss.script("reboot", Answer(500, {"error_code": "DBSS.11000000", "error_msg": "Internal system exception."}))
    with build_client(settings) as client:
        with pytest.raises(DbssApiError) as caught:
            client.reboot(INSTANCE_ID)
        texts = [repr(settings), str(settings), repr(client), repr(client._http.auth), str(caught.value), caplog.text]
    token = fake_dbss.reboot_requests()[0].headers["x-auth-token"]
    for text in texts:
        assert PASSWORD not in text and token not in text
    aksk = AkSkAuth(access_key="AK1", secret_key="SUPERSECRET")
    assert "SUPERSECRET" not in repr(aksk)
