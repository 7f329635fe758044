"""Settings: one clear message naming every offending variable, and exactly one kind of credential."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings, secrets_dir

PID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "DBSS_PROJECT_ID",
        "DBSS_AUTH_TOKEN",
        "DBSS_AK",
        "DBSS_SK",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "DBSS_IAM_DOMAIN",
        "DBSS_IAM_USER",
        "DBSS_IAM_PASSWORD",
        "BOT_ALLOWED_USERS",
        "DBSS_TIMEOUT_SECONDS",
        "DBSS_SECURITY_TOKEN",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "DBSS_IAM_ENDPOINT",
        "HUAWEICLOUD_SDK_IAM_ENDPOINT",
        "DBSS_METADATA_CREDENTIALS",
        "DBSS_METADATA_ENDPOINT",
        "LOG_LEVEL",
        "BOT_SECRETS_DIR",
        "SLACK_BOT_TOKEN",
    ]:
        monkeypatch.delenv(name, raising=False)


def load(**kwargs: object) -> Settings:
    kwargs.setdefault("_secrets_dir", None)  # never whatever /run/secrets the test machine has
    return load_settings(_env_file=None, **kwargs)


def test_token_settings_load_with_defaults() -> None:
    """A project ID and a token are enough; the endpoint follows the region."""
    s = load(dbss_project_id=PID, dbss_auth_token="zq-secret-9", dbss_region="ap-southeast-1")
    assert s.credential_kind == "token"
    assert s.dbss_base_url == "https://dbss.ap-southeast-1.myhuaweicloud.com"
    assert s.dbss_iam_endpoint == "https://iam.myhuaweicloud.com"
    assert s.bot_confirm_ttl_seconds == 300 and s.port == 3000
    assert "zq-secret-9" not in repr(s)


def test_environment_names_are_the_public_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    """DBSS_* and the HUAWEICLOUD_SDK_AK/SK aliases are read from the environment; lists split on commas."""
    monkeypatch.setenv("DBSS_PROJECT_ID", PID)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK1")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK1")
    monkeypatch.setenv("BOT_ALLOWED_USERS", " U1, W2 ,,")
    monkeypatch.setenv("DBSS_TIMEOUT_SECONDS", "2.5")
    s = load()
    assert s.credential_kind == "aksk" and s.dbss_ak == "AK1"
    assert s.dbss_sk is not None and s.dbss_sk.get_secret_value() == "SK1"
    assert s.bot_allowed_users == ("U1", "W2")
    assert s.dbss_timeout_seconds == 2.5


def test_env_file_is_read(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional .env file supplies settings."""
    env = tmp_path / ".env"  # type: ignore[operator]
    env.write_text(f"DBSS_PROJECT_ID={PID}\nDBSS_AUTH_TOKEN=from-file\n")
    s = load_settings(_env_file=str(env))
    assert s.dbss_auth_token is not None and s.dbss_auth_token.get_secret_value() == "from-file"


def test_missing_everything_names_each_variable() -> None:
    """No project and no credential: one message naming DBSS_PROJECT_ID and the credential choice."""
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert "DBSS_PROJECT_ID is required" in message
    assert "Traceback" not in message


def test_no_credential_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"exactly one kind of DBSS credential.*found none"):
        load(dbss_project_id=PID)


def test_mixed_credentials_name_the_variables() -> None:
    """A token and AK/SK together are refused, naming both kinds."""
    with pytest.raises(ConfigError) as caught:
        load(dbss_project_id=PID, dbss_auth_token="t", dbss_ak="a", dbss_sk="s")
    assert "DBSS_AUTH_TOKEN" in str(caught.value) and "DBSS_AK, DBSS_SK" in str(caught.value)


def test_half_configured_credentials_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="missing DBSS_SK"):
        load(dbss_project_id=PID, dbss_ak="a")
    with pytest.raises(ConfigError, match="missing DBSS_IAM_USER, DBSS_IAM_PASSWORD"):
        load(dbss_project_id=PID, dbss_iam_domain="acme")


def test_every_invalid_value_is_listed_with_what_is_expected() -> None:
    """Several bad values give one message with a line each, saying what is expected, never the secret."""
    with pytest.raises(ConfigError) as caught:
        load(
            dbss_project_id="bad/id",
            dbss_auth_token="s3cret-token",
            dbss_timeout_seconds="soon",
            port="99999",
            dbss_endpoint="dbss.example.com",
        )
    message = str(caught.value)
    for name in ["DBSS_PROJECT_ID", "DBSS_TIMEOUT_SECONDS", "PORT", "DBSS_ENDPOINT"]:
        assert f"  - {name}: " in message
    assert "expected a TCP port" in message
    assert "s3cret-token" not in message and "soon" not in message


def test_huawei_sdk_names_for_temporary_keys_project_and_iam(monkeypatch: pytest.MonkeyPatch) -> None:
    """HUAWEICLOUD_SDK_SECURITY_TOKEN, _PROJECT_ID and _IAM_ENDPOINT are read like the DBSS_* names."""
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PID)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK1")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK1")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", "tok-1")
    monkeypatch.setenv("HUAWEICLOUD_SDK_IAM_ENDPOINT", "https://iam.eu-west-101.myhuaweicloud.eu")
    s = load()
    assert s.dbss_project_id == PID and s.credential_kind == "aksk"
    assert s.dbss_security_token is not None and s.dbss_security_token.get_secret_value() == "tok-1"
    assert s.dbss_iam_endpoint == "https://iam.eu-west-101.myhuaweicloud.eu"
    assert "tok-1" not in repr(s)
    monkeypatch.setenv("DBSS_SECURITY_TOKEN", "tok-2")
    assert load().dbss_security_token.get_secret_value() == "tok-2"  # type: ignore[union-attr]


