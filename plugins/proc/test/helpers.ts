import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Sample, TraceRecord } from '@scalpels/core';

export const pluginDir = fileURLToPath(new URL('..', import.meta.url));
export const burnTree = fileURLToPath(new URL('./fixtures/burn-tree.mjs', import.meta.url));
/** The worker runs the compiled sampler: the package must be built (npx tsc -b plugins/proc). */
export const samplerBuilt = existsSync(
  fileURLToPath(new URL('../dist/worker-main.js', import.meta.url)),
);

export function samples(records: readonly TraceRecord[], series?: string): Sample[] {
  return records.filter(
    (r): r is Sample => r.kind === 'sample' && (series === undefined || r.series === series),
  );
}

export function sum(list: readonly Sample[]): number {
  return list.reduce((a, s) => a + s.value, 0);
}

/** Resolves with the first stdout line of `child` equal to `line`. */
export function waitForLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      buffered += chunk.toString('utf8');
      if (buffered.split('\n').includes(line)) {
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`process exited (${code}) before printing ${line}`)),
    );
  });
}

export function startBurnTree(outDir: string, burnMs: number): ChildProcess {
  return spawn(process.execPath, [burnTree, 'root', outDir, String(burnMs)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}
