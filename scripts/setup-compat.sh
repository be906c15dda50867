#!/usr/bin/env bash
# Build the two venvs that tests/compat drives, each with a real, unchanged client:
#   .venv-magnum217  python-magnumclient 2.17.0: the legacy `magnum` shell
#   .venv-osc        python-openstackclient + python-magnumclient 5.0.0: `openstack coe ...`
# They pin old or mutually conflicting dependencies, so they live apart from .venv.
# Pins: scripts/compat-constraints.txt (lines tagged `# only: NAME` go to one venv only).
#
# Idempotent: a venv is left alone when its stamp (hash of this script, its filtered
# constraints and the Python version) matches and its smoke test passes; otherwise it is
# rebuilt from scratch, so it holds exactly the pinned set. Needs only PyPI.
#   PYTHON=python3.11 scripts/setup-compat.sh     # choose the interpreter (default python3)
#   scripts/setup-compat.sh magnum217             # build one venv only
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
CONSTRAINTS=scripts/compat-constraints.txt
SELF=scripts/setup-compat.sh

pyver=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
case "$pyver" in
  3.11.*) ;;
  *) echo "warning: the compat pins were worked out on Python 3.11; $PY is $pyver" >&2 ;;
esac

# venv name -> packages to install (versions come from the constraints)
declare -A PACKAGES=(
  [magnum217]="python-magnumclient"
  [osc]="python-openstackclient python-magnumclient"
)

smoke() {  # smoke NAME: the installed client starts and knows its commands
  local venv=".venv-$1"
  case "$1" in
    magnum217)
      local v
      v=$("$venv/bin/magnum" --version 2>&1) || return 1
      [ "$v" = "2.17.0" ] || { echo "magnum --version printed '$v'" >&2; return 1; }
      "$venv/bin/magnum" help baymodel-create >/dev/null
      ;;
    osc)
      "$venv/bin/openstack" coe cluster template list --help >/dev/null
      "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("python-magnumclient") == "5.0.0"'
      ;;
  esac
}

build() {  # build NAME
  local name=$1 venv=".venv-$1"
  local filtered stamp want
  filtered=$(mktemp)
  trap 'rm -f "$filtered"' RETURN
  # keep untagged lines and lines tagged for this venv; drop the other venvs' lines
  grep -v -E "#[[:space:]]*only:" "$CONSTRAINTS" >"$filtered"
  grep -E "#[[:space:]]*only:[[:space:]]*$name\b" "$CONSTRAINTS" | sed -E 's/[[:space:]]*#.*$//' >>"$filtered"
  want=$({ cat "$SELF" "$filtered"; echo "$pyver ${PACKAGES[$name]}"; } | sha256sum | cut -d' ' -f1)
  stamp="$venv/.compat-stamp"

  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && smoke "$name" 2>/dev/null; then
    echo "==> $venv is up to date"
    return 0
  fi

  echo "==> building $venv (${PACKAGES[$name]})"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  cp "$filtered" "$venv/compat-constraints.txt"
  # shellcheck disable=SC2086  # the package list is meant to split
  scripts/pyinstall.sh "$venv" -q -c "$venv/compat-constraints.txt" ${PACKAGES[$name]} \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  "$venv/bin/pip" check --disable-pip-version-check
  smoke "$name"
  echo "$want" >"$stamp"
  echo "==> $venv ready"
}

names=("$@")
((${#names[@]})) || names=(magnum217 osc)
for n in "${names[@]}"; do
  [ -n "${PACKAGES[$n]:-}" ] || { echo "unknown venv '$n' (known: ${!PACKAGES[*]})" >&2; exit 2; }
  build "$n"
done
echo "==> compat venvs ready: ${names[*]/#/.venv-}"
