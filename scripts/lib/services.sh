# shellcheck shell=bash
# The services the test suite talks to: PostgreSQL, Redis, an SMTP capture server
# (aiosmtpd, started by the tests themselves) and the build dependencies.
#
# Sourced by scripts/test (and usable alone: `source scripts/lib/services.sh;
# admit_services_up`). Each service is reused when the URL in the environment answers;
# otherwise a private throwaway instance is started on 127.0.0.1 and stopped again when
# the sourcing shell exits. Missing packages are installed with apt-get (Debian), so
# the suite runs on a fresh machine; nothing of the machine's own services is touched.
#
# Exports: ADMIT_TEST_DATABASE_URL, ADMIT_TEST_REDIS_URL, ADMIT_TEST_SMTP_PYTHON,
# ADMIT_TEST_PG_BINDIR, ADMIT_TEST_REDIS_SERVER (for tests/outages.rs),
# ADMIT_TEST_SCHEMATHESIS (for tests/schemathesis.rs).
# Knobs: ADMIT_TEST_PRIVATE_PG_PORT (55432), ADMIT_TEST_PRIVATE_REDIS_PORT (56379).

ADMIT_DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
ADMIT_DEFAULT_REDIS_URL=redis://127.0.0.1:6379
ADMIT_DEFAULT_SMTP_PYTHON=/usr/bin/python3

admit_say() { printf '==> %s\n' "$*" >&2; }
admit_die() {
    printf 'scripts/test: error: %s\n' "$*" >&2
    exit 1
}

# --- cleanup: one EXIT trap running every registered action, last registered first ---

ADMIT_CLEANUPS=()
admit_on_exit() { ADMIT_CLEANUPS+=("$1"); }
admit_run_cleanups() {
    local i
    for ((i = ${#ADMIT_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${ADMIT_CLEANUPS[i]}" || true
    done
    ADMIT_CLEANUPS=()
}
trap 'admit_run_cleanups' EXIT
# A signal ends the script normally, so the EXIT trap stops what we started.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- packages ---

ADMIT_APT_UPDATED=
admit_pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# admit_apt_install WHY PACKAGE...: install the packages (apt-get update once first).
admit_apt_install() {
    local why=$1
    shift
    command -v apt-get >/dev/null 2>&1 ||
        admit_die "$why needs the packages $*, and there is no apt-get here: install them yourself"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 ||
            admit_die "$why needs the packages $*: run as root, or install them yourself"
        sudo=(sudo -n)
    fi
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/admit-apt.XXXXXX")
    admit_say "installing $* ($why)"
    if [ -z "$ADMIT_APT_UPDATED" ]; then
        if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            admit_die "apt-get update failed"
        fi
        ADMIT_APT_UPDATED=1
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        admit_die "apt-get install $* failed"
    fi
    rm -f "$log"
}

# admit_ensure_pkgs WHY PACKAGE...: install those of the packages that are missing.
admit_ensure_pkgs() {
    local why=$1 missing=() p
    shift
    command -v dpkg-query >/dev/null 2>&1 || return 0 # not Debian: assume the developer set up the machine
    for p in "$@"; do
        admit_pkg_installed "$p" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] || admit_apt_install "$why" "${missing[@]}"
}

# --- small helpers ---

# True when something accepts TCP connections on 127.0.0.1:$1.
admit_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The first port from $1 on that nobody listens on.
admit_free_port() {
    local port=$1
    while admit_port_busy "$port"; do
        port=$((port + 1))
        [ "$port" -lt $(($1 + 100)) ] || admit_die "no free port in $1..$port"
    done
    echo "$port"
}

# Stop private instances left behind by runs that were killed (SIGKILL, power loss):
# each private directory records the pid of the shell that owns it.
admit_sweep_stale() {
    local dir owner
    for dir in "${TMPDIR:-/tmp}"/admit-test-pg.* "${TMPDIR:-/tmp}"/admit-test-redis.*; do
        [ -f "$dir/owner" ] || continue
        # Another user's leftovers are theirs to clean.
        [ "$(id -u)" -eq 0 ] || [ -O "$dir" ] || continue
        owner=$(cat "$dir/owner" 2>/dev/null) || continue
        if [ -n "$owner" ] && [ -d "/proc/$owner" ]; then
            continue # still in use by a running scripts/test
        fi
        case $dir in
        */admit-test-pg.*) admit_pg_stop "$dir" ;;
        */admit-test-redis.*) admit_redis_stop "$dir" ;;
        esac
    done
}

# --- PostgreSQL ---

