import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { validateOptions, type UndoAction } from '@scalpels/core';
import plugin from '../src/index.js';
import { moduleLoaded, removeStaleStapbpfEvents } from '../src/leftovers.js';

const dir = mkdtempSync(join(tmpdir(), 'scalpels-stap-leftovers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('systemtap leftovers (journaled in setup, removed by undo)', () => {
  it('journals the module of a kernel-runtime tracer before it starts, and stapbpf events for bpf', async () => {
    const actions: UndoAction[] = [];
    const ctx = {
      target: { kind: 'none' as const, pids: [], description: '' },
      taskId: 'T1',
      tracerId: 4,
      runtimeDir: dir,
      pluginDir: dir,
      journal: async (a: UndoAction) => void actions.push(a),
      lease: async () => ({ first: true, holders: 1 }),
    };
    // Each option typed and defaulted as the core does, without the cross-option check (the
    // default bundled script runs on the kernel runtime only): setup only reads the runtime.
    const specs = { name: plugin.name, options: plugin.options };
    await plugin.setup!(validateOptions(specs, { runtime: 'kernel' }), ctx);
    await plugin.setup!(validateOptions(specs, { runtime: 'bpf' }), ctx);
    expect(actions.map((a) => [a.kind, a.data])).toEqual([
      ['stap-module', { module: 'scalpels_t1_4' }],
      ['stapbpf-events', {}],
    ]);
  });

  it('undo is idempotent when nothing is left (twice, no error) and refuses a forged module name', async () => {
    const action = { kind: 'stap-module', data: { module: 'scalpels_t1_4' }, description: '' };
    const options = validateOptions(plugin, {});
    await plugin.undo!(action, options);
    await plugin.undo!(action, options);
    await expect(
      plugin.undo!({ ...action, data: { module: 'x; rm -rf /' } }, options),
    ).rejects.toThrow(/bad module name/);
  });

  it('reads /proc/modules-style lists exactly', () => {
    const modules = join(dir, 'modules');
    writeFileSync(modules, 'scalpels_t1_40 16384 0 - Live 0x0\nscalpels_t1_4 16384 0 - Live 0x0\n');
    expect(moduleLoaded('scalpels_t1_4', modules)).toBe(true);
    expect(moduleLoaded('scalpels_t1', modules)).toBe(false);
    expect(moduleLoaded('x', join(dir, 'absent'))).toBe(false);
  });

  it('removes the tracefs events of dead stapbpf processes only, by appending', () => {
    const tracing = join(dir, 'tracing');
    mkdirSync(tracing, { recursive: true });
    const events = [
      'p:uprobes/stapprobe_111_0 /usr/bin/python3.11:0x00000000000287f3',
      'p:uprobes/stapprobe_222_0 /usr/bin/python3.11:0x00000000000f20a1',
      'p:uprobes/p_python3_0x287f3 /usr/bin/python3.11:0x00000000000287f3',
      '',
    ].join('\n');
    writeFileSync(join(tracing, 'uprobe_events'), events);
    const removed = removeStaleStapbpfEvents([tracing], (pid) => pid === 222);
    expect(removed).toEqual(['uprobes/stapprobe_111_0']);
    expect(readFileSync(join(tracing, 'uprobe_events'), 'utf8')).toBe(
      `${events}-:uprobes/stapprobe_111_0\n`,
    );
  });
});
