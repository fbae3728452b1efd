"""The job queue behind ``kinema serve``: jobs in SQLite, one worker thread per device.

Durable state (what was asked, status, attempts, errors) lives in
``KINEMA_HOME/jobs/jobs.db``; each job's files live in ``KINEMA_HOME/jobs/<id>/``.
Live progress (step, total, previews) is kept in memory only: a job that was
interrupted starts over anyway.

Crash safety, in order of what can go wrong:

* Every status change is one SQLite transaction (WAL, ``synchronous=FULL``)
  guarded by the status it expects, so a job completes exactly once even when a
  cancel races the last step.
* Files are written atomically (temp file + rename) *before* the row says
  ``completed``: a completed job always has its clip.
* On start, jobs found ``in_progress`` were interrupted by a crash or kill: each
  goes back to the queue once (``attempts``), then fails with "server stopped
  while generating" so a job that crashes the server cannot crash it forever.
* One server per data directory (a lock file), so recovery never steals a job
  another live server is running.

Every job records its owner, the identity that submitted it (a user key's
name, or ``SERVER_OWNER``). ``find`` and ``list`` take the caller and answer
only with jobs the caller may see: their own, or every job for the owner.

This module knows nothing about HTTP; ``kinema.server.app`` turns records into
OpenAI-shaped objects.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kinema import engine
from kinema.backends.limits import checked_per_generation
from kinema.cameo.store import SERVER_OWNER, CameoNotAllowedError, CameoTamperedError, authorize_request
from kinema.errors import (
    GenerationCancelled,
    InvalidRequestError,
    KinemaError,
    MissingWeightsError,
    OutOfMemoryError,
    OutputError,
    UnknownBackendError,
)
from kinema.home import kinema_home
from kinema.media.files import encode_jpeg, encode_png
from kinema.progress import CancelToken, Progress
from kinema.request import GenerationRequest
from kinema.server.resident import Resident
from kinema.server.tasks import UPLOADED
from kinema.server.tasks import prepare as prepare_task
from kinema.server.tasks import run as run_task
from kinema.styles import apply_style

ID_PATTERN = re.compile(r"video_[0-9a-f]{32}")
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})
MAX_ATTEMPTS = 2  # an interrupted job is re-run once, then failed
VIDEO_FILE = "video.mp4"
THUMBNAIL_FILE = "thumbnail.png"
SPRITESHEET_FILE = "spritesheet.jpg"
SPRITESHEET_FRAMES, SPRITESHEET_COLUMNS, SPRITESHEET_TILE = 16, 4, 256  # a 4x4 grid, tiles at most 256 px wide
INPUT_FILE = "input.png"
SOURCE_FILE = "source.mp4"  # an uploaded video a remix or extend builds on (OpenAI's edits and extensions)
PREVIEW_JPEG_QUALITY = 70

# Fields of GenerationRequest stored as JSON (the image is stored as INPUT_FILE).
REQUEST_FIELDS = (
    "prompt",
    "negative_prompt",
    "seconds",
    "fps",
    "width",
    "height",
    "seed",
    "steps",
    "guidance",
    "style",
    "tier",
    "two_stage",
    "audio",
    "backend",
    "model",
    "cameos",
    "speech",
    "dialogue",
    "user",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,     -- submission order
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL DEFAULT '{SERVER_OWNER}',  -- who submitted it (see _migrate)
    status TEXT NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'cancelled')),
    device TEXT NOT NULL,
    model TEXT NOT NULL,                       -- as shown to clients
    backend TEXT NOT NULL,
    prompt TEXT NOT NULL,
    request TEXT NOT NULL,                     -- JSON: GenerationRequest fields, seed fixed at submit
    plan TEXT NOT NULL,                        -- JSON: what will be made (size, frames, fps, steps...)
    has_image INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,         -- deleted while running: gone for clients, purged once it stops
    taken_down_at INTEGER,                     -- taken down by the person in one of its cameos (see take_down)
    takedown_reason TEXT,
    takedown_cameo TEXT,
    error_code TEXT,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (device, status, seq);
"""


def new_id() -> str:
    return "video_" + secrets.token_hex(16)