# True when the URL answers and its role may create databases (each test makes its own).
admit_pg_usable() {
    local out
    out=$(PGCONNECT_TIMEOUT=5 psql "$1" -X -w -A -t -q -v ON_ERROR_STOP=1 \
        -c "select 'ok' from pg_roles where rolname = current_user and (rolsuper or rolcreatedb)" \
        </dev/null 2>/dev/null) || return 1
    [ "$out" = ok ]
}

# The directory holding initdb and pg_ctl, newest version first; empty when none.
admit_pg_bindir() {
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"
            return
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
    fi
}

# Run a PostgreSQL server program as an unprivileged user (initdb refuses root).
admit_as_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

admit_pg_stop() {
    local dir=$1 bindir
    if [ -f "$dir/data/postmaster.pid" ]; then
        bindir=$(cat "$dir/bindir" 2>/dev/null || admit_pg_bindir)
        admit_as_pg_user "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir" 2>/dev/null || true
}

admit_pg_start_private() {
    local bindir dir port url
    bindir=$(admit_pg_bindir)
    if [ -z "$bindir" ]; then
        admit_apt_install "a private PostgreSQL" postgresql postgresql-client
        bindir=$(admit_pg_bindir)
        [ -n "$bindir" ] || admit_die "PostgreSQL was installed but no initdb/pg_ctl found under /usr/lib/postgresql/*/bin"
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        admit_die "running as root and there is no 'postgres' OS user to own a private PostgreSQL (initdb refuses root)"
    fi

    port=$(admit_free_port "${ADMIT_TEST_PRIVATE_PG_PORT:-55432}")
    dir=$(mktemp -d "${TMPDIR:-/tmp}/admit-test-pg.XXXXXX")
    echo $$ >"$dir/owner"
    echo "$bindir" >"$dir/bindir"
    admit_on_exit "admit_pg_stop '$dir'"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"

    if ! admit_as_pg_user "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
        -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        admit_die "initdb of a private PostgreSQL in $dir/data failed"
    fi
    # Throwaway data: durability off, sockets kept inside the private directory.
    admit_as_pg_user tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# scripts/test: a private throwaway cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    if ! admit_as_pg_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
        cat "$dir/server.log" >&2 2>/dev/null || true
        admit_die "a private PostgreSQL on 127.0.0.1:$port did not start (log above)"
    fi
    url="postgres://postgres@127.0.0.1:$port/postgres"
    local i
    for ((i = 0; i < 60; i++)); do
        admit_pg_usable "$url" && break
        sleep 0.5
    done
    admit_pg_usable "$url" || admit_die "a private PostgreSQL started on 127.0.0.1:$port but does not answer"
    export ADMIT_TEST_DATABASE_URL=$url
    admit_say "PostgreSQL: private, $url (data in $dir, stopped on exit)"
}

admit_postgres_up() {
    local url=${ADMIT_TEST_DATABASE_URL:-$ADMIT_DEFAULT_DATABASE_URL}
    if ! command -v psql >/dev/null 2>&1; then
        admit_apt_install "psql, to reach PostgreSQL" postgresql-client
    fi
    if admit_pg_usable "$url"; then
        export ADMIT_TEST_DATABASE_URL=$url
        admit_say "PostgreSQL: $url"
        return
    fi
    admit_say "PostgreSQL: $url does not answer (or its role cannot CREATE DATABASE); starting a private one"
    admit_pg_start_private
}

# --- Redis ---

admit_redis_usable() {
    local out
    out=$(timeout 10 redis-cli -u "$1" ping </dev/null 2>/dev/null) || return 1
    [ "$out" = PONG ]
}

admit_redis_stop() {
    local dir=$1 pid i
    pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        grep -q redis "/proc/$pid/cmdline" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir" 2>/dev/null || true
}

admit_redis_start_private() {
    local dir port url
    command -v redis-server >/dev/null 2>&1 || admit_apt_install "a private Redis" redis-server
    port=$(admit_free_port "${ADMIT_TEST_PRIVATE_REDIS_PORT:-56379}")
    dir=$(mktemp -d "${TMPDIR:-/tmp}/admit-test-redis.XXXXXX")
    echo $$ >"$dir/owner"
    admit_on_exit "admit_redis_stop '$dir'"
    if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$dir/redis.log" \
        </dev/null >/dev/null 2>&1; then
        cat "$dir/redis.log" >&2 2>/dev/null || true
        admit_die "a private Redis on 127.0.0.1:$port did not start"
    fi
    url="redis://127.0.0.1:$port"
    local i
    for ((i = 0; i < 100; i++)); do
        admit_redis_usable "$url" && break
        sleep 0.1
    done
    if ! admit_redis_usable "$url"; then
        cat "$dir/redis.log" >&2 2>/dev/null || true
        admit_die "a private Redis started on 127.0.0.1:$port but does not answer PING"
    fi
    export ADMIT_TEST_REDIS_URL=$url
    admit_say "Redis: private, $url (stopped on exit)"
}

