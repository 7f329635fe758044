"""`python -m bot check` with several targets: each one logged in to (IAM) and listed, on a line of its own."""

from __future__ import annotations

import io
from pathlib import Path

from bot.check import run as run_check
from bot.config import Settings
from tests.fakes.dbss import FakeDbss
from tests.fakes.slack import BOT_TOKEN, FakeSlack

P1 = "0f3b00000000000000000000000000a1"
P2 = "9c1d00000000000000000000000000b2"
USERS = {("acme", "oncall-bot"): "correct horse battery staple"}


def settings(tmp_path: Path, north: FakeDbss, south: FakeDbss, slack: FakeSlack) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        dbss_targets=f"cn-north-4:{P1}@{north.url},ap-southeast-1:{P2}@{south.url}",
        dbss_iam_domain="acme",
        dbss_iam_user="oncall-bot",
        dbss_iam_password="correct horse battery staple",
        dbss_iam_endpoint=north.url,
        dbss_timeout_seconds=2,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret="s",
        slack_api_url=f"{slack.url}/api/",
        bot_allowed_users="UALICE",
        bot_state_path=str(tmp_path / "state.sqlite3"),
    )


def test_check_reports_every_target(tmp_path: Path, fake_slack: FakeSlack) -> None:
    north = FakeDbss(project_id=P1, region="cn-north-4", iam_users=USERS)
    south = FakeDbss(project_id=P2, region="ap-southeast-1", cloud=north.cloud)
    north.add_instance("5b1c0a4e9d2f4a7b8c6d5e4f3a2b1c01", "audit-north")
    south.add_instance("7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e02", "audit-south")
    south.add_instance("7e2d1b5f0a3c4b8d9e7f6a5b4c3d2e03", "audit-south-2")
    with north, south:
        out = io.StringIO()
        assert run_check(settings(tmp_path, north, south, fake_slack), out) == 0, out.getvalue()
        report = out.getvalue()
        assert f"IAM login (cn-north-4): OK   token issued for oncall-bot in project {P1}" in report
        assert f"IAM login (ap-southeast-1): OK   token issued for oncall-bot in project {P2}" in report
        assert f"DBSS (cn-north-4): OK   1 audit instance(s) visible in project {P1} at {north.url}" in report
        assert f"DBSS (ap-southeast-1): OK   2 audit instance(s) visible in project {P2} at {south.url}" in report
        assert dict(north.logins_by_project) == {P1: 2, P2: 2}  # the check's own login, then the client's

        south.outages[P2] = south.gateway_error(502, "APIGW.0610", "No backend available")
        out = io.StringIO()
        assert run_check(settings(tmp_path, north, south, fake_slack), out) == 1
        report = out.getvalue()
        assert "DBSS (cn-north-4): OK" in report
        assert "DBSS (ap-southeast-1): FAIL listing instances at" in report and "502" in report
