#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine like CI's (Debian, Python 3.11, root, no GPU).
# Idempotent: re-running skips what is already there. Used by README's test command and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# kinema itself, in its own venv, with the CPU build of torch (a bare `torch` pulls a multi-GB CUDA build).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e '.[test,obs]'

# OBS Studio 29 (Debian's: obs-websocket and Python scripting included) and Xvfb, for tests/test_obs.py.
# Needs root; without it those tests skip, and fail under CI=true so a broken setup cannot hide.
if ! command -v obs >/dev/null || ! command -v Xvfb >/dev/null || ! command -v ip >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends obs-studio xvfb iproute2 libgl1-mesa-dri >/dev/null
    else
        echo "tests/setup.sh: not root, so OBS Studio and Xvfb are not installed; tests/test_obs.py will skip" >&2
    fi
fi

# espeak-ng speaks the challenge digits of tests/test_cameo_verify.py (offline, Debian's); without it they skip.
if ! command -v espeak-ng >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null
    else
        echo "tests/setup.sh: not root, so espeak-ng is not installed; tests/test_cameo_verify.py will skip" >&2
    fi
fi

# Blender as a Python module (bpy 5.0.1: Python 3.11, numpy<2, ~820 MB) in its own venv, the way a user's Blender
# has its own Python, for tests/test_blender.py (KINEMA_BLENDER_PYTHON points elsewhere). Without Python 3.11
# those tests skip, and fail under CI=true.
if command -v python3.11 >/dev/null; then
    [ -x .venv-blender/bin/python ] || python3.11 -m venv .venv-blender
    .venv-blender/bin/pip install -q bpy==5.0.1 'numpy<2'
    if ! .venv-blender/bin/python -c 'import bpy' 2>/dev/null && [ "$(id -u)" = 0 ]; then
        # The X and GL client libraries bpy links to, on a machine that lacks them.
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgl1 libegl1 libglx0 \
            libx11-6 libxext6 libxfixes3 libxi6 libxrender1 libxxf86vm1 libxkbcommon0 libsm6 libice6 libbsd0 >/dev/null
    fi
else
    echo "tests/setup.sh: no python3.11, so the bpy venv is not made; tests/test_blender.py will skip" >&2
fi
