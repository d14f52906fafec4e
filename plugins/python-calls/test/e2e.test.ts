import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability, runCliOk, waitFor } from '@scalpels/core/testing';
import { Child, fixture, hasBinary, isRoot, pluginDir } from './helpers.js';

const cli = join(pluginDir, '..', '..', 'cli', 'dist', 'main.js');
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const can =
  capability('the scalpels CLI', existsSync(cli), `${cli} is not built (npx tsc -b)`) &&
  capability(
    'root, gdb and bpftrace',
    isRoot && hasBinary('gdb') && hasBinary('bpftrace'),
    'the profiler technique needs them',
  );

interface Report {
  tracers: {
    tracer: string;
    status: string;
    technique?: string;
    parseErrors: number;
    series: { name: string; labels: Record<string, string>; sum: number }[];
    events: { top: { key: string; count: number }[] };
  }[];
}

const dir = mkdtempSync(join(tmpdir(), 'pycalls-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { ...process.env, XDG_DATA_HOME: dir, NO_COLOR: '1' };

async function scalpels(store: string, ...args: string[]): Promise<string> {
  return runCliOk([args[0]!, '--store', store, ...args.slice(1)], { cli, env });
}

async function report(store: string): Promise<Report['tracers'][number]> {
  const r = JSON.parse(await scalpels(store, 'report', '--last', '--format', 'json')) as Report;
  const t = r.tracers.find((x) => x.tracer === 'python-calls');
  expect(t).toBeDefined();
  return t!;
}

const callSums = (t: Report['tracers'][number]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const s of t.series)
    if (s.name === 'python.calls') out[s.labels.function!] = (out[s.labels.function!] ?? 0) + s.sum;
  return out;
};

describe.runIf(can)('through the scalpels CLI', () => {
  it('scalpels run -t python-calls --set python-calls.function=f,g -- python3 script.py: exact counts', async () => {
    const store = `sqlite://${join(dir, 'run.db')}`;
    const out = await scalpels(
      store,
      'run',
      '-t',
      'python-calls',
      '--set',
      'python-calls.function=f,g',
      '--',
      python,
      fixture('calls.py'),
      '10000',
      '9000',
    );
    expect(out).toContain('{"f": 10000, "g": 9000}');
    const t = await report(store);
    expect(t.status).toBe('stopped');
    expect(t.parseErrors).toBe(0);
    expect(callSums(t)).toEqual({ '__main__:f': 10000, '__main__:g': 9000 });
  });

  it('scalpels start --pid / stop through an agent: counts after attaching, no hook left', async () => {
    const store = `sqlite://${join(dir, 'agent.db')}`;
    const socket = join(dir, 'agent.sock');
    const agent = new Child([process.execPath, cli, 'agent', '--socket', socket, '--store', store]);
    const hold = join(dir, 'release');
    const target = new Child([
      python,
      fixture('calls.py'),
      '10000',
      '11000',
      '--wait-hook',
      '--hold',
      hold,
    ]);
    try {
      await waitFor('the agent socket', () => existsSync(socket));
      // Past its record of f's and g's own code, which it checks after the tracer has gone.
      await target.waitFor('waiting for a profiler', 200_000);
      const a = ['--agent', `unix://${socket}`];
      await scalpels(
        store,
        'start',
        ...a,
        '-t',
        'python-calls',
        '--pid',
        String(target.pid),
        '--set',
        'python-calls.function=f,g',
      );
      await target.waitFor('holding');
      await scalpels(store, 'stop', ...a);
      writeFileSync(hold, '');
      expect(await target.closed).toBe(0);
      expect(target.result()).toMatchObject({
        f: 10000,
        g: 11000,
        hookAfterStop: false,
        agentModuleLeft: false,
      });
      const t = await report(store);
      expect(t.status).toBe('stopped');
      expect(callSums(t)).toEqual({ '__main__:f': 10000, '__main__:g': 11000 });
      const keys = t.events.top.map((e) => e.key).sort();
      // The target sleeps between checks: attached at once (direct) or at its next safe point.
      expect(keys).toHaveLength(3);
      expect(['attach:direct', 'attach:pending-call']).toContain(keys[0]);
      // A function rule: instrumented, no global hook (what the report and status list).
      expect(keys.slice(1)).toEqual(['detach:stop', 'technique:instrument']);
      expect(target.result()).toMatchObject({ functionsRestored: true });
    } finally {
      target.kill();
      agent.proc.kill('SIGTERM');
      await agent.closed;
    }
  });
});
