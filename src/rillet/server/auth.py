"""Who is calling: API keys (stored hashed) or the single local user.

`auth_mode = "none"` is only accepted on a loopback address (settings check it), and makes every
caller the local user. In `api_key` mode a key made by `rillet keys create` is required; only its
SHA-256 hash is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from rillet.errors import UnauthorizedError
from rillet.settings import Settings
from rillet.storage.base import Store, UserRecord

KEY_PREFIX = "rk_"


def new_api_key() -> tuple[str, str, str]:
    """A fresh key: `(key, sha256 hash, display prefix)`. Only the hash is stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_key(key), key[:10]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Authenticator:
    """Maps a token (or none) to a user."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._local: UserRecord | None = None

    @property
    def requires_token(self) -> bool:
        return self._settings.auth_mode != "none"

    async def authenticate(self, token: str | None) -> UserRecord:
        """The caller's user; raises `UnauthorizedError` for a missing or unknown key."""
        if not self.requires_token:
            if self._local is None:
                self._local = await self._store.ensure_user(self._settings.local_user)
            return self._local
        if not token:
            raise UnauthorizedError("an API key is required (Authorization: Bearer <key>)")
        user = await self._store.user_for_key(hash_key(token))
        if user is None:
            raise UnauthorizedError("the API key is not valid")
        return user
