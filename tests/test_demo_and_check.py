"""The terminal demo driven through stdin/stdout, and `python -m bot check` against the fakes."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.check import run as run_check
from bot.config import Settings
from bot.console import blocks_to_text, to_text
from bot.core.redis_state import RedisBackedStore
from bot.core.store import FollowUp
from tests.conftest import INSTANCE_ID, PROJECT_ID
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack

ROOT = Path(__file__).resolve().parent.parent
EU, US, STAGING, LEGACY = (
    "5f1c2a3b4d5e6f708192a3b4c5d6e7f8",
    "0b6e9d2c4a7f4e1b9c3d5a6b7c8d9e0f",
    "7a1b2c3d-4e5f-4061-8293-a4b5c6d7e8f9",
    "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
)
AP = "3c5e7a9b1d2f4e6a8c0b2d4f6a8c0e1f"  # the demo's instance in ap-southeast-1


def demo(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--reboot-seconds", "1.5"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_demo_confirm_shows_card_reboots_and_follows_to_active() -> None:
    """Typing the command shows the card; 'reboot' confirms; the follow-up ends 'back to ACTIVE'."""
    out = demo(f"/dbss-reboot {EU}\nreboot\nquit\n")
    for fragment in [
        "asks to reboot a DBSS audit instance",
        "Instance: audit-prod-eu",
        "Status: ACTIVE",
        "Task: NO_TASK",
        "confirmed by",
        "DBSS accepted the reboot",
        "Following",
        "rebooting",
        f"{EU} in cn-north-4 is back to ACTIVE after",
    ]:
        assert fragment in out, fragment
    assert "<@" not in out and "`" not in out and "&lt;" not in out  # rendered as text, not mrkdwn


def test_demo_cancel_reboots_nothing() -> None:
    out = demo(f"{US}\nno\nhistory\nquit\n")
    assert "Cancelled by" in out and "Nothing was rebooted" in out
    assert "DBSS accepted" not in out and "No reboots on record" in out


def test_demo_refusals_and_errors() -> None:
    """A malformed ID, an instance that is not ACTIVE, and DBSS refusing a reboot, each explained."""
    out = demo(f"not/an/id\n/dbss-reboot {STAGING}\n/dbss-reboot {LEGACY}\nreboot\nlist\nquit\n")
    assert "is not a DBSS instance ID" in out
    assert "is SHUTOFF with task NO_TASK" in out
    assert "DBSS refused the reboot" in out and "DBSS.10020132" in out and "HTTP 400" in out
    assert "audit-prod-eu" in out and "(6, page 1 of 1)" in out


def test_demo_serves_two_regions() -> None:
    """The demo's second region: a card there names it and the reboot is followed; a name found in both regions
    is not guessed; the list shows each instance's region."""
    out = demo(f"/dbss-reboot {AP}\nreboot\naudit-prod-eu\nlist\nquit\n")
    assert (
        "for two regions, cn-north-4 at http://127.0.0.1:" in out and "and ap-southeast-1 at http://127.0.0.1:" in out
    )
    assert "asks to reboot a DBSS audit instance in ap-southeast-1." in out and "Region: ap-southeast-1" in out
    assert f"{AP} in ap-southeast-1 is back to ACTIVE after" in out
    assert "2 DBSS instances are named audit-prod-eu" in out
    assert f"{EU} in cn-north-4" in out and "in ap-southeast-1" in out.split("named audit-prod-eu")[1]
    assert "DBSS audit instances in ap-southeast-1, cn-north-4 (6, page 1 of 1)" in out
    assert f"audit-prod-ap {AP}: ACTIVE / NO_TASK · ap-southeast-1" in out


def test_demo_picker_leads_to_the_card() -> None:
    out = demo("\n".join(["/dbss-reboot", "1", "no", "quit"]) + "\n")
    assert "1. audit-prod-eu" in out and "Instance: audit-prod-eu" in out and "Cancelled by" in out


def test_rendering_mrkdwn_as_text() -> None:
    assert to_text("*x* `y` &lt;!channel&gt; <@UALICE> <https://a.example/x|thread> :warning:") == (
        "x y <!channel> @UALICE thread (https://a.example/x) ⚠️"
    )
    blocks = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Status*\nACTIVE"}]},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Reboot"}}]},
    ]
    assert blocks_to_text(blocks) == "  Status: ACTIVE\n  [ Reboot ]"


