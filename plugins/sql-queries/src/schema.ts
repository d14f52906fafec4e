import type { Schema } from '@scalpels/core';

const digestLabels = ['digest', 'fingerprint', 'schema'] as const;

export const schema: Schema = {
  series: {
    'sql.calls': {
      kind: 'counter',
      unit: 'count',
      description:
        'Statements executed per digest (performance_schema COUNT_STAR, pg_stat_statements calls)',
      labels: digestLabels,
    },
    'sql.time': {
      kind: 'counter',
      unit: 'ms',
      description:
        'Total execution time per digest (SUM_TIMER_WAIT in picoseconds / 1e9, total_exec_time)',
      labels: digestLabels,
    },
    'sql.lock_time': {
      kind: 'counter',
      unit: 'ms',
      description: 'Time spent waiting for table locks per digest (MySQL/MariaDB SUM_LOCK_TIME)',
      labels: digestLabels,
    },
    'sql.max_time': {
      kind: 'gauge',
      unit: 'ms',
      description:
        'Longest execution of the digest since the server first saw it (MAX_TIMER_WAIT, max_exec_time)',
      labels: digestLabels,
    },
    'sql.rows_sent': {
      kind: 'counter',
      unit: 'rows',
      description:
        'Rows returned to the client per digest (PostgreSQL: rows retrieved or affected)',
      labels: digestLabels,
    },
    'sql.rows_examined': {
      kind: 'counter',
      unit: 'rows',
      description: 'Rows read by the storage engine per digest (MySQL/MariaDB)',
      labels: digestLabels,
    },
    'sql.rows_affected': {
      kind: 'counter',
      unit: 'rows',
      description: 'Rows inserted, updated or deleted per digest (MySQL/MariaDB)',
      labels: digestLabels,
    },
    'sql.errors': {
      kind: 'counter',
      unit: 'count',
      description: 'Statements of the digest that ended with an error (MySQL/MariaDB)',
      labels: digestLabels,
    },
    'sql.warnings': {
      kind: 'counter',
      unit: 'count',
      description: 'Warnings raised by statements of the digest (MySQL/MariaDB)',
      labels: digestLabels,
    },
    'sql.no_index_used': {
      kind: 'counter',
      unit: 'count',
      description: 'Statements of the digest that scanned a table without an index (MySQL/MariaDB)',
      labels: digestLabels,
    },
    'sql.commands': {
      kind: 'counter',
      unit: 'count',
      description:
        'Server statement counters by command (MySQL/MariaDB Com_select, Com_insert, ... without the Com_ prefix), the tracer’s own statements excluded',
      labels: ['command'],
    },
  },
  events: {
    statement: {
      description:
        'One statement from the server log (events=true or a log technique): durationMs from the slow log or the PostgreSQL log, none from the general log',
      key: 'statement fingerprint (literals replaced, IN/VALUES lists collapsed, case and spacing normalized)',
      valueUnit: 'rows examined (MySQL slow log); absent otherwise',
      fields: {
        text: 'statement text, truncated to text-max characters, passwords redacted',
        thread: 'server connection id (MySQL thread id, PostgreSQL backend pid)',
        user: 'user name',
        host: 'client host (MySQL)',
        schema: 'default database',
        source: 'slow-log, general-log or pg-log',
        lockMs: 'lock wait in ms (slow log)',
        rowsSent: 'rows sent (slow log)',
        rowsExamined: 'rows examined (slow log)',
        rowsAffected: 'rows affected (MariaDB slow log)',
      },
    },
  },
};
