#!/usr/bin/env node
// Records a testdata case from the real tool: builds the worker exactly as the plugin does, runs
// it against the getppid workload (test/fixtures/getppid-loop.c), stops it as the core would, and
// writes stdout.txt, options.json and expected.json (the parser's output, to be checked by hand
// against the workload's known counts before committing).
//
// Usage (root, after `npx tsc -b`):
//   node tools/record-testdata.mjs CASE TECHNIQUE TARGET N M [OPTIONS_JSON]
//   TARGET: pid (the workload) or none (system-wide)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseLines, splitRecorded } from '@scalpels/core/testing';
import { validateOptions } from '@scalpels/core';
import plugin from '../dist/index.js';

const [name, technique, targetKind, n, m, optionsJson = '{}'] = process.argv.slice(2);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rawOptions = JSON.parse(optionsJson);
const options = validateOptions(plugin, rawOptions);
const scratch = mkdtempSync(join(tmpdir(), 'scalpels-syscalls-record-'));
const bin = join(scratch, 'getppid-loop');
execFileSync('cc', ['-O2', '-o', bin, join(root, 'test', 'fixtures', 'getppid-loop.c')]);

const workload = spawn(bin, [n, m], { stdio: ['pipe', 'ignore', 'inherit'] });
const target =
  targetKind === 'pid'
    ? { kind: 'pid', pids: [workload.pid], description: `pid ${workload.pid}` }
    : { kind: 'none', pids: [], description: 'system-wide' };
const spec = await plugin.worker(options, {
  target,
  taskId: 'record',
  tracerId: 1,
  technique,
  runtimeDir: scratch,
  pluginDir: root,
});
const tracer = spawn(spec.argv[0], spec.argv.slice(1), {
  env: { ...process.env, ...spec.env },
  stdio: ['ignore', 'pipe', 'pipe'],
  detached: true,
});
let stdout = '';
let stderr = '';
let ready = false;
const whenReady = new Promise((resolve) => {
  const test = () => {
    if (ready) return;
    // Line by line, as the core's runner matches them.
    const matches = (re, text) => re !== undefined && text.split('\n').some((l) => re.test(l));
    if (matches(spec.ready?.stdout, stdout) || matches(spec.ready?.stderr, stderr)) {
      ready = true;
      resolve();
    }
  };
  tracer.stdout.on('data', (c) => ((stdout += c), test()));
  tracer.stderr.on('data', (c) => ((stderr += c), test()));
});
const exited = new Promise((resolve) => tracer.once('exit', resolve));
await whenReady;
const done = new Promise((resolve) => workload.once('exit', resolve));
workload.stdin.end('x');
await done;
await new Promise((r) => setTimeout(r, 500));
// As the core stops a worker: the signal goes to its whole process group.
// strace and perf leave by themselves when their last traced process has exited.
try {
  process.kill(-tracer.pid, spec.stop?.signal ?? 'SIGTERM');
} catch (e) {
  if (e.code !== 'ESRCH') throw e;
}
await exited;

const dir = join(root, 'testdata', name);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'stdout.txt'), stdout);
writeFileSync(
  join(dir, 'options.json'),
  JSON.stringify({ ...rawOptions, technique }, null, 2) + '\n',
);
const out = parseLines(plugin, splitRecorded(stdout), rawOptions, technique);
writeFileSync(
  join(dir, 'expected.json'),
  JSON.stringify(
    { records: out.records, parseErrors: out.diagnostics.length, dropped: out.dropped },
    null,
    2,
  ) + '\n',
);
console.log(
  JSON.stringify({
    workloadPid: workload.pid,
    argv: spec.argv,
    records: out.records.length,
    diagnostics: out.diagnostics,
    dropped: out.dropped,
  }),
);
console.error(
  stderr
    .split('\n')
    .filter((l) => !/RLIMIT_MEMLOCK|^mmap size|^Using CPUID|module maps/.test(l))
    .join('\n'),
);