def settings_for(tmp_path: Path, dbss: FakeDbss, slack: FakeSlack, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "dbss_project_id": PROJECT_ID,
        "dbss_endpoint": dbss.url,
        "dbss_auth_token": "good-token",
        "dbss_timeout_seconds": 2,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": "s",
        "slack_api_url": f"{slack.url}/api/",
        "bot_allowed_users": "UALICE",
        "bot_state_path": str(tmp_path / "state.sqlite3"),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def check(settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = run_check(settings, out)
    return code, out.getvalue()


def test_check_passes_against_healthy_fakes(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    code, report = check(settings_for(tmp_path, fake_dbss, fake_slack))
    assert code == 0, report
    assert "Slack: OK   bot @dbss-reboot in workspace Acme" in report
    assert f"DBSS: OK   2 audit instance(s) visible in project {PROJECT_ID}" in report
    assert "HTTP mode on port 3000" in report and "All checks passed." in report


def test_check_with_iam_logs_in(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    settings = settings_for(
        tmp_path,
        fake_dbss,
        fake_slack,
        dbss_auth_token=None,
        dbss_iam_endpoint=fake_dbss.url,
        dbss_iam_domain="acme",
        dbss_iam_user="oncall-bot",
        dbss_iam_password="correct horse battery staple",
    )
    code, report = check(settings)
    assert code == 0 and "IAM login: OK" in report
    bad = settings.model_copy(update={"dbss_iam_password": settings.dbss_iam_password.__class__("wrong")})
    code, report = check(bad)
    assert code == 1 and "IAM login: FAIL HTTP 401" in report and "fix: Check DBSS_IAM_DOMAIN" in report
    assert "wrong" not in report.replace("is wrong", "")


def test_check_with_metadata_credentials(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """The report names the agency's temporary credentials, shows they were fetched and worked; without an
    agency bound, it says so with the fix. The temporary SK and token are never printed."""
    settings = settings_for(
        tmp_path,
        fake_dbss,
        fake_slack,
        dbss_auth_token=None,
        dbss_metadata_credentials=True,
        dbss_metadata_endpoint=fake_dbss.url,
    )
    code, report = check(settings)
    assert code == 0, report
    assert (
        "Configuration: OK (DBSS credentials: the agency's temporary AK/SK from the metadata service at "
        f"{fake_dbss.url})" in report
    )
    assert (
        f"Metadata credentials: OK   temporary AK/SK and security token of the agency from {fake_dbss.url}, " in report
    )
    assert re.search(r"valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", report)
    assert "DBSS: OK   2 audit instance(s)" in report
    with fake_dbss.lock:
        keys = list(fake_dbss.temporary_keys.values())
    assert len(keys) == 2 and all(k.secret not in report and k.security_token not in report for k in keys)

    fake_dbss.agency = False
    code, report = check(settings)
    assert code == 1
    assert "Metadata credentials: FAIL the metadata service says no agency is bound to this server" in report
    assert "fix: Bind an agency with DBSS rights" in report


def test_check_with_temporary_keys(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """AK/SK with a security token is named as such; once expired, the fix says temporary keys expire."""
    key = fake_dbss.issue_temporary_key()
    settings = settings_for(
        tmp_path,
        fake_dbss,
        fake_slack,
        dbss_auth_token=None,
        dbss_ak=key.access,
        dbss_sk=key.secret,
        dbss_security_token=key.security_token,
    )
    code, report = check(settings)
    assert code == 0, report
    assert "DBSS credentials: temporary AK/SK with a security token (DBSS_AK, DBSS_SK, DBSS_SECURITY_TOKEN)" in report
    fake_dbss.expire_temporary_keys()
    code, report = check(settings)
    assert code == 1 and "DBSS: FAIL" in report and "APIGW.0307" in report
    assert "temporary keys also need their DBSS_SECURITY_TOKEN, and expire" in report
    assert key.secret not in report and key.security_token not in report


def test_check_reports_redis_and_the_shared_state_it_holds(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, redis_url: str
) -> None:
    """With REDIS_URL: PING, then what replicas share there, counted from keys a RedisBackedStore wrote itself
    (so the check's key names cannot drift from the store's)."""
    settings = settings_for(tmp_path, fake_dbss, fake_slack, redis_url=redis_url)
    code, report = check(settings)
    assert code == 0, report
    assert f"Redis: OK   {redis_url} answers PING; no shared state yet (no replica has used it)\n" in report

    store = RedisBackedStore.from_url(tmp_path / "replica.sqlite3", redis_url)
    try:
        now = time.time()
        store.confirmation_key()
        for nonce in ("n1", "n2"):
            store.claim_confirmation(nonce, instance_id=INSTANCE_ID, user_id="UALICE", decision="confirm")
        store.acquire_lock(
            INSTANCE_ID, owner="UALICE", channel="C1", thread_ts="1.1", correlation_id="c1", ttl_seconds=60
        )
        store.add_followup(FollowUp("c1", INSTANCE_ID, "UALICE", "UALICE", "C1", "1.1", now, now + 600))
        store.record(
            "reboot_result", correlation_id="c1", user_id="UALICE", instance_id=INSTANCE_ID, outcome="accepted"
        )
    finally:
        store.close()
    code, report = check(settings)
    assert code == 0, report
    assert (
        f"Redis: OK   {redis_url} answers PING; shared state: the shared confirmation key, 1 in-flight lock, "
        "1 follow-up (leased by 1 live replica), 2 used confirmations, 1 cooldown, 1 audit entry in the shared trail\n"
    ) in report


def test_check_reports_an_unreachable_redis_without_its_password(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack
) -> None:
    code, report = check(settings_for(tmp_path, fake_dbss, fake_slack, redis_url="redis://:hunter2@127.0.0.1:9/0"))
    assert code == 1
    assert "Redis: FAIL redis://127.0.0.1:9/0: ConnectionError" in report and "fix: Check REDIS_URL" in report
    assert "hunter2" not in report


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"slack_bot_token": "xoxb-nope"},
            ["Slack: FAIL auth.test failed: invalid_auth", "fix: SLACK_BOT_TOKEN is wrong"],
        ),
        ({"dbss_auth_token": "expired"}, ["DBSS: FAIL", "APIGW.0301", "fix: The credentials were refused"]),
        ({"dbss_endpoint": "http://127.0.0.1:9"}, ["DBSS: FAIL", "fix: Check DBSS_ENDPOINT"]),
        ({"slack_signing_secret": None}, ["Slack mode: FAIL HTTP mode without SLACK_SIGNING_SECRET"]),
        ({"bot_state_path": "/proc/nope/state.sqlite3"}, ["State: FAIL", "fix: Point BOT_STATE_PATH"]),
    ],
)
def test_check_reports_each_failure_with_a_fix(
    tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack, overrides: dict[str, object], expected: list[str]
) -> None:
    code, report = check(settings_for(tmp_path, fake_dbss, fake_slack, **overrides))
    assert code == 1, report
    for fragment in expected:
        assert fragment in report, report
    assert "xoxb-nope" not in report and "expired" not in report


def test_check_forbidden_list_names_the_iam_policy(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    fake_dbss.script("list", fake_dbss.gateway_error(403, "APIGW.0302", "The IAM user is not authorized"))
    code, report = check(settings_for(tmp_path, fake_dbss, fake_slack))
    assert code == 1 and "grant the IAM user DBSS read and reboot rights" in report


def test_empty_allow_list_is_a_warning(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    code, report = check(settings_for(tmp_path, fake_dbss, fake_slack, bot_allowed_users=""))
    assert code == 0 and "Allow-list: WARN BOT_ALLOWED_USERS is empty: nobody can reboot" in report


def test_check_command_exit_code(tmp_path: Path, fake_dbss: FakeDbss, fake_slack: FakeSlack) -> None:
    """`python -m bot check` as a process: non-zero when something fails."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DBSS_PROJECT_ID": PROJECT_ID,
        "DBSS_ENDPOINT": fake_dbss.url,
        "DBSS_AUTH_TOKEN": "wrong",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "BOT_STATE_PATH": str(tmp_path / "s.sqlite3"),
        "BOT_ALLOWED_USERS": "UALICE",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "DBSS: FAIL" in done.stdout and "Slack: OK" in done.stdout


def test_standalone_simulator_honours_the_contract(tmp_path: Path) -> None:
    """`python -m bot simulator`: the client lists the demo instances, reboots one, gets DBSS's error for another,
    and a wrong token is refused as the gateway does; AK/SK-signed requests pass, and so do requests signed with
    the temporary key of its metadata service."""
    import re
    import signal
    import socket

    import httpx

    from bot.dbss import AkSkAuth, DbssApiError, DbssClient, MetadataAuth, TokenAuth
    from bot.simulator import DEMO_PROJECT_ID, DEMO_TOKEN

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "simulator", "--port", str(port), "--ak", "AKSIM", "--sk", "SKSIM-secret"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        line = proc.stdout.readline()
        endpoint = re.search(r"DBSS_ENDPOINT=(\S+)", line)
        assert endpoint and endpoint[1] == f"http://127.0.0.1:{port}"
        with DbssClient(
            base_url=endpoint[1], project_id=DEMO_PROJECT_ID, auth=TokenAuth(DEMO_TOKEN), timeout_seconds=5
        ) as c:
            assert {i.name for i in c.list_instances()} == {
                "audit-prod-eu",
                "audit-prod-us",
                "audit-staging",
                "audit-legacy",
            }
            assert c.reboot(EU).request_id
            with pytest.raises(DbssApiError) as caught:
                c.reboot(LEGACY)
            assert caught.value.error_code == "DBSS.10020132"
        with DbssClient(
            base_url=endpoint[1], project_id=DEMO_PROJECT_ID, auth=TokenAuth("nope"), timeout_seconds=5
        ) as c:
            with pytest.raises(DbssApiError) as caught:
                c.list_instances()
            assert caught.value.error_code == "APIGW.0301"
        signed = AkSkAuth(access_key="AKSIM", secret_key="SKSIM-secret", project_id=DEMO_PROJECT_ID)
        with DbssClient(base_url=endpoint[1], project_id=DEMO_PROJECT_ID, auth=signed, timeout_seconds=5) as c:
            assert len(c.list_instances()) == 4
        agency = MetadataAuth(metadata_client=httpx.Client(base_url=endpoint[1], timeout=5), project_id=DEMO_PROJECT_ID)
        with DbssClient(base_url=endpoint[1], project_id=DEMO_PROJECT_ID, auth=agency, timeout_seconds=5) as c:
            assert len(c.list_instances()) == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
