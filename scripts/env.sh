#!/usr/bin/env bash
# Creates (or reuses) the Python environment that builds and tests zerofeed, and prints its path.
#
# The environment lives outside the checkout, keyed by a hash of requirements/test.txt and the
# Python version, so clean clones (CI) reuse it while the requirements are unchanged, and a
# change to them builds a fresh one. Override the location with ZEROFEED_VENV.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
requirements="$root/requirements/test.txt"

key="$( { cat "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12)"
venv="${ZEROFEED_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/zerofeed/venv-$key}"

if [ ! -f "$venv/.complete" ]; then
  echo "zerofeed: creating the environment in $venv (PyTorch, TensorFlow and JAX: a few minutes the first time)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$requirements" >&2
  touch "$venv/.complete"
fi

if ! command -v cargo >/dev/null 2>&1; then
  # Distribution packages are usually older than the 1.85 that PyO3 0.30 needs.
  echo "zerofeed: cargo not found; install Rust >= 1.85 (https://rustup.rs) and run again" >&2
  exit 1
fi
echo "$venv"