def is_valid_id(value: Any) -> bool:
    """Only ids kinema makes: they double as folder names, so nothing else may reach the file system."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


class JobsBusyError(KinemaError):
    """Another kinema server already owns this data directory."""


class ShuttingDown(KinemaError):
    """The server is stopping and takes no new jobs."""


class TakenDown(KinemaError):
    """A video its maker asked for, taken down by the person shown in it (410 ``taken_down``)."""

    def __init__(self, record: dict):
        self.video_id, self.cameo, self.reason = record["id"], record["takedown_cameo"], record["takedown_reason"]
        super().__init__(
            f"video {self.video_id!r} was taken down by the person shown in it (cameo {self.cameo!r}):"
            f" {self.reason}; it can no longer be downloaded, remixed, extended or edited"
        )


# --------------------------------------------------------------------------- the store


class JobStore:
    """SQLite job rows. One connection behind a lock; every transition is one guarded transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged submit survives a power cut too
        with self._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            _migrate(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple = ()) -> dict | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return _record(row) if row is not None else None

    def _change(self, sql: str, args: tuple) -> bool:
        with self._transaction() as db:
            return db.execute(sql, args).rowcount > 0

    def insert(self, record: dict) -> None:
        columns = (
            "id",
            "owner",
            "status",
            "device",
            "model",
            "backend",
            "prompt",
            "request",
            "plan",
            "has_image",
            "created_at",
        )
        record = {"owner": SERVER_OWNER, **record}  # as for rows from before owners were recorded
        values = tuple(json.dumps(record[c]) if c in ("request", "plan") else record[c] for c in columns)
        with self._transaction() as db:
            db.execute(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)

    def get(self, job_id: str) -> dict | None:
        """The job, unless there is none or it was deleted (``deleted`` finds those too)."""
        return self._one("SELECT * FROM jobs WHERE id = ? AND deleted = 0", (job_id,))

    def deleted(self, job_id: str) -> bool:
        """Whether the job was deleted while it ran and waits to be purged."""
        return self._one("SELECT * FROM jobs WHERE id = ? AND deleted = 1", (job_id,)) is not None

    def list(
        self, *, limit: int = 20, after: str | None = None, order: str = "desc", owner: str | None = None
    ) -> tuple[builtins.list[dict], bool]:
        """A page of jobs in submission order, only ``owner``'s unless None; ``after`` is the last id of the
        previous page (KeyError if it is not one of those jobs)."""
        descending = order == "desc"
        visible = ["deleted = 0", "taken_down_at IS NULL"]  # a clip taken down is no longer listed
        conditions, args = ([*visible, "owner = ?"], [owner]) if owner is not None else (visible, [])
        if after is not None:
            with self._lock:
                anchor = self._db.execute(
                    f"SELECT seq FROM jobs WHERE {' AND '.join(['id = ?', *conditions])}", (after, *args)
                ).fetchone()
            if anchor is None:
                raise KeyError(after)
            conditions.append("seq < ?" if descending else "seq > ?")
            args.append(anchor["seq"])
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT * FROM jobs {where} ORDER BY seq {'DESC' if descending else 'ASC'} LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit + 1)).fetchall()
        return [_record(r) for r in rows[:limit]], len(rows) > limit

    def claim(self, device: str) -> dict | None:
        """Move the oldest queued job of ``device`` to in_progress and return it."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE device = ? AND status = 'queued' ORDER BY seq LIMIT 1", (device,)
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'in_progress', started_at = ?, attempts = attempts + 1 WHERE id = ?",
                (int(time.time()), row["id"]),
            )
            return _record(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
        unless_cancel_requested: bool = False,
    ) -> bool:
        """in_progress -> a final status, exactly once. With ``unless_cancel_requested`` it refuses if a cancel came in."""
        guard = " AND cancel_requested = 0" if unless_cancel_requested else ""
        return self._change(
            "UPDATE jobs SET status = ?, completed_at = ?, error_code = ?, error_message = ?"
            f" WHERE id = ? AND status = 'in_progress'{guard}",
            (status, int(time.time()), code, message, job_id),
        )

    def cancel_queued(self, job_id: str) -> bool:
        return self._change(
            "UPDATE jobs SET status = 'cancelled', completed_at = ?, error_code = 'cancelled',"
            " error_message = 'cancelled before it started' WHERE id = ? AND status = 'queued'",
            (int(time.time()), job_id),
        )

    def request_cancel(self, job_id: str) -> bool:
        return self._change("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'in_progress'", (job_id,))

    def requeue(self, job_id: str) -> bool:
        """Put a job the server stopped on purpose back in the queue; that attempt does not count."""
        return self._change(
            "UPDATE jobs SET status = 'queued', started_at = NULL, attempts = MAX(attempts - 1, 0)"
            " WHERE id = ? AND status = 'in_progress' AND cancel_requested = 0",
            (job_id,),
        )

    def retry(self, job_id: str) -> bool:
        """Put a job whose worker was lost back in the queue; that attempt counts (``MAX_ATTEMPTS``)."""
        return self._change(
            "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'in_progress'"
            " AND cancel_requested = 0",
            (job_id,),
        )

    def delete(self, job_id: str) -> bool:
        """Delete a job that is not running (a running one is ``mark_deleted`` and purged when it stops)."""
        return self._change("DELETE FROM jobs WHERE id = ? AND status != 'in_progress'", (job_id,))

    def take_down(self, job_id: str, cameo: str, reason: str) -> bool:
        """Mark a finished job taken down by the person shown (``JobManager.take_down``); False if it was already."""
        return self._change(
            "UPDATE jobs SET taken_down_at = ?, takedown_reason = ?, takedown_cameo = ?"
            " WHERE id = ? AND deleted = 0 AND taken_down_at IS NULL AND status != 'in_progress'",
            (int(time.time()), reason, cameo, job_id),
        )

    def mark_deleted(self, job_id: str) -> bool:
        """A running job: gone for clients at once, and asked to stop."""
        return self._change(
            "UPDATE jobs SET deleted = 1, cancel_requested = 1 WHERE id = ? AND status = 'in_progress' AND deleted = 0",
            (job_id,),
        )

    def purge_deleted(self) -> builtins.list[str]:
        """Remove the rows of deleted jobs that have stopped (their folders go with ``_clean_files``)."""
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM jobs WHERE deleted = 1 AND status != 'in_progress'").fetchall()
            db.execute("DELETE FROM jobs WHERE deleted = 1 AND status != 'in_progress'")
        return [r["id"] for r in rows]

    def recover(self) -> dict[str, builtins.list[str]]:
        """Settle jobs a previous server left in_progress: re-queue once, else fail with a reason."""
        now = int(time.time())
        with self._transaction() as db:
            rows = db.execute("SELECT id, attempts, cancel_requested FROM jobs WHERE status = 'in_progress'").fetchall()
            outcome: dict[str, list[str]] = {"requeued": [], "failed": [], "cancelled": []}
            for row in rows:
                if row["cancel_requested"]:
                    db.execute(
                        "UPDATE jobs SET status = 'cancelled', completed_at = ?, error_code = 'cancelled',"
                        " error_message = 'cancelled' WHERE id = ?",
                        (now, row["id"]),
                    )
                    outcome["cancelled"].append(row["id"])
                elif row["attempts"] < MAX_ATTEMPTS:
                    db.execute("UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ?", (row["id"],))
                    outcome["requeued"].append(row["id"])
                else:
                    db.execute(
                        "UPDATE jobs SET status = 'failed', completed_at = ?, error_code = 'server_stopped',"
                        " error_message = ? WHERE id = ?",
                        (now, f"server stopped while generating ({row['attempts']} attempts); not retrying", row["id"]),
                    )
                    outcome["failed"].append(row["id"])
        return outcome

    def ids(self) -> set[str]:
        with self._lock:
            return {r["id"] for r in self._db.execute("SELECT id FROM jobs")}

    def queued_devices(self) -> set[str]:
        with self._lock:
            return {r["device"] for r in self._db.execute("SELECT DISTINCT device FROM jobs WHERE status = 'queued'")}

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | {r["status"]: r["n"] for r in rows}


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a jobs.db from an older kinema up to this schema."""
    columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
    if "owner" not in columns:
        # Which key submitted an older job is not known for sure, so it goes to the one who sees all jobs anyway.
        db.execute(f"ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '{SERVER_OWNER}'")
    if "deleted" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0")
    if "taken_down_at" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN taken_down_at INTEGER")
        db.execute("ALTER TABLE jobs ADD COLUMN takedown_reason TEXT")
        db.execute("ALTER TABLE jobs ADD COLUMN takedown_cameo TEXT")


