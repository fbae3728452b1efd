"""Cameos as a verified capture leaves them, for tests of what verified cameos may do (sharing, other users).

The verification itself (a spoken challenge, lips that follow it, the same face) is tested in
tests/test_cameo_consent.py; tests of permissions start from its outcome.
"""

from kinema.cameo.store import CameoStore

VERIFIED = {"status": "verified", "why": "verified", "checked_by": "tests/cameo_helpers.py"}


def mark_verified(name: str, store: CameoStore | None = None) -> None:
    """Sign ``name``'s record as verified, as a capture with a challenge that checked out would have."""
    store = store or CameoStore()
    store._update(name, store.get(name).owner, "verify", {"verification": VERIFIED})
