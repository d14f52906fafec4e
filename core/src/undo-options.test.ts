import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { definePlugin, type OptionValues } from './api.js';
import type { LoadedPlugin } from './registry.js';
import type { Logger } from './services.js';
import { SqliteStore } from './store/sqlite.js';
import { undoJournal } from './tasks.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-undo-options-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A plugin that renamed `mapKeys` to `max-keys` and added `interval` since the journal was written. */
function recorder(seen: OptionValues[]): LoadedPlugin {
  const manifest = definePlugin({
    name: 'demo',
    version: '1.0.0',
    description: 'records what undo() gets',
    apiVersion: '>=1.2.0 <2',
    target: 'none',
    options: {
      'max-keys': { type: 'integer', default: 16384, aliases: ['mapKeys'], description: 'keys' },
      interval: { type: 'duration', default: '1s', description: 'interval' },
    },
    check: async () => ({ status: 'ok', detail: 'ok' }),
    worker: () => ({ argv: ['true'] }),
    parser: () => ({ line: () => null }),
    schema: { series: {} },
    async undo(_action, options) {
      seen.push(options);
    },
  });
  return {
    manifest,
    info: { name: 'demo', package: 'demo', version: '1.0.0', dir } as LoadedPlugin['info'],
  };
}

describe('undo() of a journal written by an older version of the plugin', () => {
  it('gets the options under their current names, with current defaults', async () => {
    const store = new SqliteStore(join(dir, 'store.db'));
    try {
      const task = await store.createTask({
        name: 't',
        labels: {},
        nodes: ['n1'],
        ownerPid: null,
        ownerStart: null,
        target: 'x',
        startedAt: 1000,
      });
      const tracer = await store.createTracer({
        taskId: task.id,
        tracer: 'demo',
        pluginPackage: 'demo',
        pluginVersion: '0.9.0',
        node: 'n1',
        options: { mapKeys: 2048 },
        technique: null,
      });
      await store.journal(
        tracer.id,
        'demo',
        { kind: 'k', data: null, description: 'a change' },
        { mapKeys: 2048 },
        'n1',
      );
      const seen: OptionValues[] = [];
      const plugin = recorder(seen);
      const r = await undoJournal(store, tracer.id, async () => plugin, quiet, 'n1');
      expect(r).toEqual({ undone: 1, failed: [] });
      expect(seen).toEqual([{ 'max-keys': 2048, interval: 1000 }]);
    } finally {
      await store.close();
    }
  });
});
