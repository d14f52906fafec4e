import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { ExecaSpawner, WorkerRunner, diagnostic, type TraceRecord } from '@scalpels/core';
import { cli, scratchDir } from './helpers.js';

/**
 * Promise: what traced programs and task names contain cannot steer the operator's terminal or
 * spreadsheet, and a worker line cut at 1 MiB cannot forge a record with its tail.
 */
const scratch = scratchDir('output');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const ESC = '\u001b';
const scalpels = (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [cli, ...args], { reject: false, env: { NO_COLOR: '1', ...env } });

describe('human output and exports', () => {
  it('terminal escapes in a traced process name and a task name reach no terminal raw', async () => {
    // The workload's process name (comm) is the name it was started under: one with escapes.
    const evil = join(scratch, `${ESC}[2J${ESC}]0;pwned\u0007`);
    symlinkSync('/usr/bin/sleep', evil);
    const store = `sqlite://${join(scratch, 'esc.db')}`;
    const name = `task${ESC}]8;;http://x${ESC}\\\r\nforged line`;
    const run = await scalpels(
      ['run', '-t', 'proc', '--name', name, '--store', store, '--', evil, '0.3'],
      {
        SCALPELS_NODE: '=HYPERLINK("http://attacker/")',
      },
    );
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).not.toContain(ESC); // the summary of `run`
    const tasks = await scalpels(['tasks', '--store', store]);
    const report = await scalpels(['report', '--last', '--store', store]);
    const status = await scalpels(['watch', '--last', '--once', '--store', store]);
    for (const out of [tasks.stdout, report.stdout, status.stdout]) {
      expect(out).not.toContain(ESC);
      expect(out).not.toContain('\u0007');
      expect(out).not.toContain('\r');
      expect(out).not.toMatch(/^forged line/m);
    }
    // Shown escaped: ESC as \x1b, CR and LF as \r and \n, on one row.
    expect(tasks.stdout).toContain(String.raw`task\x1b]8;;http://x\x1b\\r\nforged line`);
    expect(report.stdout).toContain('\\x1b[2J\\x1b]0;pwned\\x07'); // the comm column
    expect(report.stdout).toContain(String.raw`task\x1b]8;;http://x\x1b\\r\nforged line`);
    // CSV: a cell a spreadsheet would run as a formula is neutralized; numbers stay numbers.
    const csv = await scalpels(['report', '--last', '--format', 'csv', '--store', store]);
    expect(csv.exitCode).toBe(0);
    const rows = csv.stdout.trim().split('\n').slice(1);
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) expect(r).toContain(`"'=HYPERLINK(""http://attacker/"")"`);
    expect(csv.stdout).not.toMatch(/(^|,)=HYPERLINK/m);
  });

  it('after a line is cut at 1 MiB its tail is discarded up to the newline and counted, never read as a record', async () => {
    const worker = join(scratch, 'long-line.mjs');
    // The tail after 1 MiB is a well-formed record: it is the forgery.
    writeFileSync(
      worker,
      `process.stdout.write('# ready\\nv 1\\n' + 'x'.repeat((1 << 20) + 100));
       process.stdout.write('v 666\\n');
       process.stdout.write('v 2\\n', () => process.exit(0));`,
    );
    const records: TraceRecord[] = [];
    const runner = new WorkerRunner(
      new ExecaSpawner(),
      { argv: [process.execPath, worker], ready: { stdout: /^# ready/ } },
      {
        line(text) {
          const m = /^v (\d+)$/.exec(text);
          if (!m) return text.startsWith('#') ? null : diagnostic('not a value');
          return { kind: 'sample', series: 'v', value: Number(m[1]) };
        },
      },
      { series: { v: { kind: 'gauge', unit: 'count', description: 'value' } } },
      { write: (b: TraceRecord[]) => void records.push(...b) },
    );
    await runner.start();
    const outcome = await runner.done;
    expect(records.map((r) => (r.kind === 'sample' ? r.value : null))).toEqual([1, 2]);
    expect(outcome.parseErrors).toBe(1);
  });
});