def test_metadata_credentials_are_the_fourth_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """DBSS_METADATA_CREDENTIALS=true alone is a credential; its endpoint defaults to the link-local address."""
    monkeypatch.setenv("DBSS_PROJECT_ID", PID)
    monkeypatch.setenv("DBSS_METADATA_CREDENTIALS", "true")
    s = load()
    assert s.credential_kind == "metadata" and s.dbss_metadata_endpoint == "http://169.254.169.254"
    monkeypatch.setenv("DBSS_METADATA_CREDENTIALS", "false")
    assert load(dbss_auth_token="t").credential_kind == "token"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"dbss_metadata_credentials": "true", "dbss_ak": "a", "dbss_sk": "s"},
            "found AK/SK (DBSS_AK, DBSS_SK) and metadata credentials (DBSS_METADATA_CREDENTIALS=true)",
        ),
        (
            {"dbss_metadata_credentials": True, "dbss_auth_token": "t"},
            "found token (DBSS_AUTH_TOKEN) and metadata credentials",
        ),
        (
            {"dbss_security_token": "sekrit-st-9"},
            "DBSS_SECURITY_TOKEN) goes with its temporary DBSS_AK and DBSS_SK; missing DBSS_AK, DBSS_SK",
        ),
        ({"dbss_security_token": "sekrit-st-9", "dbss_ak": "a"}, "missing DBSS_SK"),
        (
            {
                "dbss_security_token": "sekrit-st-9",
                "dbss_iam_domain": "d",
                "dbss_iam_user": "u",
                "dbss_iam_password": "p",
            },
            "found AK/SK (DBSS_AK, DBSS_SK, DBSS_SECURITY_TOKEN) and IAM password",
        ),
    ],
)
def test_exactly_one_kind_of_credential_with_temporary_and_metadata_kinds(
    kwargs: dict[str, object], message: str
) -> None:
    """Metadata credentials mixed with another kind, or a security token without its keys, are refused."""
    with pytest.raises(ConfigError) as caught:
        load(dbss_project_id=PID, **kwargs)
    assert message in str(caught.value)
    assert "sekrit-st-9" not in str(caught.value)


def test_metadata_endpoint_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match=r"DBSS_METADATA_ENDPOINT: .*must be a URL"):
        load(dbss_project_id=PID, dbss_metadata_credentials=True, dbss_metadata_endpoint="169.254.169.254")


def test_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL defaults to INFO, takes any case, and names what it expects when wrong."""
    assert load(dbss_project_id=PID, dbss_auth_token="t").log_level == "INFO"
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert load(dbss_project_id=PID, dbss_auth_token="t").log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError, match=r"LOG_LEVEL: .*\(expected DEBUG, INFO, WARNING or ERROR\)"):
        load(dbss_project_id=PID, dbss_auth_token="t")


def test_a_blank_credential_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """DBSS_AUTH_TOKEN set to blank next to IAM login: IAM login is the kind, not an empty token."""
    monkeypatch.setenv("DBSS_AUTH_TOKEN", " ")
    monkeypatch.setenv("DBSS_SECURITY_TOKEN", "")
    s = load(dbss_project_id=PID, dbss_iam_domain="acme", dbss_iam_user="u", dbss_iam_password="p")
    assert s.credential_kind == "iam" and s.dbss_auth_token is None and s.dbss_security_token is None


def test_secrets_are_read_from_files_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BOT_SECRETS_DIR holds one file per setting (Docker secrets, a Kubernetes Secret volume): names in either
    case, trailing newline stripped; a variable set in the environment wins over its file."""
    (tmp_path / "slack_bot_token").write_text("xoxb-from-file\n")
    (tmp_path / "DBSS_SK").write_text("sk-from-file\n")
    (tmp_path / "dbss_ak").write_text("ak-from-file")
    (tmp_path / "..data").mkdir()  # what a Kubernetes Secret volume also holds
    monkeypatch.setenv("BOT_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("DBSS_PROJECT_ID", PID)
    s = load_settings(_env_file=None)
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value() == "xoxb-from-file"
    assert s.dbss_sk is not None and s.dbss_sk.get_secret_value() == "sk-from-file"
    assert s.dbss_ak == "ak-from-file" and s.credential_kind == "aksk"
    monkeypatch.setenv("DBSS_SK", "sk-from-env")
    assert load_settings(_env_file=None).dbss_sk.get_secret_value() == "sk-from-env"  # type: ignore[union-attr]


def test_secrets_dir_defaults_to_run_secrets_when_it_exists(tmp_path: Path) -> None:
    """Without BOT_SECRETS_DIR, /run/secrets is read if it exists; a BOT_SECRETS_DIR that is not a directory is
    a configuration error naming it."""
    run_secrets = tmp_path / "run-secrets"
    assert secrets_dir({}, default=run_secrets) is None
    run_secrets.mkdir()
    assert secrets_dir({}, default=run_secrets) == run_secrets
    assert secrets_dir({"BOT_SECRETS_DIR": str(tmp_path)}, default=run_secrets) == tmp_path
    with pytest.raises(ConfigError, match=r"BOT_SECRETS_DIR: .*/nope is not a directory"):
        secrets_dir({"BOT_SECRETS_DIR": str(tmp_path / "nope")}, default=run_secrets)