admit_redis_up() {
    local url=${ADMIT_TEST_REDIS_URL:-$ADMIT_DEFAULT_REDIS_URL}
    # redis-cli comes with redis-tools (redis-server depends on it).
    command -v redis-cli >/dev/null 2>&1 || admit_apt_install "redis-cli, to reach Redis" redis-tools
    if admit_redis_usable "$url"; then
        export ADMIT_TEST_REDIS_URL=$url
        admit_say "Redis: $url"
        return
    fi
    admit_say "Redis: $url does not answer PING; starting a private one"
    admit_redis_start_private
}

# --- SMTP capture (the tests start aiosmtpd themselves) ---

admit_smtp_python_up() {
    local py=${ADMIT_TEST_SMTP_PYTHON:-$ADMIT_DEFAULT_SMTP_PYTHON}
    if ! "$py" -c 'import aiosmtpd.handlers, aiosmtpd.__main__' </dev/null >/dev/null 2>&1; then
        if [ "$py" != "$ADMIT_DEFAULT_SMTP_PYTHON" ]; then
            admit_die "ADMIT_TEST_SMTP_PYTHON=$py cannot import aiosmtpd (pip install aiosmtpd, or unset it to use $ADMIT_DEFAULT_SMTP_PYTHON)"
        fi
        admit_apt_install "the SMTP capture server of the tests" python3-aiosmtpd
        "$py" -c 'import aiosmtpd.handlers, aiosmtpd.__main__' </dev/null >/dev/null 2>&1 ||
            admit_die "$py still cannot import aiosmtpd after installing python3-aiosmtpd"
    fi
    export ADMIT_TEST_SMTP_PYTHON=$py
}

# --- Chromium, for the page tests (headless, driven over the DevTools protocol) ---

admit_chromium_up() {
    local chromium=${ADMIT_TEST_CHROMIUM:-/usr/bin/chromium}
    if [ ! -x "$chromium" ]; then
        if [ -n "${ADMIT_TEST_CHROMIUM:-}" ]; then
            admit_die "ADMIT_TEST_CHROMIUM=$chromium is not an executable"
        fi
        admit_apt_install "the browser tests of the authorize pages" chromium
        [ -x "$chromium" ] || admit_die "chromium was installed but $chromium is missing"
    fi
    export ADMIT_TEST_CHROMIUM=$chromium
}

# --- libfaketime, for tests that run a service with its clock moved (the purge) ---

admit_faketime_up() {
    local lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
    if [ -z "${ADMIT_TEST_FAKETIME_LIB:-}" ]; then
        lib=$(dpkg -L libfaketime 2>/dev/null | grep -m1 'libfaketimeMT\.so\.1$' || true)
        if [ -z "$lib" ]; then
            admit_apt_install "the test-account purge test (a clock 25 hours back)" faketime
            lib=$(dpkg -L libfaketime 2>/dev/null | grep -m1 'libfaketimeMT\.so\.1$' || true)
        fi
        [ -n "$lib" ] || admit_die "faketime was installed but libfaketimeMT.so.1 is missing"
        export ADMIT_TEST_FAKETIME_LIB=$lib
    fi
}

# --- Node.js, for the real OpenID Connect provider of the social sign-up tests ---

# admit_oidc_provider_up DIR: Node.js and npm (apt-get when missing), then the pinned
# oidc-provider of DIR/package-lock.json (`npm ci`) unless DIR/node_modules has it.
admit_oidc_provider_up() {
    local dir=$1 major
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        admit_apt_install "the OpenID Connect provider of the social sign-up tests" nodejs npm
    fi
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    [ "$major" -ge 20 ] ||
        admit_die "oidc-provider (tests/oidc) needs Node.js 20 or later; $(command -v node) is $(node --version 2>/dev/null)"
    if [ ! -f "$dir/node_modules/oidc-provider/package.json" ]; then
        admit_say "npm ci in $dir (oidc-provider, pinned by its package-lock.json)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null >&2) ||
            admit_die "npm ci in $dir failed"
    fi
    export ADMIT_TEST_NODE
    ADMIT_TEST_NODE=$(command -v node)
}

# --- build dependencies and toolchain ---

