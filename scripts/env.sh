#!/usr/bin/env bash
# Creates (or reuses) a Python environment and prints its path.
#
#   scripts/env.sh                          the environment that builds and tests zerofeed
#                                           (requirements/test.txt)
#   scripts/env.sh bench/requirements.txt   that environment plus what the file adds: a second
#                                           venv that sees the first one's packages (a .pth that
#                                           adds its site-packages) and installs only the rest
#
# The base environment lives outside the checkout, keyed by a hash of requirements/test.txt
# and the Python version, so clean clones (CI) reuse it while the requirements are unchanged,
# and a change to them builds a fresh one. Override its location with ZEROFEED_VENV. A layered
# environment sits next to its base, keyed by the base's path and a hash of its own file, so
# it is rebuilt whenever either changes; nothing of the base is copied or modified.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
requirements="$root/requirements/test.txt"

key_of() { { cat "$1"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-12; }

key="$(key_of "$requirements")"
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

if [ $# -gt 0 ]; then
  extra="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  [ -f "$extra" ] || { echo "zerofeed: no requirements file $1" >&2; exit 2; }
  base="$venv"
  name="$(basename "$(dirname "$extra")")"
  venv="$base-$name-$( { echo "$base"; key_of "$extra"; } | sha256sum | cut -c1-12)"
  if [ ! -f "$venv/.complete" ]; then
    echo "zerofeed: creating the $name environment in $venv (on top of $base)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    base_site="$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # addsitedir (not a bare path) so that the base's own .pth files (zerofeed's editable
    # install among them) are processed too; the layer's site-packages stays first.
    echo "import site; site.addsitedir('$base_site')" >"$site/zerofeed-base-env.pth"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -r "$extra" >&2
    touch "$venv/.complete"
  fi
fi

if ! command -v nasm >/dev/null 2>&1; then
  # libjpeg-turbo's SIMD decoder (built by mozjpeg-sys) needs nasm at build time; without it
  # the JPEG decoder is plain C, correct but about 1.5x slower.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "zerofeed: installing nasm (SIMD for the JPEG decoder)" >&2
    { apt-get install -y -qq nasm || { apt-get update -qq && apt-get install -y -qq nasm; }; } >&2 ||
      echo "zerofeed: could not install nasm; the JPEG decoder builds without SIMD" >&2
  else
    echo "zerofeed: nasm not found; the JPEG decoder builds without SIMD (install nasm for full speed)" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  # Distribution packages are usually older than the 1.85 that PyO3 0.30 needs.
  echo "zerofeed: cargo not found; install Rust >= 1.85 (https://rustup.rs) and run again" >&2
  exit 1
fi
echo "$venv"
