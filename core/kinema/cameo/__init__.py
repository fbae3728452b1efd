"""Cameos: a consenting person's face and voice, stored with their signed consent record.

``store`` (the cameo store, consent and use logs), ``capture`` (making a cameo from a video), ``face``
(detection and identity), ``cli`` (``kinema cameo`` commands). Beside the engine: may import the engine's
modules at the top of ``kinema`` and ``kinema.media``; never the server or the hosts.
"""
