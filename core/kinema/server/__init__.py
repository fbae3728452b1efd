"""The OpenAI-shaped job server: ``kinema serve``.

``app`` (``create_app``, ``serve``), the routers (``videos``, ``cameos``, ``storyboards``, ``models``), their
``schemas`` and ``errors``, ``security`` (keys and ownership), ``jobs`` (the SQLite job store and worker),
``tasks`` (what a job runs), ``users`` and ``keys_cli``. Above the engine: may import anything but the hosts.
The stdlib client that Blender and OBS copy is ``kinema.client``, a standalone file outside this package.
"""
