import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { definePlugin, type CheckContext, type CheckResult } from '@scalpels/core';
import { readStat } from '@scalpels/core/procfs';
import { USER_HZ } from './format.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import { samplerPath, workerSpec } from './worker.js';
import { view } from './view.js';
import { OPTIONS, type Options } from './options.js';

/** Package root: src/ (tests) and dist/ (installed) are both one level below it. */
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const { version } = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as {
  version: string;
};

async function check(ctx: CheckContext<Options>): Promise<CheckResult> {
  if (!existsSync('/proc/stat') || !readStat('self'))
    return {
      status: 'unavailable',
      detail: 'no /proc filesystem (Linux with procfs mounted is required)',
    };
  const sampler = samplerPath(packageDir);
  if (!existsSync(sampler))
    return {
      status: 'fixable',
      detail: `sampler not built (${sampler} missing)`,
      hint: 'build the package: npx tsc -b plugins/proc',
    };
  const limits = ctx.isRoot
    ? ''
    : '; not root: /proc/PID/io and fd of other users\u2019 processes are unreadable (run as root for those)';
  if (ctx.depth === 'quick') return { status: 'ok', detail: `/proc readable${limits}` };

  const run = await ctx.exec([process.execPath, sampler, '--check'], 10_000);
  if (run.exitCode !== 0) {
    const why = (run.stdout + run.stderr)
      .split('\n')
      .filter((l) => l && !l.startsWith('ok'))
      .join('; ');
    return {
      status: 'unavailable',
      detail: `sampler cannot read /proc: ${why || `exit code ${run.exitCode}`}`,
    };
  }
  const ticks = await ctx.exec(['getconf', 'CLK_TCK'], 5000);
  if (ticks.exitCode === 0 && Number(ticks.stdout.trim()) !== USER_HZ)
    return {
      status: 'unavailable',
      detail: `clock ticks are ${ticks.stdout.trim()}/s here, the sampler assumes ${USER_HZ}/s (USER_HZ)`,
    };
  const missing = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('missing'))
    .map((l) => l.split('\t')[1]);
  const partial = missing.length
    ? `; missing: ${missing.join(', ')} (their series are left out)`
    : '';
  return { status: 'ok', detail: `/proc sampler works${partial}${limits}` };
}

export default definePlugin({
  name: 'proc',
  version,
  description:
    'System statistics (CPU, memory, load, disks, network) and per target process tree, sampled from /proc',
  apiVersion: '>=1.2.0 <2',
  target: 'optional',
  options: OPTIONS,
  requires: [
    { kind: 'file', what: '/proc', why: 'every series is read from procfs' },
    {
      kind: 'root',
      what: 'root (optional)',
      why: 'to read /proc/PID/io and /proc/PID/fd of other users\u2019 processes',
    },
  ],
  check,
  worker: workerSpec,
  parser: createParser,
  schema,
  report: view,
});
