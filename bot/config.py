"""Settings: the only code that reads the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]
DEFAULT_SECRETS_DIR = Path("/run/secrets")  # Docker and Compose secrets; Kubernetes mounts anywhere: BOT_SECRETS_DIR
CREDENTIAL_FIELDS = (
    "dbss_auth_token",
    "dbss_ak",
    "dbss_sk",
    "dbss_security_token",
    "dbss_iam_domain",
    "dbss_iam_user",
    "dbss_iam_password",
)
DEFAULT_METADATA_ENDPOINT = "http://169.254.169.254"  # the ECS/CCE metadata service's link-local address
DEFAULT_STATE_PATH = "dbss-reboot-bot.sqlite3"
DEFAULT_REGION = "cn-north-4"
REGION_RE = re.compile(r"[a-z0-9-]{2,40}")
PROJECT_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
CHANNEL_RE = re.compile(r"[CGD][A-Z0-9]{2,30}")


@dataclass(frozen=True, slots=True)
class Target:
    """One (region, project) the bot serves, and the DBSS endpoint that serves it.

    `key` names it in the state (follow-ups, confirmations); `label` is what people read: the region, or the
    region and the project's first characters when two projects of one region are served."""

    region: str
    project_id: str
    endpoint: str
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.region)

    @property
    def key(self) -> str:
        return f"{self.region}:{self.project_id}"


def default_endpoint(region: str) -> str:
    return f"https://dbss.{region}.myhuaweicloud.com"


class ConfigError(Exception):
    """The configuration is unusable; the message names every offending variable."""


