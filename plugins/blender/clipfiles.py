"""Where clips go and what they are called. No bpy here: worker threads use it."""

from __future__ import annotations

import os
import re
import unicodedata

MAX_STEM = 48


def stem_from_prompt(prompt: str, seed: int | None = None) -> str:
    """A portable file name stem: 'A red fox, running!' + 7 -> 'a-red-fox-running-7'."""
    text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii").lower()
    words = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:MAX_STEM].rstrip("-") or "clip"
    return words if seed is None else f"{words}-{seed}"


def claim(source: str, directory: str, stem: str, suffix: str = ".mp4") -> str:
    """Move the finished file ``source`` to ``directory/stem[-N]suffix`` without overwriting anything.

    ``os.link`` fails if the name is taken, so two Blenders (or two jobs with the
    same prompt and seed) never clobber each other's clips.
    """
    for number in range(1, 10_000):
        target = os.path.join(directory, f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}")
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network shares): rename, never replace
            if os.path.lexists(target):
                continue
            if os.name == "nt":
                try:
                    os.rename(source, target)  # fails on Windows if target exists
                except FileExistsError:
                    continue
            else:
                os.rename(source, target)
            return target
        os.unlink(source)
        return target
    raise FileExistsError(f"{directory} already has 10000 clips named {stem}*{suffix}; choose another folder")
