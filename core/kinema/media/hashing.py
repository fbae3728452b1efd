"""SHA-256 of a file, read in 1 MiB blocks: the one helper for the digests kinema records and checks.

Lineage records a parent clip's digest, provenance embeds the parent only while the file still matches
it, and the cameo store checks its files against the digests it signed. ``kinema/client.py`` stays
standalone (Blender and OBS copy it) and keeps no copy of this. Standard library only.
"""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's SHA-256 as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
