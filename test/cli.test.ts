import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { execa, execaSync } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { PLUGIN_API_VERSION } from '@scalpels/core';
import { runCli, waitFor } from '@scalpels/core/testing';

const cli = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let n = 0;
/** A fresh store path per test: tests run in parallel. */
const freshStore = (): string => join(scratch, `store-${++n}.db`);

function scalpels(args: string[], env: Record<string, string> = {}) {
  return runCli(args, {
    cli,
    env: { XDG_DATA_HOME: join(scratch, 'xdg'), NO_COLOR: '1', ...env },
    timeoutMs: 60_000,
  });
}

interface Report {
  format: string;
  task: { id: string; status: string; target: string };
  tracers: {
    tracer: string;
    status: string;
    exitCode: number | null;
    records: number;
    parseErrors: number;
    error: string | null;
    series: {
      name: string;
      kind: string;
      unit: string;
      labels: Record<string, string>;
      sum: number;
      points: number;
      rate: number | null;
    }[];
  }[];
}

async function report(store: string, task = '--last'): Promise<Report> {
  const r = await scalpels(['report', task, '--format', 'json', '--store', `sqlite://${store}`]);
  expect(r.exitCode, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Report;
}

/** The states of a tracer whose worker is (still) taken care of by its run. */
const LIVE = ['starting', 'running', 'stopping'];

interface TracerRow {
  status: string;
  records: number;
  workerPid: number | null;
}

type Db = { prepare(sql: string): { get(): unknown }; close(): void };
const Database = createRequire(import.meta.url)('better-sqlite3') as new (
  path: string,
  opts: { readonly: boolean; fileMustExist: boolean },
) => Db;

/** The (only) tracer of a store as a run keeps it up to date; undefined before the run made it. */
function tracerRow(store: string): TracerRow | undefined {
  let db: Db | undefined;
  try {
    db = new Database(store, { readonly: true, fileMustExist: true });
    return db
      .prepare('SELECT status, records, worker_pid AS workerPid FROM tracers ORDER BY id LIMIT 1')
      .get() as TracerRow | undefined;
  } catch {
    return undefined; // not created yet, or its schema not yet written
  } finally {
    db?.close();
  }
}

describe('scalpels CLI: bad input is refused in one line and nothing is stored', () => {
  it('an unknown tracer exits 1 naming it, and creates no store', async () => {
    const store = freshStore();
    const r = await scalpels(['run', '-t', 'nosuch', '--store', `sqlite://${store}`, '--', 'true']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown tracer "nosuch"/);
    expect(existsSync(store)).toBe(false);
  });

  it('a bad option exits 1 naming the tracer and the option, and stores nothing', async () => {
    const store = freshStore();
    const ok = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=200ms',
      '--store',
      `sqlite://${store}`,
      '--format',
      'none',
      '--',
      'true',
    ]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const before = readFileSync(store);
    const r = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=banana',
      '--store',
      `sqlite://${store}`,
      '--',
      'true',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe(
      'scalpels: proc: option "interval": expected a duration like 500ms or 2s, got "banana"',
    );
    expect(readFileSync(store).equals(before)).toBe(true);
    const tasks = JSON.parse(
      (await scalpels(['tasks', '--json', '--store', `sqlite://${store}`])).stdout,
    ) as unknown[];
    expect(tasks).toHaveLength(1);
  });

  it('a --set for a tracer that is not started is refused', async () => {
    const r = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'syscalls.latency=true',
      '--store',
      `sqlite://${freshStore()}`,
      '--',
      'true',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/tracer "syscalls" is not among -t proc/);
  });

  it('a corrupt store file is refused and left as it was', async () => {
    const store = freshStore();
    writeFileSync(store, 'not a database at all');
    const r = await scalpels(['tasks', '--store', `sqlite://${store}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/is not a SQLite database/);
    expect(readFileSync(store, 'utf8')).toBe('not a database at all');
  });

  it('an unknown command is a usage error (exit 1)', async () => {
    const r = await scalpels(['frobnicate']);
    expect(r.exitCode).toBe(1);
  });

  it('a command that cannot be started is reported and the task is kept', async () => {
    const store = freshStore();
    const r = await scalpels([
      'run',
      '-t',
      'proc',
      '--store',
      `sqlite://${store}`,
      '--format',
      'none',
      '--',
      '/nonexistent/cmd',
    ]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/cannot start \/nonexistent\/cmd/);
    expect((await report(store)).task.status).toBe('stopped');
  });
});

