import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';
import { MYSQL_TECHNIQUES, PG_TECHNIQUES } from './checks.js';

/** The options of sql-queries (`--set sql-queries.KEY=VALUE`). */
export const OPTIONS = {
  engine: {
    type: 'string',
    choices: ['mysql', 'postgresql'],
    default: 'mysql',
    description: 'Database server kind (MariaDB counts as mysql)',
  },
  technique: {
    type: 'string',
    choices: ['auto', ...MYSQL_TECHNIQUES, ...PG_TECHNIQUES],
    default: 'auto',
    description: 'Force a technique instead of the first that works here',
  },
  interval: {
    type: 'duration',
    default: '1s',
    min: '100ms',
    max: '1h',
    description: 'How often statistics are read',
  },
  events: {
    type: 'boolean',
    default: false,
    description:
      'Also record every statement as an event (server log: slow log, general log or PostgreSQL log)',
  },
  'events-source': {
    type: 'string',
    choices: ['slow-log', 'general-log'],
    default: 'slow-log',
    description:
      'MySQL/MariaDB log for events=true: slow log with long_query_time=0 (durations) or general log (none)',
  },
  host: {
    type: 'string',
    description: 'Server host (default: the local unix socket, else 127.0.0.1)',
  },
  port: { type: 'port', description: 'Server port (default 3306 / 5432)' },
  socket: {
    type: 'path',
    description: 'Unix socket of MySQL/MariaDB (or socket directory of PostgreSQL)',
  },
  user: {
    type: 'string',
    description:
      'User (default: from defaults-file, MYSQL_USER/PGUSER, else login name / postgres)',
  },
  database: {
    type: 'string',
    description:
      'Database to connect to (PostgreSQL: where pg_stat_statements lives; default postgres)',
  },
  'defaults-file': {
    type: 'file',
    trust: 'credential',
    description:
      'MySQL option file with a [client] section (user, password, host, port, socket): root-owned, 0600/0640, not a symlink, as root inside /etc/scalpels/; passwords only here or in MYSQL_PWD/PGPASSWORD',
  },
  'log-file': {
    type: 'path',
    description: 'PostgreSQL log file to follow (default: found from the server)',
  },
  client: {
    type: 'list',
    description:
      'Only statements of the TCP connections of these client processes (pids or names, with descendants); needs events',
  },
  'text-max': {
    type: 'integer',
    default: 2048,
    min: 0,
    max: 1_000_000,
    description: 'Statement text kept per event, in characters',
    unit: 'chars',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
