#!/usr/bin/env bash
# Start a local PostgreSQL for the store's tests and print the URL to reach it.
#   export VOICEPRINT_TEST_POSTGRES=$(bash scripts/postgres.sh)
# Idempotent: installs Debian's postgresql when missing (needs root and apt), starts the
# cluster when it is down, and creates the role and database "voiceprint" once.
set -euo pipefail
ROLE=voiceprint
PASSWORD=voiceprint-test
if ! command -v pg_lsclusters >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "scripts/postgres.sh: postgresql is not installed (apt-get install postgresql as root)" >&2
    exit 1
  fi
  echo "installing postgresql" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [ "$status" != online ]; then
  pg_ctlcluster "$version" "$cluster" start >&2
fi
as_postgres=(runuser -u postgres --)
[ "$(id -un)" = postgres ] && as_postgres=()
psql=("${as_postgres[@]}" psql -p "$port" -v ON_ERROR_STOP=1 -qtA)
if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]; then
  "${psql[@]}" -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'" >&2
fi
if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$ROLE'")" ]; then
  "${psql[@]}" -c "CREATE DATABASE $ROLE OWNER $ROLE" >&2
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$port/$ROLE"
