#!/usr/bin/env bash
# Install a real OpenStack Keystone into its own virtualenv, for the `keystone` tests.
#
# Keystone pins (and drags in) many OpenStack libraries, so it lives apart from the
# project's venv: tests/keystone_server.py runs it as a subprocess from this venv.
# Idempotent: re-running with the venv already in place (and the right version) does nothing.
#
#   usage: scripts/setup-keystone.sh [VENV_DIR]      (default: .venv-keystone next to pyproject)
#   env:   PYTHON            interpreter to build the venv with (default: python3.11, else python3)
#          KEYSTONE_VERSION  override the pinned release
#          KEYSTONE_UNCONSTRAINED=1  ignore the known-good dependency pins below (they are
#                            also ignored when KEYSTONE_VERSION is not the pinned one)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-keystone}"
# keystone 30.0.0 needs Python >= 3.11 and works on 3.11.
PINNED_VERSION=30.0.0
KEYSTONE_VERSION="${KEYSTONE_VERSION:-$PINNED_VERSION}"
# The WSGI server keystone is served with (pure Python, no C build).
WAITRESS_VERSION=3.0.2

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

stamp="$VENV/.flotilla-keystone-$KEYSTONE_VERSION"
if [[ -f "$stamp" && -x "$VENV/bin/keystone-manage" ]]; then
    echo "keystone $KEYSTONE_VERSION already installed in $VENV"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# Keystone's requirements are open-ended (OpenStack pins them per release with its
# upper-constraints): this is the known-good set, so a new release of some oslo.* or
# SQLAlchemy cannot break the tests overnight. Regenerate with `pip freeze` after a bump.
cat >"$constraints" <<'CONSTRAINTS'
alembic==1.20.1
amqp==5.4.2
aniso8601==10.0.1
attrs==26.1.0
bcrypt==5.0.0
blinker==1.9.0
cachetools==8.0.1
certifi==2026.10.18
cffi==2.1.1
charset-normalizer==3.5.2
click==8.5.1
cryptography==50.0.2
debtcollector==3.1.0
decorator==5.3.1
defusedxml==0.7.1
dnspython==2.9.2
dogpile.cache==1.5.0
elementpath==4.8.0
eventlet==0.41.3
fasteners==0.20
Flask==3.1.3
Flask-RESTful==0.3.10
futurist==3.5.0
greenlet==3.5.6
idna==3.20
iso8601==2.1.0
itsdangerous==2.2.0
Jinja2==3.1.6
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
keystone==30.0.0
keystoneauth1==5.18.1
keystonemiddleware==13.0.1
kombu==5.7.0
Mako==1.4.3
MarkupSafe==3.0.4
msgpack==1.2.4
netaddr==1.3.0
oauthlib==4.0.1
os-service-types==1.9.0
oslo.cache==4.3.0
oslo.concurrency==7.6.1
oslo.config==10.7.0
oslo.context==6.5.0
oslo.db==18.1.1
oslo.i18n==6.9.0
oslo.log==8.3.2
oslo.messaging==18.3.1
oslo.metrics==0.17.0
oslo.middleware==8.2.0
oslo.policy==6.0.1
oslo.serialization==5.11.0
oslo.service==4.8.0
oslo.upgradecheck==2.8.0
oslo.utils==10.2.0
osprofiler==4.4.0
packaging==26.3
Paste==3.10.1
PasteDeploy==3.1.0
pbr==7.1.3
prettytable==3.18.0
prometheus_client==0.26.0
psutil==7.2.2
pycadf==4.1.0
pycparser==3.12
PyJWT==2.15.1
pyOpenSSL==26.4.0
pyparsing==3.3.3
pysaml2==7.5.5
python-dateutil==4.0.0
python-keystoneclient==6.0.0
pytz==2026.6
PyYAML==6.0.3
referencing==0.37.0
repoze-lru==0.8
requests==2.34.2
rfc3986==2.0.0
Routes==2.5.1
rpds-py==2026.9.1
six==1.17.0
SQLAlchemy==2.1.9
statsd==4.0.1
stevedore==5.10.0
testresources==2.1.2
testscenarios==0.7.0
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
vine==5.1.0
waitress==3.0.2
wcwidth==0.9.4
WebOb==1.8.11
Werkzeug==3.1.9
wrapt==2.5.2
xmlschema==2.5.1
yappi==1.7.6
CONSTRAINTS
# The pins only fit the pinned release.
if [[ -n "${KEYSTONE_UNCONSTRAINED:-}" || "$KEYSTONE_VERSION" != "$PINNED_VERSION" ]]; then
    : >"$constraints"
fi
"$ROOT/scripts/pyinstall.sh" "$VENV" -q -c "$constraints" \
    "keystone==$KEYSTONE_VERSION" "waitress==$WAITRESS_VERSION"
# Smoke check: the CLI and the WSGI entry point import.
PYTHONWARNINGS=ignore "$VENV/bin/keystone-manage" --version >/dev/null
PYTHONWARNINGS=ignore "$VENV/bin/python" -c "import keystone.server.wsgi, waitress"
rm -f "$VENV"/.flotilla-keystone-*
touch "$stamp"
echo "keystone $KEYSTONE_VERSION installed in $VENV"
