"""Settings: the only code that reads the environment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[tuple[str, ...], NoDecode]


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
    dbss_project_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    dbss_region: str = Field(default="cn-north-4", pattern=r"^[a-z0-9-]{2,40}$")
    dbss_endpoint: str | None = None
    dbss_reboot_path: Literal["current", "deprecated"] = "current"
    dbss_auth_token: SecretStr | None = None
    dbss_ak: str | None = Field(default=None, validation_alias=AliasChoices("dbss_ak", "huaweicloud_sdk_ak"))
    dbss_sk: SecretStr | None = Field(default=None, validation_alias=AliasChoices("dbss_sk", "huaweicloud_sdk_sk"))
    dbss_iam_endpoint: str = "https://iam.myhuaweicloud.com"
    dbss_iam_domain: str | None = None
    dbss_iam_user: str | None = None
    dbss_iam_password: SecretStr | None = None
    dbss_timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    port: int = Field(default=3000, ge=1, le=65535)

    # Policy and state
    bot_allowed_users: CommaList = ()
    bot_allowed_channels: CommaList = ()
    bot_confirm_ttl_seconds: int = Field(default=300, ge=10, le=3600)
    bot_state_path: str = "dbss-reboot-bot.sqlite3"

    @field_validator("bot_allowed_users", "bot_allowed_channels", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("dbss_endpoint", "dbss_iam_endpoint", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be a URL starting with https:// (or http:// for a local fake)")
        return value

    @model_validator(mode="after")
    def _exactly_one_credential(self) -> Settings:
        kinds = {
            "token (DBSS_AUTH_TOKEN)": self.dbss_auth_token is not None,
            "AK/SK (DBSS_AK, DBSS_SK)": self.dbss_ak is not None or self.dbss_sk is not None,
            "IAM password (DBSS_IAM_DOMAIN, DBSS_IAM_USER, DBSS_IAM_PASSWORD)": any(
                v is not None for v in (self.dbss_iam_domain, self.dbss_iam_user, self.dbss_iam_password)
            ),
        }
        chosen = [name for name, present in kinds.items() if present]
        if len(chosen) != 1:
            found = "none" if not chosen else " and ".join(chosen)
            raise ValueError(
                "configure exactly one kind of DBSS credential: DBSS_AUTH_TOKEN, or DBSS_AK with DBSS_SK, "
                f"or DBSS_IAM_DOMAIN with DBSS_IAM_USER and DBSS_IAM_PASSWORD; found {found}"
            )
        if self.dbss_ak is not None or self.dbss_sk is not None:
            missing = [n for n, v in (("DBSS_AK", self.dbss_ak), ("DBSS_SK", self.dbss_sk)) if v is None]
            if missing:
                raise ValueError(f"AK/SK signing needs both DBSS_AK and DBSS_SK; missing {', '.join(missing)}")
        if kinds["IAM password (DBSS_IAM_DOMAIN, DBSS_IAM_USER, DBSS_IAM_PASSWORD)"]:
            missing = [
                n
                for n, v in (
                    ("DBSS_IAM_DOMAIN", self.dbss_iam_domain),
                    ("DBSS_IAM_USER", self.dbss_iam_user),
                    ("DBSS_IAM_PASSWORD", self.dbss_iam_password),
                )
                if v is None
            ]
            if missing:
                raise ValueError(f"IAM password login needs all three variables; missing {', '.join(missing)}")
        return self

    @property
    def credential_kind(self) -> Literal["token", "aksk", "iam"]:
        if self.dbss_auth_token is not None:
            return "token"
        if self.dbss_ak is not None:
            return "aksk"
        return "iam"

    @property
    def dbss_base_url(self) -> str:
        return self.dbss_endpoint or f"https://dbss.{self.dbss_region}.myhuaweicloud.com"

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


_EXPECTED = {
    "dbss_project_id": "the Huawei Cloud project ID (letters, digits and '-')",
    "dbss_region": "a region ID such as cn-north-4",
    "dbss_reboot_path": "'current' or 'deprecated'",
    "dbss_timeout_seconds": "seconds, a number above 0 and at most 120",
    "port": "a TCP port, 1 to 65535",
    "bot_confirm_ttl_seconds": "seconds, 10 to 3600",
}


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "configuration"
    name = str(loc[0]).upper()
    return {"HUAWEICLOUD_SDK_AK": "DBSS_AK", "HUAWEICLOUD_SDK_SK": "DBSS_SK"}.get(name, name)


def describe(error: ValidationError) -> str:
    """One readable message naming every offending variable and what it expects."""
    lines = ["Invalid configuration:"]
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        name = _env_name(loc)
        problem = "is required" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
        expected = _EXPECTED.get(str(loc[0]) if loc else "", "")
        hint = f" (expected {expected})" if expected and item["type"] != "missing" else ""
        if expected and item["type"] == "missing":
            hint = f": {expected}"
        lines.append(f"  - {name} {problem}{hint}" if loc else f"  - {problem}")
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise ConfigError with one clear message (no traceback wall)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise ConfigError(describe(err)) from None
