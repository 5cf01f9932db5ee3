"""Who is connecting: the session (Channels' ``AuthMiddlewareStack``) or a
credential in graphql-transport-ws ``connection_init`` / an HTTP
``Authorization: Bearer`` header, through a pluggable authenticator.

The ready authenticator checks a token signed with Django's ``SECRET_KEY``
(``django.core.signing``): it names the user, expires after
``TOKEN_MAX_AGE`` seconds and dies when the user's password changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core import signing
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from gql_observer.core.conf import get_settings
from gql_observer.core.db import unit_of_work

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "Credential",
    "authenticate",
    "credential_from_params",
    "issue_token",
    "signed_token_authenticator",
]

SALT = "gql_observer.token"


class AuthenticationFailed(Exception):
    """A credential was given and is not valid (bad signature, expired, unknown user)."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What an authenticator established: the user, and until when it holds.

    ``expires`` (a ``time.time()`` value) is re-checked before every event.
    """

    user: Any
    expires: float | None = None
    #: ``(user as the database has it now) -> bool``, asked before every event:
    #: whether the credential still holds (the default: the password is unchanged).
    still_valid: Callable[[Any], bool] | None = None
    #: What identifies this credential's validity: connections whose credentials
    #: have equal keys (and the same user and expiry) are revoked together and may
    #: share a verdict. ``None``: only this credential's own ``still_valid``.
    key: Hashable = None


class Authenticator(Protocol):
    """``(credential, scope) -> Credential``; raise :class:`AuthenticationFailed`.

    Runs in a thread (it may use the ORM). ``credential`` is the token string
    from ``connection_init``'s payload or the HTTP ``Authorization`` header.
    """

    def __call__(self, credential: str, scope: Mapping[str, Any]) -> Credential: ...


def _password_fingerprint(user: Any) -> str:
    # Changes when the password does: tokens issued before die with it.
    return salted_hmac(SALT, str(user.password), algorithm="sha256").hexdigest()[:16]


def issue_token(user: Any) -> str:
    """A signed token for ``user``, valid for ``TOKEN_MAX_AGE`` seconds."""
    return signing.dumps(
        {"u": str(user.pk), "p": _password_fingerprint(user)}, salt=SALT, compress=True
    )


def signed_token_authenticator(credential: str, scope: Mapping[str, Any]) -> Credential:
    """The default :class:`Authenticator`: a token made by :func:`issue_token`."""
    max_age = get_settings().token_max_age
    try:
        payload = signing.loads(credential, salt=SALT, max_age=max_age)
        issued = float(signing.b62_decode(credential.rsplit(":", 2)[-2]))
    except signing.SignatureExpired:
        raise AuthenticationFailed("The token has expired.") from None
    except signing.BadSignature:
        raise AuthenticationFailed("The token is not valid.") from None
    user_model = get_user_model()
    try:
        user = user_model._default_manager.get(pk=payload["u"])
    except (user_model.DoesNotExist, KeyError, ValueError, TypeError):
        raise AuthenticationFailed("The token names no user.") from None
    if not user.is_active or payload.get("p") != _password_fingerprint(user):
        raise AuthenticationFailed("The token is no longer valid.")
    fingerprint = payload.get("p")
    # The fingerprint matched this password hash: the token holds while the hash
    # is the same (a string comparison per event, not an HMAC per viewer).
    password = user.password
    return Credential(
        user=user,
        expires=issued + max_age,
        still_valid=lambda fresh: fresh.password == password,
        key=(SALT, fingerprint),
    )


def credential_from_params(params: Mapping[str, Any] | None) -> str | None:
    """The token in a ``connection_init`` payload: ``{"token": ...}``,
    ``{"authToken": ...}`` or ``{"Authorization": "Bearer ..."}``."""
    if not isinstance(params, Mapping):
        return None
    for key in ("token", "authToken"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("Authorization", "authorization"):
        value = params.get(key)
        if isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip() or None
    return None


def _authenticator() -> Authenticator:
    path = get_settings().authenticator
    authenticator: Authenticator = import_string(path)
    return authenticator


async def authenticate(credential: str, scope: Mapping[str, Any]) -> Credential:
    """Run the configured authenticator in a thread."""
    authenticator = _authenticator()
    result: Credential = await sync_to_async(unit_of_work(authenticator), thread_sensitive=True)(
        credential, scope
    )
    if result.expires is not None and result.expires <= time.time():
        raise AuthenticationFailed("The token has expired.")
    return result