describe('scalpels run', () => {
  it('reports format v1, propagates the exit status and counts the run tree', async () => {
    const store = freshStore();
    const r = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=200ms',
      '--name',
      'exit7',
      '--store',
      `sqlite://${store}`,
      '--',
      'sh',
      '-c',
      'sleep 0.5; exit 7',
    ]);
    expect(r.exitCode).toBe(7);
    expect(r.stderr).toMatch(/command exited with code 7/);
    const rep = await report(store, 'exit7');
    expect(rep.format).toBe('scalpels.report/v1');
    expect(rep.task.status).toBe('stopped');
    expect(rep.task.target).toBe('run: sh -c sleep 0.5; exit 7');
    const proc = rep.tracers[0]!;
    expect(proc).toMatchObject({ tracer: 'proc', status: 'stopped', parseErrors: 0 });
    expect(proc.records).toBeGreaterThan(0);
    const count = proc.series.find((s) => s.name === 'proc.count');
    expect(count?.kind).toBe('gauge');
    const ctx = proc.series.find((s) => s.name === 'kernel.context_switches');
    expect(ctx?.kind).toBe('counter');
    expect(ctx!.rate).toBeGreaterThan(0);
  });

  it('a worker killed with SIGKILL mid-task leaves its tracer failed with its records kept', async () => {
    const store = freshStore();
    const release = `${store}.release`;
    // The workload stays until the test lets it go: the test kills the proc sampler once the
    // store holds some of its records, and releases the workload once the run has recorded how
    // the sampler ended (a workload ending first would make it a stop, not a failure).
    const waiter = `const { existsSync } = require('node:fs');
      const t = setInterval(() => { if (existsSync(${JSON.stringify(release)})) clearInterval(t); }, 20);`;
    let ended = false;
    const run = scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=100ms',
      '--store',
      `sqlite://${store}`,
      '--format',
      'none',
      '--',
      process.execPath,
      '-e',
      waiter,
    ]).finally(() => (ended = true));
    try {
      let running: TracerRow | undefined;
      // Bounds well inside the test's timeout; either normally holds within a second.
      await waitFor(
        'the proc sampler running with records in the store',
        () => {
          const t = tracerRow(store);
          if (t?.status === 'running' && t.records > 0 && t.workerPid) running = t;
          return running !== undefined || ended;
        },
        25_000,
      );
      expect(running, 'the run ended before its sampler stored records').toBeDefined();
      const pid = running!.workerPid!;
      // The pid the run recorded is its sampler (argv[1] the worker script), alive.
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1]).toMatch(
        /\/dist\/worker-main\.js$/,
      );
      process.kill(pid, 'SIGKILL');
      await waitFor(
        "the run to record the sampler's end",
        () => {
          const status = tracerRow(store)?.status;
          return ended || (status !== undefined && !LIVE.includes(status));
        },
        25_000,
      );
    } finally {
      writeFileSync(release, '');
    }
    const r = await run;
    expect(r.exitCode, r.stderr).toBe(0);
    const rep = await report(store);
    const proc = rep.tracers[0]!;
    expect(proc.status).toBe('failed');
    expect(proc.error).toBe('worker killed by SIGKILL');
    expect(proc.records).toBeGreaterThan(0);
    expect(proc.series.length).toBeGreaterThan(0);
  });

  it('SIGINT stops the command, then the tracers, and still writes the report', async () => {
    const store = freshStore();
    const child = execa(
      process.execPath,
      [
        cli,
        'run',
        '-t',
        'proc',
        '--set',
        'proc.interval=200ms',
        '--store',
        `sqlite://${store}`,
        '--',
        'sleep',
        '30.25',
      ],
      { reject: false, env: { XDG_DATA_HOME: join(scratch, 'xdg'), NO_COLOR: '1' } },
    );
    // Once the command runs (tracers attached), interrupt scalpels alone, as `kill -INT` would.
    const started = Date.now();
    while (
      Date.now() - started < 30_000 &&
      !execaSync('pgrep', ['-f', '^sleep 30.25$'], { reject: false }).stdout
    )
      await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode).toBe(130); // 128 + SIGINT: the command was interrupted
    expect(r.stderr).toMatch(/command killed by SIGINT/);
    const rep = await report(store);
    expect(rep.task.status).toBe('stopped');
    expect(rep.tracers[0]).toMatchObject({ status: 'stopped' });
    expect(rep.tracers[0]!.records).toBeGreaterThan(0);
  });

  it('csv and table reports come from the same task', async () => {
    const store = freshStore();
    await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=200ms',
      '--store',
      `sqlite://${store}`,
      '--format',
      'none',
      '--',
      'sleep',
      '0.3',
    ]);
    const csv = await scalpels([
      'report',
      '--last',
      '--format',
      'csv',
      '--store',
      `sqlite://${store}`,
    ]);
    expect(csv.stdout.split('\n')[0]).toBe(
      'task,tracer,node,record,name,labels,unit,kind,points,sum,min,max,mean,last,rate,count,total_ms,mean_ms,p95_ms,per_op',
    );
    expect(csv.stdout).toMatch(/,proc,.*,series,proc\.cpu\.user,/);
    const out = join(scratch, 'r.txt');
    const table = await scalpels(['report', '--last', '--store', `sqlite://${store}`, '-o', out]);
    expect(table.exitCode).toBe(0);
    expect(readFileSync(out, 'utf8')).toMatch(/^task \S+ "sleep 0.3" stopped/);
  });
});

