#!/usr/bin/env bash
# Run a command with PostgreSQL and Redis for the load and crash tests (`make load`, `make crash`):
# the servers of MAILLON_TEST_POSTGRES_URL and MAILLON_TEST_REDIS_URL when both are set, else
# throw-away servers started by .ci/services.sh (installed from Debian's packages when missing,
# as in CI) and stopped when the command ends. Exits with the command's status.
set -eo pipefail
if [ -z "${MAILLON_TEST_POSTGRES_URL:-}" ] || [ -z "${MAILLON_TEST_REDIS_URL:-}" ]; then
  # shellcheck source=../../.ci/services.sh
  source "$(dirname "$0")/../../.ci/services.sh"
  trap maillon_services_stop EXIT
fi
"$@"
