#!/bin/sh
# Turn a Redis snapshot (RDB) into the data directory of a Redis that runs with the append-only file on, as
# the stack's Redis does (docker-compose.yml, ./deploy-all.sh local). Redis with AOF on ignores a dump.rdb
# and starts empty, so: load the dump with AOF off, switch AOF on (Redis rewrites it from memory), wait for
# the rewrite, shut down. Runs in the Redis container (restore into the volume) and natively (local mode).
#
#   sh scripts/restore_redis.sh DATA_DIR SNAPSHOT.rdb [PORT]
set -eu

data="$1"
snapshot="$2"
port="${3:-6399}"
cli() { redis-cli -p "$port" "$@"; }

mkdir -p "$data"
rm -rf "$data/appendonlydir" "$data/dump.rdb"
cp "$snapshot" "$data/dump.rdb"
redis-server --bind 127.0.0.1 --port "$port" --dir "$data" --dbfilename dump.rdb --appendonly no --save "" \
  --daemonize yes --logfile "$data/restore.log"
tries=0
until cli ping >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 100 ] || { echo "redis-server did not start (see $data/restore.log)" >&2; exit 1; }
  sleep 0.1
done
keys="$(cli dbsize)"
cli config set appendonly yes >/dev/null
until cli info persistence | grep -q '^aof_enabled:1' \
    && cli info persistence | grep -q '^aof_rewrite_in_progress:0' \
    && cli info persistence | grep -q '^aof_rewrite_scheduled:0'; do
  sleep 0.1
done
cli shutdown >/dev/null 2>&1 || true
rm -f "$data/restore.log"
echo "redis: $keys keys restored into $data (append-only file)"