describe('scalpels plugins list', () => {
  const pluginPath = join(scratch, 'plugins');
  const mk = (name: string, api: string): void => {
    const dir = join(pluginPath, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({
        name,
        version: '0.4.2',
        type: 'module',
        main: 'index.js',
        scalpels: { apiVersion: api },
      }),
    );
    writeFileSync(
      join(dir, 'index.js'),
      `export default { name: '${name}', version: '0.4.2', description: 'x', apiVersion: '${api}', options: {}, target: 'none',
        schema: { series: {} }, check: async () => ({ status: 'ok', detail: 'fine' }), worker: () => ({ argv: ['true'] }), parser: () => ({ line: () => null }) };`,
    );
  };
  mk('scalpels-plugin-dropin', '^1.0.0');
  mk('scalpels-plugin-future', '^2.0.0');

  it('lists proc as ok, a plugin from SCALPELS_PLUGIN_PATH, and an incompatible one, exiting 0', async () => {
    const r = await scalpels(['plugins', 'list', '--json'], { SCALPELS_PLUGIN_PATH: pluginPath });
    expect(r.exitCode, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as {
      name: string;
      package: string;
      version: string;
      status: string;
      compatible: boolean;
      detail: string;
    }[];
    expect(list.find((p) => p.name === 'proc')).toMatchObject({
      package: '@scalpels/plugin-proc',
      status: 'ok',
      compatible: true,
    });
    expect(list.find((p) => p.name === 'dropin')).toMatchObject({ version: '0.4.2', status: 'ok' });
    expect(list.find((p) => p.name === 'future')).toMatchObject({
      status: 'incompatible',
      compatible: false,
      detail: `needs plugin API ^2.0.0; this core provides ${PLUGIN_API_VERSION}`,
    });
    const text = await scalpels(['plugins', 'list'], { SCALPELS_PLUGIN_PATH: pluginPath });
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/future .* incompatible: needs plugin API/);
  });

  it('plugins info describes options and series; doctor exits 0', async () => {
    const info = await scalpels(['plugins', 'info', 'proc']);
    expect(info.exitCode, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/interval/);
    expect(info.stdout).toMatch(/proc\.cpu\.user/);
    const doctor = await scalpels(['doctor']);
    expect(doctor.exitCode).toBe(0);
    expect(doctor.stdout).toMatch(/proc .*: ok/);
  });
});
