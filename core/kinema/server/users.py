"""kinema users on a server: one API key per user, so cameo consent knows who is asking.

``KINEMA_HOME/api-keys.json`` (mode 0600) maps user names to the SHA-256 of
their key; the key itself is shown once, by ``kinema keys add USER``. The
server resolves a bearer token to its user; a request with no user key (the
master key, or none on loopback) acts as ``kinema.cameo.store.SERVER_OWNER``, an
identity no user name can spell.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

from kinema.cameo.store import USER_PATTERN, _locked, _write_private, check_user
from kinema.errors import KinemaError
from kinema.home import kinema_home

KEYS_FILE = "api-keys.json"
KEY_PREFIX = "kinema-"


def _path() -> Path:
    return kinema_home() / KEYS_FILE


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _load(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as error:
        raise KinemaError(f"{path} is unreadable ({error}); fix or delete it and add the keys again") from None
    users = data.get("users", {}) if isinstance(data, dict) else {}
    # A hand-edited name that `kinema keys add` would refuse (such as the owner's) is no user.
    return {
        name: entry
        for name, entry in users.items()
        if isinstance(entry, dict) and "sha256" in entry and isinstance(name, str) and USER_PATTERN.match(name)
    }


def add_key(user: str) -> str:
    """A new API key for ``user`` (replacing any old one); returned once, stored only as a hash."""
    check_user(user)
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    path = _path()
    with _locked(path.parent):
        users = _load(path)
        users[user] = {"sha256": _digest(key), "created_at": int(time.time())}
        _write_private(path, json.dumps({"users": users}, indent=2, sort_keys=True).encode())
    return key


def remove_key(user: str) -> bool:
    path = _path()
    with _locked(path.parent):
        users = _load(path)
        if users.pop(user, None) is None:
            return False
        _write_private(path, json.dumps({"users": users}, indent=2, sort_keys=True).encode())
    return True


def list_users() -> list[str]:
    return sorted(_load(_path()))


def user_for_key(key: str | None) -> str | None:
    """The user whose API key this is, or None. Compares against every hash, in constant time each."""
    if not key:
        return None
    digest = _digest(key)
    found = None
    for name, entry in _load(_path()).items():
        if hmac.compare_digest(digest, str(entry["sha256"])):
            found = name
    return found
