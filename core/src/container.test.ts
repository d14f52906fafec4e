import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createContainer, ROOT_TOKENS } from './container.js';
import { TOKENS } from './tokens.js';
import { TaskService, TracerRun, type TracerSpec } from './tasks.js';
import { StoreProvider } from './services.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-di-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = {
  storeUrl: `sqlite://${join(dir, 's.db')}`,
  node: 'n1',
  pluginSearchFrom: [process.cwd()],
  env: {},
};

describe('container', () => {
  it('resolves every registered root token to a real instance', () => {
    const c = createContainer(config);
    for (const token of ROOT_TOKENS) {
      const value = c.resolve(token);
      expect(value, String(token)).toBeDefined();
    }
    expect(c.resolve(TOKENS.Config)).toBe(config);
    const tasks = c.resolve<TaskService>(TOKENS.TaskService);
    expect(tasks).toBeInstanceOf(TaskService);
    // Constructor injection really happened (no undefined from missing decorator metadata).
    for (const field of ['config', 'registry', 'stores', 'targets', 'log', 'clock'])
      expect((tasks as unknown as Record<string, unknown>)[field], field).toBeDefined();
  });

  it('gives each tracer a child container with its own spec and the root services', () => {
    const c = createContainer(config);
    const child = c.createChildContainer();
    const spec = { row: { tracer: 'demo' } } as unknown as TracerSpec;
    child.register(TOKENS.TracerSpec, { useValue: spec });
    child.register(TOKENS.TracerRun, { useClass: TracerRun });
    const run = child.resolve<TracerRun>(TOKENS.TracerRun);
    expect(run.spec).toBe(spec);
    expect(run.name).toBe('demo');
    for (const field of ['stores', 'spawner', 'log', 'clock', 'config', 'registry'])
      expect((run as unknown as Record<string, unknown>)[field], field).toBeDefined();
    expect(child.resolve(TOKENS.StoreProvider)).toBeInstanceOf(StoreProvider);
    expect(child.resolve(TOKENS.StoreProvider)).toBe(c.resolve(TOKENS.StoreProvider));
  });

  it('does not open the store until it is used', () => {
    const c = createContainer(config);
    expect(c.resolve<StoreProvider>(TOKENS.StoreProvider).opened).toBe(false);
  });
});