def may_see(record: dict, caller: str) -> bool:
    """Whether ``caller`` may see (and so act on) the job: the owner sees every job, users their own."""
    return caller == SERVER_OWNER or record["owner"] == caller


def _record(row: sqlite3.Row) -> dict:
    record = dict(row)
    record["request"] = json.loads(record["request"])
    record["plan"] = json.loads(record["plan"])
    record["has_image"] = bool(record["has_image"])
    record["cancel_requested"] = bool(record["cancel_requested"])
    record.pop("deleted", None)
    return record


# --------------------------------------------------------------------------- live state and events


@dataclass(frozen=True)
class Event:
    """One server-sent event: ``name`` is video, progress, completed, failed or cancelled."""

    seq: int
    name: str
    data: dict


@dataclass
class _Live:
    """What only memory knows about a job: progress of the current attempt and who is listening."""

    token: CancelToken | None = None
    step: int = 0
    total: int = 0
    stage: str = ""
    history: list[Event] = field(default_factory=list)  # progress events of this attempt, previews stripped
    preview: str | None = None  # latest preview, base64 JPEG
    subscribers: list[Callable[[Event], None]] = field(default_factory=list)


def percent(step: int, total: int) -> int:
    """Progress 0..99 while running: 100 means the clip is written."""
    return min(99, int(100 * step / total)) if total else 0


