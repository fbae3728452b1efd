#!/usr/bin/env bash
# Sets up everything the tests need on a fresh machine like CI's (Debian, Python 3.11, root, no GPU).
# Idempotent: re-running skips what is already there. Used by README's test command and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# kinema itself, in its own venv, with the CPU build of torch (a bare `torch` pulls a multi-GB CUDA build).
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0 -e '.[test]'
