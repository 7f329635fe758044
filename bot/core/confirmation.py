"""Confirmation tokens: the signed value of the Confirm button, binding instance, requester, channel, expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

MAX_TOKEN_LENGTH = 1000  # a button value may hold 2,000 characters; anything longer is not ours


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One offer to reboot one instance, made to one person in one channel, valid until `expires_at`."""

    instance_id: str
    requester: str
    channel: str
    expires_at: int
    nonce: str
    target: str | None = None  # region:project_id of the instance shown on the card (None: the only target)
    generation: str | None = None  # the state store's generation when the card was offered


class InvalidToken(Exception):
    """The token was not issued by this bot, or was altered."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: str) -> bytes:
    """The confirmation key made from a configured secret, under a context of its own: the same on every replica
    and across restarts, and no use for anything else the secret signs (a Slack signing secret signs requests)."""
    return hmac.new(secret.encode(), b"dbss-reboot-bot/confirmation-key/v1", hashlib.sha256).digest()


class ConfirmationSigner:
    """Issues tokens with one HMAC-SHA256 key; verifies them with it or with a previous key (after a rotation)."""

    def __init__(self, key: bytes, *previous: bytes) -> None:
        if any(len(k) < 32 for k in (key, *previous)):
            raise ValueError("confirmation key must be at least 32 bytes")
        self._key = key
        self._keys = (key, *previous)

    def __repr__(self) -> str:
        return "ConfirmationSigner(key=<hidden>)"

    def issue(
        self,
        *,
        instance_id: str,
        requester: str,
        channel: str,
        expires_at: int,
        nonce: str | None = None,
        target: str | None = None,
        generation: str | None = None,
    ) -> tuple[Confirmation, str]:
        """A new confirmation and its token; the nonce makes it single-use and doubles as correlation ID; the
        generation binds it to the state store that will hold its claim."""
        confirmation = Confirmation(
            instance_id, requester, channel, expires_at, nonce or secrets.token_hex(6), target, generation
        )
        fields: dict[str, object] = {"i": instance_id, "u": requester, "c": channel, "e": expires_at}
        fields["n"] = confirmation.nonce
        if target is not None:
            fields["t"] = target
        if generation is not None:
            fields["g"] = generation
        payload = json.dumps(fields, separators=(",", ":")).encode()
        return confirmation, f"{_b64(payload)}.{_b64(self._mac(payload))}"

    @classmethod
    def from_secrets(cls, secrets: tuple[str, ...], fallback: Callable[[], bytes]) -> ConfirmationSigner:
        """Keys derived from the configured secrets (the signing one first), else `fallback()`'s (the store's)."""
        if secrets:
            return cls(*(derive_key(s) for s in secrets))
        return cls(fallback())

    def verify(self, token: str) -> Confirmation:
        """The confirmation a token stands for; raises InvalidToken for anything forged, altered or malformed."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidToken("malformed")
        payload_text, mac_text = token.split(".")
        try:
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except ValueError as err:
            raise InvalidToken("malformed") from err
        if not any(hmac.compare_digest(mac, self._mac(payload, key)) for key in self._keys):
            raise InvalidToken("bad signature")
        try:
            data = json.loads(payload)
            target, generation = data.get("t"), data.get("g")
            confirmation = Confirmation(
                str(data["i"]),
                str(data["u"]),
                str(data["c"]),
                int(data["e"]),
                str(data["n"]),
                None if target is None else str(target),
                None if generation is None else str(generation),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidToken("malformed") from err
        return confirmation

    def _mac(self, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._key, b"dbss-reboot-confirm\n" + payload, hashlib.sha256).digest()