# --------------------------------------------------------------------------- the manager


class JobManager:
    """Owns the data directory: submits, runs, cancels and deletes jobs, and streams their events."""

    def __init__(self, home: Path | None = None, *, start_workers: bool = True):
        self.directory = Path(home or kinema_home()) / "jobs"
        self.start_workers = start_workers
        self.store: JobStore | None = None
        self._lock = threading.RLock()
        self._live: dict[str, _Live] = {}
        self._seq = itertools.count(1)
        self._workers: dict[str, _Worker] = {}
        self._stopping = threading.Event()
        self._lock_file: Any = None
        self.recovered: dict[str, list[str]] = {}

    # -- lifecycle

    @property
    def _jobs(self) -> JobStore:
        """The job database, which start() opens."""
        if self.store is None:
            raise RuntimeError("JobManager.start() has not opened the job database")
        return self.store

    def start(self) -> JobManager:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_directory(self.directory)
        try:
            self.store = JobStore(self.directory / "jobs.db")
            self.recovered = self.store.recover()
            self.store.purge_deleted()  # deleted while a previous server ran them
            self._clean_files()
        except BaseException:
            self._release_lock()
            raise
        if self.start_workers:
            for device in self.store.queued_devices():
                self._ensure_worker(device)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop workers; a running job goes back to the queue (its attempt does not count)."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
            for live in self._live.values():
                if live.token is not None:
                    live.token.cancel()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.wake.set()
            worker.join(max(0.0, deadline - time.monotonic()))
        if self.store is not None and not any(w.is_alive() for w in workers):
            self.store.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the lock
            self._lock_file = None

    def _clean_files(self) -> None:
        """Remove folders of jobs that no longer exist and temp files of interrupted writes."""
        ids = self._jobs.ids()
        for entry in self.directory.iterdir():
            if not entry.is_dir() or not is_valid_id(entry.name):
                continue
            if entry.name not in ids:
                shutil.rmtree(entry, ignore_errors=True)
                continue
            for leftover in entry.glob(".*"):
                with contextlib.suppress(OSError):
                    leftover.unlink() if leftover.is_file() else shutil.rmtree(leftover)

    def job_dir(self, job_id: str) -> Path:
        if not is_valid_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.directory / job_id

    # -- submitting

    def submit(
        self,
        fields: dict,
        *,
        image: Any = None,
        display_model: str | None = None,
        task: dict | None = None,
        owner: str = SERVER_OWNER,
        notes: tuple[str, ...] = (),
        source_video: Path | None = None,
    ) -> dict:
        """Validate and plan now (bad requests fail here, not as failed jobs), then queue.

        ``fields`` are GenerationRequest keyword arguments; ``image`` a uint8 [H, W, 3] array;
        ``task`` a remix, extend or storyboard (``kinema.server.tasks``) run instead of one generation.
        ``owner`` is who asks: the job is theirs, and its cameos are checked for them. ``notes`` go first in
        the plan's notes (what the server changed in the request, and why). ``source_video``: an uploaded video
        the task (its ``parent`` is ``kinema.server.tasks.UPLOADED``) builds on; the job keeps a copy in its folder.
        Raises InvalidRequestError (a size limit included: kinema.backends.limits), UnknownBackendError or
        MissingWeightsError.
        """
        if self._stopping.is_set():
            raise ShuttingDown("the server is shutting down; submit again once it is back")
        unknown = set(fields) - set(REQUEST_FIELDS)
        if unknown:
            raise InvalidRequestError(f"unknown request fields: {sorted(unknown)}")
        request = GenerationRequest(**{**fields, "user": owner}, image=image)
        backend = engine.resolve_backend(request)
        if task is None:
            plan = backend.plan(apply_style(request))
        else:  # the task's own generations (a film's shots) are what must fit: prepare_task checks each of them
            with checked_per_generation():
                plan = backend.plan(apply_style(request))
        authorize_request(request)  # refused now; checked again when the job starts (a revoke in between counts)
        task_plan: dict = {}
        if task is not None:
            task, task_plan = prepare_task(
                task,
                request,
                backend,
                lambda parent: source_video if parent == UPLOADED else self.artifact(parent, VIDEO_FILE),
            )
            task_plan["task"] = task
        status = self._backend_status(backend, request)  # after every limit, as for a single generation
        if not status.ready:
            raise MissingWeightsError(f"backend {backend.name!r} cannot run yet: {status.detail}")
        stored = {name: getattr(request, name) for name in REQUEST_FIELDS}
        stored["seed"] = plan.seed  # fixed now: a re-run after a crash makes the same clip
        job_id = new_id()
        record = {
            "id": job_id,
            "owner": owner,
            "status": "queued",
            "device": status.device,
            "model": display_model or backend.name,
            "backend": backend.name,
            "prompt": request.prompt,
            "request": stored,
            "plan": {
                "width": plan.width,
                "height": plan.height,
                "num_frames": plan.num_frames,
                "fps": str(plan.fps),
                "seconds": plan.seconds,
                "steps": plan.steps,
                "guidance": plan.guidance,
                "seed": plan.seed,
                "notes": [*notes, *plan.notes],
                "audio": bool(request.audio and backend.makes_audio),
                "two_stage": plan.two_stage,
                **task_plan,
            },
            "has_image": request.image is not None,
            "created_at": int(time.time()),
        }
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True)
        try:
            if request.image is not None:
                atomic_write(folder / INPUT_FILE, encode_png(request.image))
            if source_video is not None:
                shutil.copyfile(source_video, folder / SOURCE_FILE)
            self._jobs.insert(record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.start_workers:
            self._ensure_worker(status.device).wake.set()
        submitted = self.get(job_id)
        if submitted is None:  # deleted in the instant since it was inserted
            raise KeyError(job_id)
        return submitted

    def _backend_status(self, backend: Any, request: GenerationRequest) -> Any:
        """Whether ``backend`` can run ``request`` where this manager runs jobs, and on which device (a
        ``BackendStatus``). Here: this machine; the Ray pool (``kinema.server.ray_pool``) asks its workers."""
        return backend.status()

    # -- reading

    def get(self, job_id: str) -> dict | None:
        """The job's record plus live progress, or None."""
        if not is_valid_id(job_id):
            return None
        record = self._jobs.get(job_id)
        return self._with_live(record) if record is not None else None

    def find(self, job_id: str, caller: str) -> dict | None:
        """The job if ``caller`` may see it (``may_see``), else None: to them, another user's job does not exist.

        A job taken down raises ``TakenDown`` for those who may see it (its maker, the server's owner).
        """
        record = self.get(job_id)
        if record is None or not may_see(record, caller):
            return None
        if record.get("taken_down_at") is not None:
            raise TakenDown(record)
        return record

    def take_down(self, job_id: str, cameo: str, reason: str) -> bool:
        """Take a finished job down for the person shown in it: its row stays (so its maker is told why, with 410),
        its files go. False when there is no such finished job, or it was already taken down."""
        if not is_valid_id(job_id) or not self._jobs.take_down(job_id, cameo, reason):
            return False
        shutil.rmtree(self.directory / job_id, ignore_errors=True)
        return True

    def list(self, *, caller: str, **kwargs: Any) -> tuple[builtins.list[dict], bool]:
        """A page of the jobs ``caller`` may see (``JobStore.list`` arguments)."""
        owner = None if caller == SERVER_OWNER else caller
        records, has_more = self._jobs.list(owner=owner, **kwargs)
        return [self._with_live(r) for r in records], has_more

    def _with_live(self, record: dict) -> dict:
        with self._lock:
            live = self._live.get(record["id"])
            step, total, stage = (live.step, live.total, live.stage) if live else (0, 0, "")
        if record["status"] == "completed":
            step = total = record["plan"]["steps"]
            progress = 100
        elif record["status"] == "in_progress":
            progress = percent(step, total)
        else:
            progress = 0
        return {**record, "step": step, "total": total, "stage": stage, "progress": progress}

    def artifact(self, job_id: str, name: str) -> Path | None:
        if not is_valid_id(job_id) or name not in (VIDEO_FILE, THUMBNAIL_FILE, SPRITESHEET_FILE):
            return None
        path = self.directory / job_id / name
        return path if path.is_file() else None

    def counts(self) -> dict[str, int]:
        return self._jobs.counts()

    def _source(self, job_id: str, parent: str) -> Path | None:
        """The video job ``job_id``'s remix or extend builds on: its upload, or the finished job ``parent``'s clip."""
        if parent == UPLOADED:
            path = self.directory / job_id / SOURCE_FILE
            return path if path.is_file() else None
        return self.artifact(parent, VIDEO_FILE)

    # -- cancelling and deleting

    def cancel(self, job_id: str) -> dict | None:
        """Cancel a queued job at once, or ask a running one to stop within one step. Returns the job."""
        record = self.get(job_id)
        if record is None:
            return None
        if record["status"] == "queued" and self._jobs.cancel_queued(job_id):
            self._publish_final(job_id)
        elif record["status"] in ("queued", "in_progress") and self._jobs.request_cancel(job_id):
            with self._lock:
                live = self._live.get(job_id)
                if live is not None and live.token is not None:
                    live.token.cancel()
        return self.get(job_id)

    def delete(self, job_id: str) -> str:
        """'deleted' or 'missing', at once. A running job is gone for clients now; it is cancelled, and its row
        and files are removed when it stops (within one step)."""
        if not is_valid_id(job_id):
            return "missing"
        while not self._jobs.delete(job_id):  # not running: gone now, with its files
            if self._jobs.mark_deleted(job_id):  # running: it stops within a step and is purged then
                with self._lock:
                    live = self._live.get(job_id)
                    if live is not None and live.token is not None:
                        live.token.cancel()
                break
            if self._jobs.get(job_id) is None:
                return "missing"
            # It stopped between the two statements: delete it as a stopped job.
        else:
            shutil.rmtree(self.directory / job_id, ignore_errors=True)
        self._publish(job_id, "deleted", {"id": job_id}, final=True)
        return "deleted"

    def _purge_if_deleted(self, job_id: str) -> None:
        """After a job stops: if it was deleted meanwhile, remove its row and files now."""
        if self._jobs.deleted(job_id) and job_id in self._jobs.purge_deleted():
            shutil.rmtree(self.directory / job_id, ignore_errors=True)

    # -- events

    def subscribe(
        self, job_id: str, deliver: Callable[[Event], None]
    ) -> tuple[builtins.list[Event], Callable[[], None]] | None:
        """Register ``deliver`` for the job's future events; return (snapshot, unsubscribe) or None if no such job.

        The snapshot is the job itself, then this attempt's progress so far (the
        latest with its preview); every later event reaches ``deliver`` exactly
        once. ``deliver`` is called from worker threads and must not block.
        """
        if not is_valid_id(job_id):
            return None
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None:
                return None
            live = self._live.setdefault(job_id, _Live())
            live.subscribers.append(deliver)
            snapshot = [Event(0, "video", self._with_live(record))]
            if record["status"] in TERMINAL:
                snapshot.append(Event(0, record["status"], snapshot[0].data))
            elif record["status"] == "in_progress":
                snapshot.extend(live.history)
                if live.preview and snapshot[-1].name == "progress":
                    last = snapshot[-1]
                    snapshot[-1] = Event(last.seq, last.name, {**last.data, "preview_jpeg_base64": live.preview})

        def unsubscribe() -> None:
            with self._lock:
                current = self._live.get(job_id)
                if current is not None:
                    with contextlib.suppress(ValueError):
                        current.subscribers.remove(deliver)
                    self._forget_if_idle(job_id, current)

        return snapshot, unsubscribe

    def _forget_if_idle(self, job_id: str, live: _Live) -> None:
        if not live.subscribers and live.token is None:
            self._live.pop(job_id, None)

    def _publish(self, job_id: str, name: str, data: dict, *, final: bool = False) -> None:
        with self._lock:
            live = self._live.get(job_id)
            if live is None:
                return
            event = Event(next(self._seq), name, data)
            for deliver in list(live.subscribers):
                try:
                    deliver(event)
                except Exception:  # a listener whose event loop has gone: drop it
                    live.subscribers.remove(deliver)
            if final:
                live.subscribers.clear()
                self._forget_if_idle(job_id, live)

    def _publish_final(self, job_id: str) -> None:
        record = self.get(job_id)
        if record is not None:
            self._publish(job_id, record["status"], record, final=True)

    def _on_progress(self, job_id: str, event: Progress) -> None:
        data = {
            "id": job_id,
            "step": event.step,
            "total": event.total,
            "stage": event.stage,
            "progress": percent(event.step, event.total),
        }
        with self._lock:
            live = self._live[job_id]
            live.step, live.total, live.stage = event.step, event.total, event.stage
            listening = bool(live.subscribers)
        preview = None
        if event.preview is not None and listening:  # encode only for someone who watches
            with contextlib.suppress(Exception):
                preview = base64.b64encode(encode_jpeg(event.preview, PREVIEW_JPEG_QUALITY)).decode("ascii")
        with self._lock:
            progress_event = Event(next(self._seq), "progress", data)
            live.history.append(progress_event)
            if preview is not None:
                live.preview = preview
                progress_event = Event(progress_event.seq, "progress", {**data, "preview_jpeg_base64": preview})
            for deliver in list(live.subscribers):
                try:
                    deliver(progress_event)
                except Exception:
                    live.subscribers.remove(deliver)

    # -- running (called by workers)

    def _ensure_worker(self, device: str) -> _Worker:
        with self._lock:
            worker = self._workers.get(device)
            if worker is None or not worker.is_alive():
                worker = self._workers[device] = _Worker(self, device)
                worker.start()
            return worker

    def _run(self, record: dict, worker: _Worker) -> None:
        job_id = record["id"]
        token = CancelToken()
        with self._lock:
            live = self._live.setdefault(job_id, _Live())
            live.token, live.step, live.total, live.stage = token, 0, record["plan"]["steps"], ""
            live.history, live.preview = [], None
        current = self._jobs.get(job_id)
        if self._stopping.is_set() or current is None or current["cancel_requested"]:
            token.cancel()  # a cancel or stop that came in between the claim and the token
        self._publish(job_id, "video", self._with_live(record))
        folder = self.directory / job_id
        try:
            request = GenerationRequest(**record["request"], image=folder / INPUT_FILE if record["has_image"] else None)
            backend = worker.resident.backend_for(request)
            token.raise_if_cancelled()
            task = record["plan"].get("task")
            if task:
                clip = run_task(
                    task,
                    request,
                    backend,
                    parent_video=lambda parent: self._source(job_id, parent),
                    progress=lambda p: self._on_progress(job_id, p),
                    cancel=token,
                )
            else:
                # Previews are a cheap latent projection; they are JPEG-encoded only for someone watching.
                clip = engine.generate(
                    request,
                    progress=lambda p: self._on_progress(job_id, p),
                    cancel=token,
                    backend=backend,
                    preview=True,
                )
            token.raise_if_cancelled()
            clip.save(folder / VIDEO_FILE)
            atomic_write(folder / THUMBNAIL_FILE, encode_png(clip.frames[clip.frame_count // 2]))
            atomic_write(folder / SPRITESHEET_FILE, encode_jpeg(spritesheet(clip.frames), 85))
            if not self._jobs.finish(job_id, "completed", unless_cancel_requested=True):
                raise GenerationCancelled("cancelled")
        except GenerationCancelled:
            current = self._jobs.get(job_id)
            if self._stopping.is_set() and current is not None and not current["cancel_requested"]:
                self._jobs.requeue(job_id)
            else:
                self._jobs.finish(job_id, "cancelled", code="cancelled", message="cancelled by request")
        except Exception as error:
            code, message = _describe_failure(error)
            if code == "internal_error":
                print(f"kinema: job {job_id} failed:", file=sys.stderr)
                traceback.print_exc()
            self._jobs.finish(job_id, "failed", code=code, message=message)
        finally:
            with self._lock:
                live.token = None
                live.history, live.preview = [], None
        self._purge_if_deleted(job_id)
        self._publish_final(job_id)


def spritesheet(frames: Any, count: int = SPRITESHEET_FRAMES, columns: int = SPRITESHEET_COLUMNS) -> Any:
    """A grid of ``count`` evenly spaced frames (first and last included), left to right then down, each scaled
    to at most ``SPRITESHEET_TILE`` px wide: what OpenAI's ``variant=spritesheet`` returns. uint8 [H, W, 3]."""
    from PIL import Image  # on first use, as kinema.media.files loads Pillow

    total = len(frames)
    picks = np.linspace(0, total - 1, min(count, total)).round().astype(int)
    height, width = frames.shape[1:3]
    scale = min(1.0, SPRITESHEET_TILE / width)
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    columns = min(columns, len(picks))
    rows = -(-len(picks) // columns)
    sheet = np.zeros((rows * tile_h, columns * tile_w, 3), np.uint8)
    for n, index in enumerate(picks):
        tile = np.asarray(Image.fromarray(frames[index]).resize((tile_w, tile_h), Image.Resampling.LANCZOS))
        row, column = divmod(n, columns)
        sheet[row * tile_h : (row + 1) * tile_h, column * tile_w : (column + 1) * tile_w] = tile
    return sheet


def _describe_failure(error: Exception) -> tuple[str, str]:
    if isinstance(error, CameoNotAllowedError):  # e.g. revoked while the job was queued
        return f"cameo_{error.reason}", str(error)
    if isinstance(error, CameoTamperedError):
        return "cameo_tampered", str(error)
    codes = [
        (OutOfMemoryError, "out_of_memory"),
        (MissingWeightsError, "missing_weights"),
        (InvalidRequestError, "invalid_request"),
        (UnknownBackendError, "model_not_found"),
        (OutputError, "output_error"),
        (KinemaError, "generation_failed"),
    ]
    for cls, code in codes:
        if isinstance(error, cls):
            return code, str(error)
    # Not str(error): an unexpected error's message may hold server paths. The server's log has the traceback.
    return "internal_error", f"internal error ({type(error).__name__}); see the server's log"


class _Worker(threading.Thread):
    """Runs one device's jobs one at a time, oldest first, keeping the last backend (and its weights) loaded: only
    that one, so a job for another model frees it first (``Resident``)."""

    def __init__(self, manager: JobManager, device: str):
        super().__init__(name=f"kinema-worker-{device}", daemon=True)
        self.manager = manager
        self.device = device
        self.wake = threading.Event()
        self.resident = Resident(device)

    def run(self) -> None:
        manager = self.manager
        while not manager._stopping.is_set():
            self.wake.clear()
            try:
                record = manager._jobs.claim(self.device)
            except Exception:
                traceback.print_exc()
                self.wake.wait(1.0)
                continue
            if record is None:
                self.wake.wait(30.0)
                continue
            try:
                manager._run(record, self)
            except Exception:  # a bug in bookkeeping must not kill the device's queue
                traceback.print_exc()
                with contextlib.suppress(Exception):
                    manager._jobs.finish(
                        record["id"],
                        "failed",
                        code="internal_error",
                        message="internal error in the job server; see its log",
                    )
                    manager._publish_final(record["id"])


# --------------------------------------------------------------------------- files


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a hidden temp file, fsync and rename: all or nothing."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return path


def _lock_directory(directory: Path) -> Any:
    """Hold ``server.lock`` for the life of the process (the OS drops it on exit, even on kill -9)."""
    handle = open(directory / "server.lock", "a+")  # noqa: SIM115 - held open for the process's life: it is the lock
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise JobsBusyError(
            f"another kinema server (pid {owner}) is using {directory}; stop it, or give this one its own KINEMA_HOME"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
