"""Ships ``kinema_obs.py`` inside kinema's wheel as ``kinema_obs_script`` for ``kinema install obs``.

OBS loads ``kinema_obs.py`` as a script; nothing imports this package.
"""
