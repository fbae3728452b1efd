"""What ``GET /health`` answers: the server's liveness, and with ``--ray`` the cluster's (``RayJobManager.health``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kinema.server.schemas import Health


class RayHealth(BaseModel):
    address: str = Field(description="The --ray address the server was given.")
    state: Literal["connected", "lost"] = Field(
        description="'lost' while the cluster's head does not answer: queued jobs wait for it."
    )
    workers: int = Field(description="kinema's workers on the cluster.")
    ready: int = Field(description="Workers that have reported what they can run.")
    busy: int = Field(description="Workers running a job now.")
    lost_since: int | None = Field(None, description="Unix time the head stopped answering.")
    message: str | None = Field(None, description="While lost: since when, what jobs do meanwhile and what to do.")


class ServerHealth(Health):
    ray: RayHealth | None = Field(None, description="With kinema serve --ray: the Ray cluster the jobs run on.")


__all__ = ["RayHealth", "ServerHealth"]
