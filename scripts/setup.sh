#!/usr/bin/env bash
# Prepares a machine for Scalpels (idempotent): Debian packages the tracers use, pnpm, the
# workspace's dependencies and build, kernel tracing mounts, and the local services the
# integration tests talk to. Run as root on a fresh machine; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

# --- Debian packages --------------------------------------------------------------------------
mapfile -t packages < <(grep -v '^\s*#' .ci/apt-packages | sed '/^\s*$/d')
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Kernel tracing filesystems (bpftrace and perf need tracefs) -------------------------------
if [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || log "could not mount tracefs"
fi
if [ -d /sys/kernel/debug ] && ! mountpoint -q /sys/kernel/debug; then
  mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true
fi

# --- Local services the integration tests use ------------------------------------------------
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 1; done; log "service on port $1 did not come up"; return 1; }
if ! up 3306 && command -v mariadbd >/dev/null; then
  log "starting MariaDB"; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; wait_up 3306
fi
if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  log "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start; wait_up 5432
fi
if ! up 6379 && command -v redis-server >/dev/null; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_up 6379
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null; then
  log "starting RabbitMQ"; rabbitmq-server -detached; wait_up 5672
fi

# --- Server settings the sql-queries tests rely on (both need a restart to change) -----------
# MariaDB: performance_schema is a start option.
if up 3306 && [ "$(mysql -N -B -e 'SELECT @@performance_schema' 2>/dev/null)" = "0" ]; then
  log "enabling MariaDB performance_schema (restart)"
  grep -q '^performance_schema *= *ON' /etc/mysql/my.cnf 2>/dev/null ||
    printf '\n[mysqld]\nperformance_schema = ON\n' >> /etc/mysql/my.cnf
  mysqladmin shutdown
  for _ in $(seq 1 30); do up 3306 || break; sleep 1; done
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_up 3306
fi
# PostgreSQL: pg_stat_statements must be preloaded.
if up 5432 && ! psql -h 127.0.0.1 -U postgres -Atc 'SHOW shared_preload_libraries' 2>/dev/null | grep -q pg_stat_statements; then
  log "preloading pg_stat_statements in PostgreSQL (restart)"
  version=$(ls /etc/postgresql | head -1)
  mkdir -p "/etc/postgresql/$version/main/conf.d"
  echo "shared_preload_libraries = 'pg_stat_statements'" > "/etc/postgresql/$version/main/conf.d/scalpels-pg-stat-statements.conf"
  pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  wait_up 5432
fi

# --- Node workspace ---------------------------------------------------------------------------
command -v pnpm >/dev/null || { log "installing pnpm"; npm i -g pnpm@10 >/dev/null; }
if [ "${CI:-}" = "true" ]; then pnpm install --frozen-lockfile; else pnpm install; fi
pnpm run build
