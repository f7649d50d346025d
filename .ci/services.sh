#!/usr/bin/env bash
# Start throw-away PostgreSQL and Redis servers on loopback ports for the test suite, installing
# them from Debian's packages when missing. Source it: it exports MAILLON_TEST_POSTGRES_URL and
# MAILLON_TEST_REDIS_URL and defines maillon_services_stop. Used by .ci/run and by developers
# (`source .ci/services.sh && make test`).

MAILLON_PG_PORT=${MAILLON_PG_PORT:-55432}
MAILLON_REDIS_PORT=${MAILLON_REDIS_PORT:-56379}

maillon_install_missing() {
  local need=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  # Real-browser tests: Debian's Chromium and its matching driver (tests/browser/, docs/browser.md),
  # and npm for their test tooling (axe-core, pinned by tests/browser/package-lock.json).
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  # The optional C helper of audit/ (interior Merkle levels) builds against OpenSSL's headers.
  [ -f /usr/include/openssl/sha.h ] || need+=(libssl-dev)
  command -v gcc >/dev/null 2>&1 || need+=(gcc)
  # WeasyPrint renders PDFs with Pango.
  ldconfig -p 2>/dev/null | grep -q libpango-1.0 || need+=(libpango-1.0-0 libpangoft2-1.0-0)
  if ((${#need[@]})); then
    echo "Installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
  fi
}

maillon_services_start() {
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  MAILLON_PGDATA=$(mktemp -d /tmp/maillon-pg.XXXXXX)
  chown postgres:postgres "$MAILLON_PGDATA"
  runuser -u postgres -- "$pgbin/initdb" -D "$MAILLON_PGDATA" -A trust -U postgres -E UTF8 >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$MAILLON_PGDATA" -l "$MAILLON_PGDATA/server.log" -w \
    -o "-p $MAILLON_PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  MAILLON_PGBIN=$pgbin
  redis-server --port "$MAILLON_REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' \
    --appendonly no --pidfile "/tmp/maillon-redis-$MAILLON_REDIS_PORT.pid" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$MAILLON_REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export MAILLON_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$MAILLON_PG_PORT/postgres"
  export MAILLON_TEST_REDIS_URL="redis://127.0.0.1:$MAILLON_REDIS_PORT/0"
  export MAILLON_PGDATA MAILLON_PGBIN
}

maillon_services_stop() {
  if [ -n "${MAILLON_PGDATA:-}" ]; then
    runuser -u postgres -- "$MAILLON_PGBIN/pg_ctl" -D "$MAILLON_PGDATA" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$MAILLON_PGDATA"
  fi
  redis-cli -p "$MAILLON_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

maillon_install_missing
maillon_services_start
