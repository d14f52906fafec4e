import { readFileSync } from 'node:fs';
import { definePlugin } from '@scalpels/core';
import { BUNDLED, DEFAULT_FUNCTIONS, functionEntryCaveat, pythonBinary } from './bundled.js';
import { checkSystemtap } from './check.js';
import { optionProblem } from './command.js';
import { FLAGS_HELP } from './flags.js';
import { journalLeftovers, undoLeftover } from './leftovers.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import { verifySystemtap } from './verify.js';
import { systemtapWorker } from './worker.js';

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
  apiVersion: '>=1.0.0 <2',
  target: 'optional',
  options: {
    script: {
      type: 'string',
      default: 'syscalls',
      description: `a bundled script (${Object.keys(BUNDLED).join(', ')}) or the path of a .stp file`,
    },
    args: {
      type: 'list',
      default: [],
      description:
        'arguments of a user script ($1, @1, ...), comma-separated; bundled scripts take options instead',
    },
    runtime: {
      type: 'string',
      choices: ['kernel', 'bpf'],
      default: 'kernel',
      description:
        'SystemTap back end: kernel (a loadable module; the bundled scripts) or bpf (stapbpf; a subset of the language)',
    },
    guru: {
      type: 'boolean',
      default: false,
      description:
        'guru mode (stap -g: embedded C, writes to kernel memory). Only ever set by this option, never by flags',
    },
    flags: { type: 'list', default: [], description: FLAGS_HELP },
    interval: {
      type: 'duration',
      default: '1s',
      min: '10ms',
      unit: 'ms',
      description: 'how often the bundled scripts print their counts',
    },
    functions: {
      type: 'list',
      default: DEFAULT_FUNCTIONS,
      pattern: /^(\*|[^,:\s]*:[A-Za-z_][A-Za-z0-9_]*)$/,
      description:
        'python-calls: FILE_SUFFIX:FUNCTION items to count (`:execute` = any file; `*` = every function, expensive)',
    },
    python: {
      type: 'path',
      mustExist: true,
      description:
        "python-calls: the CPython binary to probe (default: the target's interpreter, else python3 on PATH)",
    },
    startTimeout: {
      type: 'duration',
      default: '2m',
      unit: 'ms',
      description: 'how long stap may take to compile and load the script before the tracer fails',
    },
    stopTimeout: {
      type: 'duration',
      default: '20s',
      unit: 'ms',
      description:
        'how long stap may take to run its end probes and unload after SIGINT before it is killed',
    },
  },
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
});
