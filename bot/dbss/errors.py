"""The DBSS client's one exception family.

DbssError
 ├── DbssNotSent          the request provably never reached DBSS (connect failure): nothing happened
 │    └── CredentialsUnavailable  no temporary credentials from the metadata service, so nothing was sent
 ├── DbssOutcomeUnknown   the request was sent but no usable answer came back (timeout, reset)
 └── DbssApiError         DBSS, IAM or the API gateway answered with an error
      ├── DbssThrottled   429 / APIGW.0308: wait and try later
      ├── RebootFailed    HTTP 200 with {"result": "failed"}
      └── IamLoginError   the IAM password login was refused
"""

from __future__ import annotations


class DbssError(Exception):
    """Base of every error the DBSS client raises."""


class DbssNotSent(DbssError):
    """The request never left this process or never reached the server, so it cannot have taken effect."""


class CredentialsUnavailable(DbssNotSent):
    """The metadata service gave no usable temporary credentials, so the DBSS request was never sent."""


class DbssOutcomeUnknown(DbssError):
    """The request may have reached DBSS, but no answer was read: a reboot may or may not have started."""


class DbssApiError(DbssError):
    """An error answer, with the server's own facts."""

    def __init__(
        self,
        *,
        status_code: int,
        error_code: str | None,
        error_msg: str,
        request_id: str | None,
        encoded_authorization_message: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.encoded_authorization_message = encoded_authorization_message
        code = f" {error_code}" if error_code else ""
        rid = f" (request id {request_id})" if request_id else ""
        super().__init__(f"HTTP {status_code}{code}: {error_msg}{rid}")

    @property
    def gateway_code(self) -> str | None:
        """The numeric part of an API-gateway code (APIGW.0308 and APIG.0308 both give '0308')."""
        if self.error_code and self.error_code.upper().startswith(("APIGW.", "APIG.")):
            return self.error_code.split(".", 1)[1]
        return None


class DbssThrottled(DbssApiError):
    """The API gateway throttled the call (HTTP 429, APIGW.0308)."""


class RebootFailed(DbssApiError):
    """DBSS answered 200 but said the reboot failed."""


class IamLoginError(DbssApiError):
    """IAM refused the password login (wrong credentials, locked user, or IAM down)."""
