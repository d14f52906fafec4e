#!/bin/sh
# Machine setup the sql-queries tests need, as .ci/run should do it before starting the services:
# performance_schema cannot be switched on at runtime in MariaDB/MySQL, and pg_stat_statements
# must be preloaded by PostgreSQL. Idempotent; restarts the servers only when it changed a file.
set -eu
changed_mysql=0
if ! grep -q '^performance_schema *= *ON' /etc/mysql/my.cnf; then
  printf '\n[mysqld]\nperformance_schema = ON\n' >> /etc/mysql/my.cnf
  changed_mysql=1
fi
if [ "$changed_mysql" = 1 ] && mariadb-admin -uroot ping >/dev/null 2>&1; then
  mariadb-admin -uroot shutdown
  setsid /usr/sbin/mariadbd >/dev/null 2>&1 < /dev/null &
  for _ in $(seq 1 50); do mariadb-admin -uroot ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
pgconf=/etc/postgresql/15/main/conf.d/scalpels-pg-stat-statements.conf
if [ ! -f "$pgconf" ]; then
  mkdir -p "$(dirname "$pgconf")"
  echo "shared_preload_libraries = 'pg_stat_statements'" > "$pgconf"
  pg_ctlcluster 15 main restart
fi
psql -h 127.0.0.1 -U postgres -qc 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
