"""Media: reading and writing clips, images and sound, and what every clip carries.

``files`` (MP4/H.264+AAC and images, atomic writes), ``speech`` (audio decoding, loudness, speech spans),
``assemble`` (joining shots with crossfaded sound), ``provenance`` (C2PA manifests), ``watermark`` and
``visible_mark``. Media may import ``kinema.errors`` and ``kinema.home`` only: no engine, no backends, no torch
at import time.
"""