class Settings(BaseSettings):
    """Every setting of the bot, read once from the environment and an optional `.env` file."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    # Huawei Cloud DBSS
    # One project: DBSS_PROJECT_ID (and DBSS_REGION, DBSS_ENDPOINT). Several: DBSS_TARGETS. Not both.
    dbss_project_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        validation_alias=AliasChoices("dbss_project_id", "huaweicloud_sdk_project_id"),
    )
    dbss_region: str = Field(default=DEFAULT_REGION, pattern=r"^[a-z0-9-]{2,40}$")
    dbss_endpoint: str | None = None
    # region:project_id[@endpoint], comma-separated (checked, with every bad entry named, by _target_problems).
    dbss_targets: str | None = None
    dbss_reboot_path: Literal["current", "deprecated"] = "current"
    dbss_auth_token: SecretStr | None = None
    dbss_ak: str | None = Field(default=None, validation_alias=AliasChoices("dbss_ak", "huaweicloud_sdk_ak"))
    dbss_sk: SecretStr | None = Field(default=None, validation_alias=AliasChoices("dbss_sk", "huaweicloud_sdk_sk"))
    dbss_security_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("dbss_security_token", "huaweicloud_sdk_security_token")
    )
    dbss_metadata_credentials: bool = False
    dbss_metadata_endpoint: str = DEFAULT_METADATA_ENDPOINT
    dbss_iam_endpoint: str = Field(
        default="https://iam.myhuaweicloud.com",
        validation_alias=AliasChoices("dbss_iam_endpoint", "huaweicloud_sdk_iam_endpoint"),
    )
    dbss_iam_domain: str | None = None
    dbss_iam_user: str | None = None
    dbss_iam_password: SecretStr | None = None
    dbss_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # How long one Slack Web API call may take. A message whose call timed out is looked up before it is
    # posted again, so a short timeout never doubles a message.
    slack_timeout_seconds: int = Field(default=10, ge=1, le=60)
    port: int = Field(default=3000, ge=1, le=65535)
    # Socket Mode has no HTTP server for Slack: /healthz, /readyz and /metrics get a port of their own.
    bot_health_port: int = Field(default=8080, ge=1, le=65535)

    # Policy and state
    bot_allowed_users: CommaList = ()
    bot_allowed_channels: CommaList = ()
    # channel_id=region, comma-separated: such a channel reaches only the regions named for it.
    bot_channel_targets: str | None = None
    bot_confirm_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    # The key that signs the Reboot buttons, one for the whole deployment (a file in the secrets directory, or the
    # environment); without it, one is derived from SLACK_APP_TOKEN or SLACK_SIGNING_SECRET. After a rotation the
    # previous key still verifies the cards signed with it (keep it for one BOT_CONFIRM_TTL_SECONDS).
    bot_confirm_key: SecretStr | None = Field(default=None, min_length=32)
    bot_confirm_key_previous: SecretStr | None = Field(default=None, min_length=32)
    bot_state_path: str = DEFAULT_STATE_PATH
    bot_poll_interval_seconds: float = Field(default=10.0, gt=0, le=300)
    bot_poll_timeout_seconds: float = Field(default=600.0, gt=0, le=7200)
    bot_require_second_approver: bool = False
    bot_cooldown_seconds: float = Field(default=300.0, ge=0, le=86400)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    redis_url: SecretStr | None = None
    # postgresql://user:password@host:5432/dbname: the shared state in PostgreSQL instead of Redis.
    database_url: SecretStr | None = None
    # Days the audit trail is kept (0: for good); older entries are trimmed in the background, a batch at a time.
    bot_audit_retention_days: int = Field(default=400, ge=0, le=36500)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a URL starting with postgresql://")
        return value

    @field_validator("bot_allowed_users", "bot_allowed_channels", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(*CREDENTIAL_FIELDS, "dbss_targets", "bot_channel_targets", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """DBSS_AUTH_TOKEN= (a blank line in a manifest) is no token, as the one-kind check counts it; a blank
        DBSS_TARGETS is no targets (the single-project settings apply)."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("dbss_endpoint", "dbss_iam_endpoint", "dbss_metadata_endpoint", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be a URL starting with https:// (or http:// for a local fake)")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _exactly_one_credential(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Check the credentials even when other fields fail, so one message names every problem."""
        raw = data if isinstance(data, dict) else {}
        problems = [p for p in (_credential_problem(raw), *_target_problems(raw)) if p is not None]
        try:
            settings = handler(data)
        except ValidationError as err:
            if not problems:
                raise
            details: list[InitErrorDetails] = [
                {"type": e["type"], "loc": e["loc"], "input": e["input"], "ctx": e.get("ctx", {})} for e in err.errors()
            ]
            details += [{"type": PydanticCustomError("settings", p), "loc": (), "input": None} for p in problems]
            raise ValidationError.from_exception_data(err.title, details, hide_input=True) from None
        if problems:
            raise ValueError("\n  - ".join(problems))
        return settings

    @property
    def credential_kind(self) -> Literal["token", "aksk", "iam", "metadata"]:
        if self.dbss_auth_token is not None:
            return "token"
        if self.dbss_ak is not None:
            return "aksk"
        if self.dbss_metadata_credentials:
            return "metadata"
        return "iam"

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every (region, project) served: DBSS_TARGETS, or the one DBSS_PROJECT_ID names."""
        if self.dbss_targets is None:
            assert self.dbss_project_id is not None  # _target_problems made sure of one form
            endpoint = self.dbss_endpoint or default_endpoint(self.dbss_region)
            return (Target(self.dbss_region, self.dbss_project_id, endpoint),)
        parsed = [_parse_target(entry) for entry in _entries(self.dbss_targets)]
        targets = [t for t in parsed if isinstance(t, Target)]
        regions = [t.region for t in targets]
        return tuple(
            Target(t.region, t.project_id, t.endpoint, f"{t.region}/{t.project_id}")
            if regions.count(t.region) > 1
            else t
            for t in targets
        )

    @property
    def channel_targets(self) -> dict[str, frozenset[str]]:
        """BOT_CHANNEL_TARGETS: each channel named there, and the regions it may reach."""
        scoped: dict[str, set[str]] = {}
        for entry in _entries(self.bot_channel_targets or ""):
            channel, _, region = entry.partition("=")
            scoped.setdefault(channel.strip(), set()).add(region.strip())
        return {channel: frozenset(regions) for channel, regions in scoped.items()}

    @property
    def dbss_project(self) -> str:
        """The project, when there is one (messages of the single-project case); else the targets' labels."""
        targets = self.targets
        return targets[0].project_id if len(targets) == 1 else ", ".join(t.label for t in targets)

    @property
    def dbss_base_url(self) -> str:
        return self.targets[0].endpoint

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def confirmation_secrets(self) -> tuple[str, ...]:
        """What the confirmation keys are derived from, the signing one first; () when nothing is configured (the
        demo, a console without Slack settings: the state store's own key serves)."""
        if self.bot_confirm_key is not None:
            previous = self.bot_confirm_key_previous
            return (self.bot_confirm_key.get_secret_value(), *([previous.get_secret_value()] if previous else []))
        source = self.slack_app_token or self.slack_signing_secret
        return (source.get_secret_value(),) if source is not None else ()


_TRUE = {"1", "true", "t", "yes", "y", "on"}


def _credential_problem(raw: dict[str, Any]) -> str | None:
    """What is wrong with the DBSS credentials among the raw settings, or None."""

    def given(name: str) -> bool:
        value = raw.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

    token = given("dbss_auth_token")
    aksk = [n for n in ("dbss_ak", "dbss_sk") if given(n)]
    security_token = given("dbss_security_token")
    iam = [n for n in ("dbss_iam_domain", "dbss_iam_user", "dbss_iam_password") if given(n)]
    flag = raw.get("dbss_metadata_credentials")
    metadata = flag is True or (isinstance(flag, str) and flag.strip().lower() in _TRUE)
    chosen = [
        label
        for label, present in (
            ("token (DBSS_AUTH_TOKEN)", token),
            (
                "AK/SK (DBSS_AK, DBSS_SK" + (", DBSS_SECURITY_TOKEN)" if security_token else ")"),
                bool(aksk) or security_token,
            ),
            ("IAM password (DBSS_IAM_DOMAIN, DBSS_IAM_USER, DBSS_IAM_PASSWORD)", bool(iam)),
            ("metadata credentials (DBSS_METADATA_CREDENTIALS=true)", metadata),
        )
        if present
    ]
    if len(chosen) != 1:
        return (
            "configure exactly one kind of DBSS credential: DBSS_AUTH_TOKEN, or DBSS_AK with DBSS_SK (and "
            "DBSS_SECURITY_TOKEN for temporary keys), or DBSS_IAM_DOMAIN with DBSS_IAM_USER and DBSS_IAM_PASSWORD, "
            f"or DBSS_METADATA_CREDENTIALS=true; found {' and '.join(chosen) or 'none'}"
        )
    if (aksk or security_token) and len(aksk) != 2:
        absent = ", ".join(n.upper() for n in ("dbss_ak", "dbss_sk") if n not in aksk)
        if security_token:
            return (
                f"a security token (DBSS_SECURITY_TOKEN) goes with its temporary DBSS_AK and DBSS_SK; missing {absent}"
            )
        return f"AK/SK signing needs both DBSS_AK and DBSS_SK; missing {absent}"
    if iam and len(iam) != 3:
        missing = [n.upper() for n in ("dbss_iam_domain", "dbss_iam_user", "dbss_iam_password") if n not in iam]
        return f"IAM password login needs all three variables; missing {', '.join(missing)}"
    return None


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_target(entry: str) -> Target | str:
    """A Target from `region:project_id[@endpoint]`, or what is wrong with the entry."""
    head, at, endpoint = entry.partition("@")
    region, colon, project = head.partition(":")
    if not colon or not REGION_RE.fullmatch(region.strip()) or not PROJECT_RE.fullmatch(project.strip()):
        return f"{entry!r} is not region:project_id"
    if at and (not endpoint.strip().startswith(("https://", "http://")) or not urlsplit(endpoint.strip()).hostname):
        return f"{entry!r}: the endpoint after @ must be a URL starting with https:// (or http:// for a local fake)"
    region, project = region.strip(), project.strip()
    return Target(region, project, endpoint.strip().rstrip("/") if at else default_endpoint(region))


def _target_problems(raw: dict[str, Any]) -> list[str]:
    """What is wrong with DBSS_TARGETS, the single-project settings beside it, and BOT_CHANNEL_TARGETS."""

    def given(*names: str) -> list[str]:
        return [n for n in names if isinstance(raw.get(n), str) and raw[n].strip()]

    problems: list[str] = []
    targets_text = raw.get("dbss_targets")
    regions: set[str] = set()
    if isinstance(targets_text, str) and targets_text.strip():
        single = given("dbss_project_id", "huaweicloud_sdk_project_id", "dbss_region", "dbss_endpoint")
        if single:
            # The project ID may have come as HUAWEICLOUD_SDK_PROJECT_ID, which the raw settings do not tell apart.
            spelled = {"dbss_project_id": "DBSS_PROJECT_ID (or HUAWEICLOUD_SDK_PROJECT_ID)"}
            names = ", ".join(spelled.get(n, n.upper()) for n in single)
            problems.append(f"set DBSS_TARGETS (several regions and projects) or {names} (one project), not both")
        bad, seen, targets = [], set(), []
        for entry in _entries(targets_text):
            parsed = _parse_target(entry)
            if isinstance(parsed, str):
                bad.append(parsed)
            elif parsed.key in seen:
                bad.append(f"{entry.partition('@')[0]!r} is listed twice")
            else:
                seen.add(parsed.key)
                targets.append(parsed)
        if bad:
            problems.append(
                "DBSS_TARGETS: "
                + "; ".join(bad)
                + " (expected region:project_id or region:project_id@https://endpoint,"
                " comma-separated)"
            )
        elif not targets:
            problems.append("DBSS_TARGETS is empty: list region:project_id pairs, or set DBSS_PROJECT_ID")
        if len(targets) > 1 and given("dbss_auth_token"):
            problems.append(
                "DBSS_AUTH_TOKEN is a token scoped to one project, so it cannot serve several DBSS_TARGETS: use AK/SK "
                "(DBSS_AK, DBSS_SK), IAM password login (DBSS_IAM_DOMAIN, DBSS_IAM_USER, DBSS_IAM_PASSWORD: one "
                "token per project) or DBSS_METADATA_CREDENTIALS=true"
            )
        regions = set() if bad else {t.region for t in targets}  # with bad entries, no region is judged unserved
    elif not given("dbss_project_id", "huaweicloud_sdk_project_id"):
        problems.append(
            "DBSS_PROJECT_ID is required: the Huawei Cloud project ID (letters, digits and '-'); "
            "or DBSS_TARGETS (region:project_id,...) to serve several regions and projects"
        )
    else:
        region = raw.get("dbss_region")
        regions = {region.strip() if isinstance(region, str) else DEFAULT_REGION}
    scoping = raw.get("bot_channel_targets")
    if isinstance(scoping, str) and scoping.strip():
        bad = []
        for entry in _entries(scoping):
            channel, eq, region = (part.strip() for part in entry.partition("="))
            if not eq or not CHANNEL_RE.fullmatch(channel) or not REGION_RE.fullmatch(region):
                bad.append(f"{entry!r} is not channel_id=region")
            elif regions and region not in regions:
                bad.append(f"{entry!r} names a region that is not served ({', '.join(sorted(regions))})")
        if bad:
            problems.append("BOT_CHANNEL_TARGETS: " + "; ".join(bad))
    return problems


_EXPECTED = {
    "dbss_project_id": "the Huawei Cloud project ID (letters, digits and '-')",
    "dbss_region": "a region ID such as cn-north-4",
    "dbss_reboot_path": "'current' or 'deprecated'",
    "dbss_timeout_seconds": "seconds, a number above 0 and at most 120",
    "port": "a TCP port, 1 to 65535",
    "bot_health_port": "a TCP port, 1 to 65535",
    "bot_confirm_ttl_seconds": "seconds, 10 to 3600",
    "bot_confirm_key": "a random secret of at least 32 characters (e.g. `openssl rand -hex 32`)",
    "bot_confirm_key_previous": "the key used before the current BOT_CONFIRM_KEY, at least 32 characters",
    "bot_poll_interval_seconds": "seconds, above 0 and at most 300",
    "bot_poll_timeout_seconds": "seconds, above 0 and at most 7200",
    "bot_require_second_approver": "true or false",
    "bot_cooldown_seconds": "seconds, 0 to 86400",
    "log_format": "'json' or 'text'",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "dbss_metadata_credentials": "true or false",
    "redis_url": "a URL such as redis://host:6379/0",
    "database_url": "a URL such as postgresql://bot:password@db:5432/dbss_bot",
    "bot_audit_retention_days": "days, 0 (keep everything) to 36500",
}


# Huawei's SDK names, accepted as aliases; messages name the bot's own.
_ALIASES = {
    "HUAWEICLOUD_SDK_AK": "DBSS_AK",
    "HUAWEICLOUD_SDK_SK": "DBSS_SK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN": "DBSS_SECURITY_TOKEN",
    "HUAWEICLOUD_SDK_PROJECT_ID": "DBSS_PROJECT_ID",
    "HUAWEICLOUD_SDK_IAM_ENDPOINT": "DBSS_IAM_ENDPOINT",
}


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "configuration"
    name = str(loc[0]).upper()
    return _ALIASES.get(name, name)


def describe(error: ValidationError) -> str:
    """One readable message naming every offending variable and what it expects."""
    lines = ["Invalid configuration:"]
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        expected = _EXPECTED.get(str(loc[0]) if loc else "", "")
        if not loc:
            lines.append(f"  - {item['msg'].removeprefix('Value error, ')}")
        elif item["type"] == "missing":
            lines.append(f"  - {_env_name(loc)} is required" + (f": {expected}" if expected else ""))
        else:
            hint = f" (expected {expected})" if expected else ""
            lines.append(f"  - {_env_name(loc)}: {item['msg'].removeprefix('Value error, ')}{hint}")
    return "\n".join(lines)


def secrets_dir(environ: Mapping[str, str] = os.environ, default: Path = DEFAULT_SECRETS_DIR) -> Path | None:
    """Where secrets are read from as files: BOT_SECRETS_DIR, else /run/secrets when it exists, else nowhere."""
    configured = environ.get("BOT_SECRETS_DIR", "").strip()
    if configured:
        if not Path(configured).is_dir():
            raise ConfigError(f"Invalid configuration:\n  - BOT_SECRETS_DIR: {configured} is not a directory")
        return Path(configured)
    return default if default.is_dir() else None


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise ConfigError with one clear message (no traceback wall).

    Sources, first wins (pydantic-settings' order): the environment, the .env file, one file per setting in
    the secrets directory (named like the variable, e.g. dbss_sk or DBSS_SK), the defaults.
    """
    if "_secrets_dir" not in overrides:
        overrides["_secrets_dir"] = secrets_dir()
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise ConfigError(describe(err)) from None


class StateSettings(BaseSettings):
    """Only where the state lives (as Settings reads it): `python -m bot audit` needs no Slack or DBSS credentials."""

    model_config = Settings.model_config

    bot_state_path: str = DEFAULT_STATE_PATH
    redis_url: SecretStr | None = None
    database_url: SecretStr | None = None


def load_state_settings() -> StateSettings:
    """BOT_STATE_PATH and REDIS_URL from the same sources as load_settings, or ConfigError."""
    try:
        return StateSettings(_secrets_dir=secrets_dir())
    except ValidationError as err:
        raise ConfigError(describe(err)) from None


def require_slack(settings: Settings, *, http: bool) -> None:
    """Slack settings the chosen mode needs, named in one message if missing."""
    missing = [] if settings.slack_bot_token else ["SLACK_BOT_TOKEN (the bot token, xoxb-...)"]
    if http and not settings.slack_signing_secret:
        missing.append("SLACK_SIGNING_SECRET (required in HTTP mode; or set SLACK_APP_TOKEN for Socket Mode)")
    if not http and not settings.slack_app_token:
        missing.append("SLACK_APP_TOKEN (the app-level token, xapp-..., required in Socket Mode)")
    if missing:
        raise ConfigError("Invalid configuration:\n" + "\n".join(f"  - {m} is required" for m in missing))
