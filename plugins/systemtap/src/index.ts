import { readFileSync } from 'node:fs';
import { definePlugin } from '@scalpels/core';
import { BUNDLED, functionEntryCaveat, pythonBinary } from './bundled.js';
import { checkSystemtap } from './check.js';
import { optionProblem } from './command.js';
import { journalLeftovers, undoLeftover } from './leftovers.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import { verifySystemtap } from './verify.js';
import { requireTrusted } from './trust.js';
import { systemtapWorker } from './worker.js';
import { view } from './view.js';
import { OPTIONS } from './options.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const bundledList = Object.values(BUNDLED)
  .map((b) => `${b.name} (${b.description})`)
  .join('; ');

export default definePlugin({
  name: 'systemtap',
  version: pkg.version,
  description:
    'Runs SystemTap scripts as tracers: your own .stp files (output conventions: a number per line, `key value` / `key<TAB>value` rows, column rows, @hist_log tables, tab-separated events and JSON lines, declared with `# scalpels:` header lines; see the README) or bundled ones: ' +
    bundledList,
  apiVersion: '>=1.2.0 <2',
  target: 'optional',
  options: OPTIONS,
  requires: [
    {
      kind: 'binary',
      what: 'stap (Debian package systemtap)',
      why: 'translates and runs the scripts',
    },
    {
      kind: 'root',
      what: 'root, or membership of stapusr (run) and stapdev (compile)',
      why: 'loading probes',
    },
    {
      kind: 'kernel',
      what: 'runtime=kernel: loadable modules and the build tree of the running kernel (linux-headers-$(uname -r)); kernel.function probes also need its debug info (linux-image-$(uname -r)-dbg)',
      why: 'stap builds a kernel module per script',
    },
    {
      kind: 'kernel',
      what: 'runtime=bpf: stapbpf, the kernel build tree, RLIMIT_MEMLOCK unlimited',
      why: 'stapbpf loads BPF programs',
    },
  ],
  check: async (ctx) => {
    requireTrusted(ctx.options, ctx.policy);
    const result = await checkSystemtap(ctx);
    if (ctx.options.script !== 'python-calls') return result;
    const caveat = functionEntryCaveat(
      pythonBinary(ctx.options, { kind: 'none', pids: [], description: '' }),
    );
    return caveat ? { ...result, detail: `${result.detail}; ${caveat}` } : result;
  },
  validate: optionProblem,
  verify: (options, ctx) => verifySystemtap(options, ctx),
  setup: journalLeftovers,
  undo: undoLeftover,
  worker: systemtapWorker,
  parser: createParser,
  schema,
  report: view,
});
