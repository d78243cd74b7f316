#!/usr/bin/env bash
# Creates bench/peers/.venv with the pinned peers (LangGraph, DBOS) from PyPI.
# Nothing is vendored: rerun this script on a fresh machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
echo "peers installed in $here/.venv; run: $here/.venv/bin/python $here/peers.py"
