import 'reflect-metadata';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createContainer } from './container.js';
import type { TaskService } from './tasks.js';
import { TOKENS } from './tokens.js';

// Readiness checks: a probe that fails in a way that may pass (timed out on a busy host) is
// retried with more time; a real "cannot run here" is refused at once. Real plugin packages,
// discovered and imported as the CLI does, whose checks run real processes.
const root = mkdtempSync(join(tmpdir(), 'scalpels-readiness-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const nm = join(root, 'node_modules');
const calls = join(root, 'calls');

function plugin(name: string, check: string): void {
  const dir = join(nm, `scalpels-plugin-${name}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: `scalpels-plugin-${name}`,
      version: '1.0.0',
      type: 'module',
      main: 'index.js',
      scalpels: { apiVersion: '>=1.1.0 <2' },
    }),
  );
  writeFileSync(
    join(dir, 'index.js'),
    `import { appendFileSync } from 'node:fs';
     export default { name: '${name}', version: '1.0.0', description: 'test', apiVersion: '>=1.1.0 <2',
       options: {}, target: 'none', schema: { series: {} },
       worker: () => ({ argv: ['true'] }), parser: () => ({ line: () => null }),
       async check(ctx) { appendFileSync(${JSON.stringify(calls)}, '${name}\\n'); ${check} } };`,
  );
}

// Sleeps 0.4 s under a 0.2 s timeout: times out at first, passes once the core gives it more time.
plugin(
  'slowprobe',
  `const r = await ctx.exec(['sleep', '0.4'], 200);
   return r.exitCode === 0 ? { status: 'ok', detail: 'fine' }
     : { status: 'unavailable', detail: 'probe failed: exit code ' + r.exitCode };`,
);
// A program that does not exist: never transient, refused at once.
plugin(
  'missing',
  `const r = await ctx.exec(['/nonexistent/scalpels-probe'], 5000);
   return r.exitCode === 0 ? { status: 'ok', detail: 'fine' }
     : { status: 'unavailable', detail: 'probe failed: exit code ' + r.exitCode };`,
);

const tasks = (): TaskService =>
  createContainer({
    storeUrl: `sqlite://${join(root, 's.db')}`,
    node: 'n1',
    pluginSearchFrom: [root],
    env: {},
  }).resolve<TaskService>(TOKENS.TaskService);

const count = (name: string): number =>
  readFileSync(calls, 'utf8')
    .split('\n')
    .filter((l) => l === name).length;

describe('readiness checks', () => {
  it('retry a probe that timed out, with more time, until it passes', async () => {
    const [p] = await tasks().prepare([{ name: 'slowprobe', options: {} }], false);
    expect(p!.check.status).toBe('ok');
    expect(count('slowprobe')).toBeGreaterThan(1);
  });

  it('refuse at once what cannot run (a missing program: exit 127, not transient)', async () => {
    await expect(tasks().prepare([{ name: 'missing', options: {} }], false)).rejects.toThrow(
      'missing cannot run here: probe failed: exit code 127',
    );
    expect(count('missing')).toBe(1);
  });
});
