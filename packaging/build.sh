#!/usr/bin/env bash
# Build the one-file executable dist/serverlord from this checkout.
#
#   packaging/build.sh                 # into dist/serverlord
#   packaging/build.sh --distpath DIR  # into DIR/serverlord (any PyInstaller flag)
#
# The Python that builds is $PYTHON, else .venv/bin/python, which is made (with
# README's set-up line plus PyInstaller) when missing. Two builds of one commit
# with the same Python and packages give identical bytes: the timestamps come
# from the commit and the hash seed is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
if [[ -z ${PYTHON:-} && ! -x $python ]]; then
    python3 -m venv .venv
fi
if ! "$python" -c 'import PyInstaller' 2>/dev/null; then
    "$python" -m pip install -q -e '.[build]'
fi

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 315532800)
fi
export SOURCE_DATE_EPOCH
export PYTHONHASHSEED=0
# A workpath of its own per build: builds side by side never share a cache.
workpath=$(mktemp -d "${TMPDIR:-/tmp}/serverlord-build.XXXXXX")
trap 'rm -rf "$workpath"' EXIT
# and a cache of its own: PyInstaller's shared one is not safe to share.
export PYINSTALLER_CONFIG_DIR=$workpath/config

"$python" -m PyInstaller --noconfirm --log-level WARN \
    --workpath "$workpath" --distpath dist "$@" serverlord.spec
