import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validateOptions, type CheckContext, type Sample } from '@scalpels/core';
import { capability, runWorker } from '@scalpels/core/testing';
import plugin from '../src/index.js';

const pluginDir = fileURLToPath(new URL('..', import.meta.url));

function exec(argv: readonly string[], timeoutMs?: number): ReturnType<CheckContext['exec']> {
  return new Promise((resolve) =>
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({
        exitCode: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
        stdout,
        stderr,
      }),
    ),
  );
}
async function which(binary: string): Promise<string | undefined> {
  const r = await exec(['sh', '-c', `command -v ${binary}`]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

const ready =
  capability('stap', (await which('stap')) !== undefined, 'apt-get install -y systemtap') &&
  capability(
    'built plugin',
    existsSync(join(pluginDir, 'dist', 'supervise.js')),
    'run npx tsc -b in plugins/systemtap',
  );
const here = await plugin.check({
  options: validateOptions(plugin, {}),
  depth: 'full',
  isRoot: process.getuid?.() === 0,
  exec,
  which,
});

describe.runIf(ready)('systemtap tracer started through the core runner', () => {
  it.runIf(here.status !== 'ok')(
    'fails fast with the reason when stap cannot run on this kernel',
    async () => {
      const err = await runWorker(plugin, { pluginDir, durationMs: 500 }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toMatch(/worker exited with code 1 before it was/);
      expect(err!.message).toMatch(
        /scalpels: SystemTap cannot build a module for kernel .*no kernel build tree/,
      );
    },
  );

  // Only where SystemTap's kernel runtime works (not on this project's CI kernel): counts the
  // opens of a child that opens /dev/null 300 times once the probes are in place.
  it.runIf(here.status === 'ok')(
    'counts the open/close calls of a target process',
    { timeout: 300_000 },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'scalpels-stap-worker-'));
      try {
        const go = join(dir, 'go');
        const child = spawn('python3', [
          '-c',
          `import os, time\nwhile not os.path.exists(${JSON.stringify(go)}): time.sleep(0.02)\nfor _ in range(300): os.close(os.open('/dev/null', os.O_RDONLY))\n`,
        ]);
        const result = await runWorker(plugin, {
          pluginDir,
          options: { interval: '200ms' },
          target: { kind: 'pid', pids: [child.pid!], description: `pid ${child.pid}` },
          during: async () => {
            writeFileSync(go, '');
            await new Promise((r) => child.once('exit', r));
            await new Promise((r) => setTimeout(r, 500));
          },
        });
        expect(result.outcome.status).toBe('stopped');
        const sum = (syscall: string): number =>
          (result.records as Sample[])
            .filter((r) => r.series === 'systemtap.syscalls' && r.labels?.syscall === syscall)
            .reduce((a, r) => a + r.value, 0);
        expect(sum('open')).toBeGreaterThanOrEqual(300);
        expect(sum('close')).toBeGreaterThanOrEqual(300);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
