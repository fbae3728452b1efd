"""Host adapters: ComfyUI, Blender and OBS (with obs-websocket).

Each installs its plugin into the host and adds its ``kinema`` CLI commands through the
``register_commands`` hook. At the top: may import the engine, the server's client and the media package.
"""
