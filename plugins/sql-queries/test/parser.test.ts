/** The parser over output recorded from the real collector (testdata/), checked against what the servers counted. */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTestdata, parseLines, parseTestdataCase } from '@scalpels/core/testing';
import type { Sample, TraceEvent, TraceRecord } from '@scalpels/core';
import plugin from '../src/index.js';
import { redact } from '../src/parser.js';
import { pluginDir } from './helpers.js';

// The *-secrets-* cases have their own test (redaction.test.ts): no workload counts to compare.
const cases = loadTestdata(join(pluginDir, 'testdata')).filter((c) => !c.name.includes('secrets'));

interface Truth {
  inserts: number;
  selects: number;
  digests?: Record<string, number>;
  pgStatStatements?: Record<string, number>;
  Com_insert?: number;
}

const callsByDigest = (records: TraceRecord[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const r of records)
    if (r.kind === 'sample' && r.series === 'sql.calls')
      out[r.labels!.digest!] = (out[r.labels!.digest!] ?? 0) + r.value;
  return out;
};

describe('parser over recorded collector output', () => {
  it('has recorded cases', () => {
    expect(cases.map((c) => c.name).sort()).toEqual([
      'mariadb-10.11.19-digest-k20',
      'mariadb-10.11.19-digest-slowlog-events-k20',
      'mariadb-10.11.19-general-log-k20',
      'postgresql-15.20-pg-log-k20',
      'postgresql-15.20-pg-stat-statements-k20',
    ]);
  });

  for (const c of cases) {
    describe(c.name, () => {
      const out = parseTestdataCase(plugin, c);
      const truthFile = join(c.dir, 'truth.json');
      const truth = existsSync(truthFile)
        ? (JSON.parse(readFileSync(truthFile, 'utf8')) as Truth)
        : undefined;

      it('gives the expected records', () => {
        expect(out.records).toEqual(c.expected.records);
        expect(out.diagnostics.length).toBe(c.expected.parseErrors ?? 0);
        expect(out.dropped).toBe(c.expected.dropped ?? 0);
      });

      it('agrees with what the server counted', () => {
        expect(truth).toBeDefined();
        const serverCounts = truth!.digests ?? truth!.pgStatStatements;
        const digestTechnique =
          c.technique === 'mysql-digest' || c.technique === 'pg-stat-statements';
        if (digestTechnique) {
          const calls = callsByDigest(out.records);
          for (const [digest, n] of Object.entries(serverCounts!))
            expect(calls[digest], digest).toBe(n);
        }
        if (truth!.Com_insert !== undefined) {
          const inserts = out.records
            .filter(
              (r): r is Sample =>
                r.kind === 'sample' &&
                r.series === 'sql.commands' &&
                r.labels?.command === 'insert',
            )
            .reduce((a, r) => a + r.value, 0);
          expect(inserts).toBe(truth!.Com_insert);
        }
        const events = out.records.filter((r): r is TraceEvent => r.kind === 'event');
        if (
          (c.technique !== 'mysql-digest' && c.technique !== 'pg-stat-statements') ||
          c.options.events
        ) {
          const insertKey = events.find((e) =>
            /^insert into (\S+) values\(\?\+\)$/.test(e.key),
          )!.key;
          expect(events.filter((e) => e.key === insertKey)).toHaveLength(truth!.inserts);
          const selects = events.filter((e) =>
            /^select (\*|v) from \S+ where id (= \?|in\(\?\+\))$/.test(e.key),
          );
          expect(selects).toHaveLength(truth!.selects);
          // The same shape with K different literals is one key.
          expect(
            new Set(events.filter((e) => / where id = \?$/.test(e.key)).map((e) => e.key)).size,
          ).toBe(1);
          if (c.technique !== 'mysql-general-log')
            expect(selects.every((e) => typeof e.durationMs === 'number')).toBe(true);
        }
      });
    });
  }
});

describe('parser robustness', () => {
  it('counts garbage as parse errors and never throws', () => {
    const out = parseLines(plugin, [
      'not json',
      '{"t":"digest"}',
      '{"t":"nope"}',
      '42',
      '',
      '{"t":"statement"}',
      '{"t":"lost","count":3,"why":"x"}',
    ]);
    expect(out.records).toEqual([]);
    expect(out.diagnostics.map((d) => d.line)).toEqual([1, 2, 3, 4, 6]);
    expect(out.dropped).toBe(3);
  });

  it('converts picoseconds to milliseconds beyond double precision of the raw timer', () => {
    const line = JSON.stringify({
      t: 'digest',
      ts: 1,
      engine: 'mysql',
      digest: 'd',
      schema: 's',
      text: 'SELECT ?',
      calls: 2,
      timePs: '9007199254740993000',
      maxPs: '1500000000',
    });
    const out = parseLines(plugin, [line]);
    const time = out.records.find(
      (r): r is Sample => r.kind === 'sample' && r.series === 'sql.time',
    )!;
    expect(time.value).toBeCloseTo(9007199254.740993, 3);
    expect(
      out.records.find((r): r is Sample => r.kind === 'sample' && r.series === 'sql.max_time')!
        .value,
    ).toBe(1.5);
  });

  it('keeps passwords out of statement text', () => {
    expect(redact("CREATE USER 'a'@'%' IDENTIFIED BY 's3cret'")).toBe(
      "CREATE USER 'a'@'%' IDENTIFIED BY '***'",
    );
    expect(redact("SET PASSWORD FOR 'a'@'%' = PASSWORD('s3cret')")).toBe(
      "SET PASSWORD FOR 'a'@'%' = PASSWORD('***')",
    );
    expect(redact("ALTER ROLE nova PASSWORD 's3cret'")).toBe("ALTER ROLE nova PASSWORD '***'");
    expect(redact("CHANGE MASTER TO MASTER_PASSWORD='s3cret'")).toBe(
      "CHANGE MASTER TO MASTER_PASSWORD='***'",
    );
    const line = JSON.stringify({
      t: 'statement',
      ts: 1,
      source: 'slow-log',
      text: "GRANT ALL ON *.* TO x IDENTIFIED BY 'hunter2'",
      durationMs: 1,
    });
    expect(JSON.stringify(parseLines(plugin, [line]).records)).not.toContain('hunter2');
  });
});