admit_build_deps_up() {
    admit_ensure_pkgs "building the workspace" build-essential pkg-config libpq-dev
    local cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$cargo_bin/cargo" ]; then
        export PATH="$cargo_bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        # Debian's own rustc is older than the workspace's rust-version: use rustup.
        command -v curl >/dev/null 2>&1 || admit_apt_install "downloading rustup" curl ca-certificates
        admit_say "installing the Rust toolchain with rustup (stable, with rustfmt and clippy)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y -q --no-modify-path --profile minimal -c rustfmt -c clippy >&2 ||
            admit_die "installing rustup failed"
        export PATH="$cargo_bin:$PATH"
    fi
    local sub component
    for sub in fmt:rustfmt clippy:clippy; do
        component=${sub#*:}
        sub=${sub%%:*}
        if ! cargo "$sub" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null 2>&1 || admit_die "cargo $sub is missing and there is no rustup to add $component"
            rustup component add "$component" >&2 || admit_die "rustup component add $component failed"
        fi
    done
}

# --- programs the outage suite (tests/outages.rs) stops and starts itself ---

# Exports ADMIT_TEST_PG_BINDIR (initdb, pg_ctl; run as the postgres user when root)
# and ADMIT_TEST_REDIS_SERVER, installing PostgreSQL's server and Redis when missing.
admit_outage_tools_up() {
    local bindir
    bindir=$(admit_pg_bindir)
    if [ -z "$bindir" ]; then
        admit_apt_install "the PostgreSQL outage test (initdb, pg_ctl)" postgresql
        bindir=$(admit_pg_bindir)
        [ -n "$bindir" ] || admit_die "PostgreSQL was installed but no initdb/pg_ctl found under /usr/lib/postgresql/*/bin"
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        admit_die "running as root and there is no 'postgres' OS user to own the outage test's PostgreSQL (initdb refuses root)"
    fi
    command -v runuser >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] ||
        admit_die "the outage test runs initdb as postgres with runuser, which is missing"
    export ADMIT_TEST_PG_BINDIR=$bindir
    command -v redis-server >/dev/null 2>&1 || admit_apt_install "the Redis outage test" redis-server
    export ADMIT_TEST_REDIS_SERVER
    ADMIT_TEST_REDIS_SERVER=$(command -v redis-server)
}

# --- schemathesis, for tests/schemathesis.rs (the API against its OpenAPI description) ---

ADMIT_SCHEMATHESIS_VERSION=4.32.5

# Exports ADMIT_TEST_SCHEMATHESIS: a schemathesis of the pinned version, from
# ADMIT_TEST_SCHEMATHESIS or PATH when one is there already, else installed with pip
# into a venv under ${XDG_CACHE_HOME:-$HOME/.cache}/admit (reused on the next run).
admit_schemathesis_up() {
    local st=${ADMIT_TEST_SCHEMATHESIS:-} venv=${XDG_CACHE_HOME:-$HOME/.cache}/admit/venv-schemathesis-$ADMIT_SCHEMATHESIS_VERSION
    [ -n "$st" ] || st=$(command -v schemathesis 2>/dev/null || true)
    if [ -n "$st" ] && "$st" --version 2>/dev/null | grep -q "version $ADMIT_SCHEMATHESIS_VERSION\$"; then
        export ADMIT_TEST_SCHEMATHESIS=$st
        return
    fi
    st=$venv/bin/schemathesis
    if ! "$st" --version 2>/dev/null | grep -q "version $ADMIT_SCHEMATHESIS_VERSION\$"; then
        "${ADMIT_TEST_PYTHON:-python3}" -c 'import venv, ensurepip' </dev/null >/dev/null 2>&1 ||
            admit_apt_install "the venv of schemathesis" python3-venv
        admit_say "installing schemathesis $ADMIT_SCHEMATHESIS_VERSION into $venv"
        rm -rf "$venv"
        "${ADMIT_TEST_PYTHON:-python3}" -m venv "$venv" >&2 || admit_die "python3 -m venv $venv failed"
        "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$ADMIT_SCHEMATHESIS_VERSION" </dev/null >&2 ||
            admit_die "pip install schemathesis==$ADMIT_SCHEMATHESIS_VERSION failed"
    fi
    export ADMIT_TEST_SCHEMATHESIS=$st
}

# Everything the suite needs from the machine.
admit_services_up() {
    admit_sweep_stale
    admit_postgres_up
    admit_redis_up
    admit_smtp_python_up
    admit_chromium_up
    admit_faketime_up
    admit_outage_tools_up
    admit_schemathesis_up
}
