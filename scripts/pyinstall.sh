#!/usr/bin/env bash
# Install Python packages into a venv: `scripts/pyinstall.sh VENV [pip install arguments...]`.
#
# Uses uv (pinned, from PyPI, kept in its own small venv .venv-uv) when it can be had, pip
# otherwise. uv downloads and unpacks in parallel: on a fresh 2-core machine the project's
# venv takes about a minute instead of five, the compat and Keystone venvs about as much
# less, and that time was the cold CI run's critical path. Both read the same arguments
# (-q, -e, -c FILE, requirement specifiers), and the venvs keep pip (`pip check` runs there).
#   env: FLOTILLA_PIP=1  always use pip (e.g. where uv cannot run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION=0.13.8
venv=$1
shift

uv_bin() {  # prints the path of a working uv, building .venv-uv on first use; fails if it cannot
  local dir="$ROOT/.venv-uv" py=${PYTHON:-python3}
  if [ -x "$dir/bin/uv" ] && [ "$("$dir/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ]; then
    echo "$dir/bin/uv"
    return 0
  fi
  # The setup scripts run side by side: one of them builds it, the others wait.
  exec 9>"$ROOT/.venv-uv.lock"
  flock 9
  if ! { [ -x "$dir/bin/uv" ] && [ "$("$dir/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ]; }; then
    rm -rf "$dir"
    "$py" -m venv "$dir" >&2 &&
      "$dir/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION" >&2 || {
      rm -rf "$dir"
      flock -u 9
      return 1
    }
  fi
  flock -u 9
  echo "$dir/bin/uv"
}

if [ "${FLOTILLA_PIP:-0}" != 1 ] && uv=$(uv_bin); then
  # --python: install into that venv (not uv's own); its pip stays as the venv made it.
  # --compile-bytecode, as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine kind
  # sets it), nothing else ever writes the .pyc files, and every start of a client then
  # compiles its imports again (`magnum --version`: 2.27 s without them, 0.54 s with).
  exec "$uv" pip install --compile-bytecode --python "$venv/bin/python" "$@"
fi
echo "pyinstall.sh: uv $UV_VERSION unavailable, using pip" >&2
exec "$venv/bin/python" -m pip install --disable-pip-version-check "$@"
