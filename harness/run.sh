#!/usr/bin/env bash
# One entry point for the README's two commands: `harness/run.sh demo` and `harness/run.sh test`.
# Installs what is missing (PostgreSQL with plpython3u and numpy from apt, a Python venv
# with the harness's packages), then runs the demo or the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${WOE_ANCHOR_VENV:-$REPO/.venv}

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The newest installed PostgreSQL major >= 15 whose plpython3 apt can provide; if none
# (e.g. Debian 13 with PostgreSQL 15 from Debian 12), the distribution's own major.
pick_major() {
    local m
    for m in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
        [ "$m" -ge 15 ] 2>/dev/null || continue
        if [ -e "/usr/lib/postgresql/$m/lib/plpython3.so" ]; then echo "$m"; return; fi
        if apt-cache show "postgresql-plpython3-$m" >/dev/null 2>&1 \
            && [ -n "$(apt-cache policy "postgresql-plpython3-$m" | awk '/Candidate:/ {print $2}' | grep -v none)" ]; then
            echo "$m"; return
        fi
    done
    apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n1
}

setup_postgres() {
    local need=0
    [ -e /usr/lib/postgresql ] && ls /usr/lib/postgresql/*/lib/plpython3.so >/dev/null 2>&1 || need=1
    /usr/bin/python3 -c 'import numpy' 2>/dev/null || need=1
    command -v make >/dev/null || need=1
    if [ "$need" = 1 ]; then
        [ "$(id -u)" = 0 ] || { log "run as root to install PostgreSQL packages"; exit 1; }
        apt-get update -qq; APT_UPDATED=1
        local major; major=$(pick_major)
        [ -n "$major" ] || { log "no PostgreSQL major found in apt"; exit 1; }
        log "installing PostgreSQL $major with plpython3u and numpy"
        apt_install "postgresql-$major" "postgresql-plpython3-$major" python3-numpy make
    fi
    export WOE_ANCHOR_PG_MAJOR=${WOE_ANCHOR_PG_MAJOR:-$(ls -d /usr/lib/postgresql/*/lib/plpython3.so | sed 's#/usr/lib/postgresql/\([0-9]*\)/.*#\1#' | sort -rn | head -n1)}
    # pg_cron even where PostgreSQL was there already: the scheduling test runs real jobs
    if [ ! -e "/usr/share/postgresql/$WOE_ANCHOR_PG_MAJOR/extension/pg_cron.control" ]; then
        if [ "$(id -u)" = 0 ]; then
            log "installing pg_cron for PostgreSQL $WOE_ANCHOR_PG_MAJOR"
            apt_install "postgresql-$WOE_ANCHOR_PG_MAJOR-cron"
        else
            log "pg_cron is missing and only root can install it: the scheduling test will fail"
        fi
    fi
    # PGXS ships with the client package on Debian 12; elsewhere it may need the -dev package
    local pg_config=/usr/lib/postgresql/$WOE_ANCHOR_PG_MAJOR/bin/pg_config
    if [ ! -e "$("$pg_config" --pgxs 2>/dev/null)" ]; then
        log "installing PGXS for PostgreSQL $WOE_ANCHOR_PG_MAJOR"
        apt_install "postgresql-server-dev-$WOE_ANCHOR_PG_MAJOR"
    fi
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
    fi
    if ! cmp -s "$REPO/requirements-dev.txt" "$VENV/.requirements-dev.txt"; then
        log "installing Python packages into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REPO/requirements-dev.txt" \
            >"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
        cp "$REPO/requirements-dev.txt" "$VENV/.requirements-dev.txt"
    fi
    # the woe-anchor command (harness/pyproject.toml), editable: it follows the checkout
    if [ ! -x "$VENV/bin/woe-anchor" ]; then
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO/harness" \
            >>"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
    fi
}

# the report test renders in a real headless browser: Debian's chromium
setup_chromium() {
    command -v chromium >/dev/null && return
    [ "$(id -u)" = 0 ] || { log "chromium is missing and only root can install it: the report test will fail"; return; }
    log "installing chromium for the report test"
    apt_install chromium fonts-dejavu-core
}

cmd=${1:-}
shift || true
case "$cmd" in
    demo|test|test-matrix) ;;
    *) echo "usage: harness/run.sh {demo|test|test-matrix} [args...]" >&2; exit 2 ;;
esac
if [ -z "${WOE_ANCHOR_DSN:-}" ]; then setup_postgres; fi
setup_venv
if [ "$cmd" != demo ]; then setup_chromium; fi
export PYTHONPATH="$REPO/harness:$REPO/plpython${PYTHONPATH:+:$PYTHONPATH}"
if [ "$cmd" = demo ]; then
    exec "$VENV/bin/python" -m woe_anchor_harness demo "$@"
fi
if [ "$cmd" = test-matrix ]; then
    # the whole suite on the host's major, then on each other one (from its root: roots.py)
    status=0
    "$VENV/bin/python" -m pytest "$REPO/tests" "$@" || status=1
    for major in ${WOE_ANCHOR_MATRIX:-15 16 17 18}; do
        "$VENV/bin/python" -m woe_anchor_harness test-major "$major" "$@" || status=1
    done
    exit $status
fi
exec "$VENV/bin/python" -m pytest "$REPO/tests" "$@"
