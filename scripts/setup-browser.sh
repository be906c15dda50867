#!/usr/bin/env bash
# Install what the dashboard's browser tests need: Debian's chromium + chromedriver.
# Idempotent: does nothing when both are present. Needs root (or sudo) for apt-get.
# Selenium itself is a Python package of the dev extra (pip install -e '.[dev]').
set -euo pipefail

have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; }

if have; then
  echo "setup-browser: chromium and chromedriver already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup-browser: need root to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run instead of failing on its lock.
APT=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
$SUDO "${APT[@]}" update
$SUDO "${APT[@]}" install --no-install-recommends chromium chromium-driver fonts-dejavu-core

if ! have; then
  echo "setup-browser: chromium or chromedriver still missing after apt-get install" >&2
  exit 1
fi
/usr/bin/chromium --version
/usr/bin/chromedriver --version
