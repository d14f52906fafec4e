import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { diagnostic, type Parser, type Schema, type TraceRecord, type WorkerSpec } from './api.js';
import { isSameProcess } from './procfs.js';
import { WorkerRunner } from './runner.js';
import { ExecaSpawner } from './spawner.js';
import { waitFor } from './testing/run-worker.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-runner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const schema: Schema = { series: { v: { kind: 'gauge', unit: 'count', description: 'value' } } };
const parser = (): Parser => ({
  line(text) {
    const m = /^v (\d+)$/.exec(text);
    if (!m) return text.startsWith('#') ? null : diagnostic(`not a value: ${text}`);
    return { kind: 'sample', series: 'v', value: Number(m[1]) };
  },
});

function script(name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, body);
  return file;
}

function spec(file: string, extra: Partial<WorkerSpec> = {}): WorkerSpec {
  return { argv: [process.execPath, file], ready: { stdout: /^# ready/ }, ...extra };
}

const collect = () => {
  const records: TraceRecord[] = [];
  return { records, sink: { write: (b: TraceRecord[]) => void records.push(...b) } };
};

describe('WorkerRunner with real worker processes', () => {
  it('parses lines, counts garbage as parse errors, and stops on the plugin signal', async () => {
    const file = script(
      'lines.mjs',
      `let out = '# ready\\n';
       for (let i = 1; i <= 1000; i++) out += 'v ' + i + '\\n';
       out += 'garbage one\\n\\u0000\\u0001binary\\nv notanumber\\n';
       process.stdout.write(out);
       process.on('SIGTERM', () => { process.stdout.write('v 1001\\n', () => process.exit(0)); });
       setInterval(() => {}, 1000);`,
    );
    const { records, sink } = collect();
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, sink);
    await r.start();
    await new Promise((res) => setTimeout(res, 300));
    const o = await r.stop();
    expect(o.status).toBe('stopped');
    expect(o.exitCode).toBe(0);
    expect(o.records).toBe(1001);
    expect(o.parseErrors).toBe(3);
    expect(records.map((x) => (x.kind === 'sample' ? x.value : 0))).toEqual(
      Array.from({ length: 1001 }, (_, i) => i + 1),
    );
    expect(records.every((x) => typeof x.ts === 'number')).toBe(true);
  });

  it('marks a worker killed with SIGKILL failed and keeps the records it sent', async () => {
    const file = script(
      'dies.mjs',
      `process.stdout.write('# ready\\n');
       let i = 0; setInterval(() => process.stdout.write('v ' + (++i) + '\\n'), 10);`,
    );
    const { records, sink } = collect();
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, sink, {
      flushMs: 20,
    });
    await r.start();
    await new Promise((res) => setTimeout(res, 300));
    process.kill(r.pid!, 'SIGKILL');
    const o = await r.done;
    expect(o.status).toBe('failed');
    expect(o.signal).toBe('SIGKILL');
    expect(o.error).toBe('worker killed by SIGKILL');
    expect(o.records).toBeGreaterThan(5);
    expect(records).toHaveLength(o.records);
  });

  it('keeps a worker killed from elsewhere failed when a stop is asked before its exit is seen', async () => {
    const file = script(
      'dies-while-stopping.mjs',
      `process.stdout.write('# ready\\n');
       process.on('SIGTERM', () => process.exit(0));
       setInterval(() => process.stdout.write('v 1\\n'), 10);`,
    );
    const { records, sink } = collect();
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, sink, {
      flushMs: 20,
    });
    await r.start();
    await waitFor('records stored', () => records.length > 0);
    process.kill(r.pid!, 'SIGKILL');
    // The run stops its tracers now (its command ended, say): the exit is not seen yet.
    const o = await r.stop();
    expect(o.status).toBe('failed');
    expect(o.error).toBe('worker killed by SIGKILL');
  });

  it('kills the whole process group after the grace period: no orphan survives', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    const file = script(
      'stubborn.mjs',
      `import { spawn } from 'node:child_process'; import { writeFileSync } from 'node:fs';
       const c = spawn(process.execPath, ['-e', 'process.on("SIGTERM",()=>{}); setInterval(()=>{},1000)'], { stdio: 'ignore' });
       writeFileSync(${JSON.stringify(pidFile)}, String(c.pid));
       process.on('SIGTERM', () => {});
       process.stdout.write('# ready\\n'); setInterval(() => {}, 1000);`,
    );
    const { sink } = collect();
    const r = new WorkerRunner(
      new ExecaSpawner(),
      spec(file, { stop: { signal: 'SIGTERM', graceMs: 300 } }),
      parser(),
      schema,
      sink,
    );
    await r.start();
    await new Promise((res) => setTimeout(res, 200));
    const grandchild = Number(readFileSync(pidFile, 'utf8'));
    expect(isSameProcess(grandchild, undefined)).toBe(true);
    const o = await r.stop();
    expect(o.forcedKill).toBe(true);
    expect(o.status).toBe('stopped');
    await new Promise((res) => setTimeout(res, 100));
    expect(isSameProcess(grandchild, undefined)).toBe(false);
    expect(existsSync(`/proc/${r.pid}`)).toBe(false); // reaped: no zombie left behind
  });

  it('keeps the last 8 KiB of stderr and the exit code of a worker that exits by itself', async () => {
    const file = script(
      'stderr.mjs',
      `process.stdout.write('# ready\\nv 1\\n');
       process.stderr.write('x'.repeat(20000) + '\\nlast words\\n', () => process.exit(3));`,
    );
    const { sink } = collect();
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, sink);
    await r.start().catch(() => undefined);
    const o = await r.done;
    expect(o.status).toBe('failed');
    expect(o.exitCode).toBe(3);
    expect(o.stderrTail.length).toBeLessThanOrEqual(8192);
    expect(o.stderrTail.endsWith('last words\n')).toBe(true);
  });

  it('fails start() with the stderr tail when the worker dies before it is ready', async () => {
    const file = script(
      'early.mjs',
      `console.error('cannot attach: permission denied'); process.exit(1);`,
    );
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, collect().sink);
    await expect(r.start()).rejects.toThrow(
      /exited with code 1 before it was ready: cannot attach: permission denied/,
    );
  });

  it('refuses a command that does not exist with a clear error', async () => {
    const r = new WorkerRunner(
      new ExecaSpawner(),
      { argv: ['/nonexistent/worker'] },
      parser(),
      schema,
      collect().sink,
    );
    await expect(r.start()).rejects.toThrow(/nonexistent\/worker/);
  });

  it('applies back-pressure with an async sink and loses nothing', async () => {
    const file = script(
      'flood.mjs',
      `let out = '# ready\\n'; for (let i = 1; i <= 200000; i++) out += 'v ' + i + '\\n';
       process.stdout.write(out, () => process.exit(0));`,
    );
    let last = 0;
    let ordered = true;
    let count = 0;
    const sink = {
      write: async (b: TraceRecord[]) => {
        await new Promise((res) => setTimeout(res, 2));
        for (const x of b) {
          const v = x.kind === 'sample' ? x.value : 0;
          if (v !== last + 1) ordered = false;
          last = v;
          count++;
        }
      },
    };
    const r = new WorkerRunner(
      new ExecaSpawner(),
      { ...spec(file), mayExit: true },
      parser(),
      schema,
      sink,
      { batchSize: 1000 },
    );
    await r.start();
    const o = await r.done;
    expect(o.status).toBe('stopped');
    expect(count).toBe(200000);
    expect(ordered).toBe(true);
  });

  it('stops the worker after an async store write fails, and counts what it drops', async () => {
    // A worker that writes as fast as it can until stopped.
    const file = script(
      'endless.mjs',
      `process.stdout.write('# ready\\n');
       let i = 0;
       const more = () => { let out = ''; for (let k = 0; k < 1000; k++) out += 'v ' + ++i + '\\n';
         if (process.stdout.write(out)) setImmediate(more); else process.stdout.once('drain', more); };
       more();`,
    );
    let writes = 0;
    let kept = 0;
    const sink = {
      write: async (b: TraceRecord[]) => {
        writes++;
        if (writes === 3) throw new Error('store went away');
        kept += b.length;
      },
    };
    const r = new WorkerRunner(new ExecaSpawner(), spec(file), parser(), schema, sink, {
      batchSize: 1000,
    });
    await r.start();
    // No stop() from here: the failed write alone must end the worker.
    const o = await r.done;
    expect(o.status).toBe('failed');
    expect(o.error).toBe('store write failed: store went away');
    expect(o.records).toBe(kept);
    expect(o.dropped).toBeGreaterThan(0);
    // Nothing more went to the failed store (one write may have been in flight already).
    expect(writes).toBeLessThanOrEqual(4);
    expect(isSameProcess(r.pid!, null)).toBe(false);
  });
});
