"""Step progress and cooperative cancellation, shared by every backend and host."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinema.errors import GenerationCancelled

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Progress:
    step: int  # steps finished so far, 1..total
    total: int
    stage: str = "video"  # which pass: "video", "audio"
    preview: np.ndarray | None = None  # uint8 [H, W, 3], when the backend can afford one

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set from any thread; the generating thread stops at its next step."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise GenerationCancelled("generation cancelled")
