"""Generation backends: one module per model family, each an ordinary plugin registering through ``register_backends``.

The families: ``ltx2`` (with ``ltx2_checkpoint``, what a checkpoint folder says about itself, and
``ltx2_conditioning``, cameos and speech), ``wan``, ``wan_vace``, ``tiny`` (offline toy pipelines built by
``tiny_parts`` and ``tiny_ltx25``), ``world`` (the demo world's trained model) and ``remote`` (a job forwarded to
another ``/v1/videos`` server). All sit on ``base.Backend``, with what only backends use: ``device`` (devices and
precisions), ``memory`` (placement policies, the out-of-memory retry), ``loading`` (kept pipelines), ``limits``
(how big one job may be), ``step_cache``, ``previews`` and ``lora``.

Below the engine: may import the request, cameo, clip and media, the foundation (``errors``, ``home``,
``hookspecs``, ``progress``, ``tiers``, ``models``...) and the numpy-only parts of ``kinema.world``; never the
engine, styles, storyboard, server, hosts or CLI (the contracts in ``pyproject.toml`` [tool.importlinter]).
torch and diffusers are imported inside the functions that need them, so ``import kinema.backends`` loads neither.
"""

from kinema.backends.base import Backend, BackendStatus, Plan

__all__ = ["Backend", "BackendStatus", "Plan"]
