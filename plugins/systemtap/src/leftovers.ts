import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { SetupContext, UndoAction } from '@scalpels/core';
import { moduleName } from './command.js';
import type { Options } from './options.js';

/**
 * What a stap killed without warning leaves behind: its kernel module (kernel runtime), or the
 * uprobe/kprobe events stapbpf defined in tracefs (bpf runtime). Journaled before the worker
 * starts so that stop, crash recovery and `scalpels recover` remove them.
 */
export async function journalLeftovers(options: Options, ctx: SetupContext): Promise<void> {
  if (options.runtime === 'kernel') {
    const module = moduleName(ctx.taskId, ctx.tracerId);
    await ctx.journal({
      kind: 'stap-module',
      data: { module },
      description: `systemtap module ${module} (unloaded if stap could not)`,
    });
  } else {
    // stapbpf defines its events in tracefs: a reference on the node's tracefs (lease shared
    // with syscalls and fs-io), so a tracer that mounted it does not unmount it under stapbpf.
    await ctx.lease({ resource: 'tracefs', scope: 'node', change: async () => undefined });
    await ctx.journal({
      kind: 'stapbpf-events',
      data: {},
      description: 'tracefs probe events of stapbpf processes that no longer run',
    });
  }
}

export function moduleLoaded(name: string, modules = '/proc/modules'): boolean {
  if (!existsSync(modules)) return false;
  return readFileSync(modules, 'utf8')
    .split('\n')
    .some((l) => l.startsWith(`${name} `));
}

/** Idempotent: nothing to do when the module is not loaded or the events are gone. */
export async function undoLeftover(action: UndoAction, _options?: Options): Promise<void> {
  if (action.kind === 'stap-module') {
    const module = (action.data as { module?: unknown }).module;
    if (typeof module !== 'string' || !/^[a-z0-9_]+$/.test(module))
      throw new Error('bad module name in journal');
    if (!moduleLoaded(module)) return;
    spawnSync('staprun', ['-d', module], { stdio: 'ignore', timeout: 15_000 });
    if (moduleLoaded(module)) spawnSync('rmmod', [module], { stdio: 'ignore', timeout: 15_000 });
    if (moduleLoaded(module))
      throw new Error(`systemtap module ${module} is still loaded; try: rmmod ${module}`);
    return;
  }
  if (action.kind === 'stapbpf-events') {
    removeStaleStapbpfEvents();
    return;
  }
  throw new Error(`unknown undo action ${JSON.stringify(action.kind)}`);
}

/**
 * stapbpf names its events `stapprobe_<its pid>_<n>` and removes them when it exits; a SIGKILL
 * leaves them. Removes those whose process is gone, appending `-:name` (never truncating the
 * file, which would delete every other tool's probes too). Returns the names removed.
 */
export function removeStaleStapbpfEvents(
  tracing: readonly string[] = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'],
  alive: (pid: number) => boolean = (pid) => existsSync(`/proc/${pid}`),
): string[] {
  const removed: string[] = [];
  for (const dir of tracing) {
    for (const file of ['uprobe_events', 'kprobe_events']) {
      const path = `${dir}/${file}`;
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        continue;
      }
      for (const line of text.split('\n')) {
        const m = /^[pr]:(?:(\w+)\/)?(stapprobe_(\d+)_\d+)\s/.exec(line);
        if (!m || alive(Number(m[3]))) continue;
        const name = m[1] ? `${m[1]}/${m[2]}` : m[2]!;
        if (removed.includes(name)) continue;
        try {
          appendFileSync(path, `-:${name}\n`);
          removed.push(name);
        } catch {
          // Busy (still enabled) or not ours to change: leave it.
        }
      }
    }
  }
  return removed;
}
