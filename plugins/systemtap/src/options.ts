import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';
import { BUNDLED, DEFAULT_FUNCTIONS } from './bundled.js';
import { FLAGS_HELP } from './flags.js';

/** The options of systemtap (`--set systemtap.KEY=VALUE`). */
export const OPTIONS = {
  script: {
    type: 'string',
    default: 'syscalls',
    description: `a bundled script (${Object.keys(BUNDLED).join(', ')}) or the path of a .stp file (needs --allow-scripts; root-owned, not group/world-writable, in root-owned folders)`,
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
      'guru mode (stap -g: embedded C, writes to kernel memory; needs --allow-guru). Only ever set by this option, never by flags',
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
  'start-timeout': {
    aliases: ['startTimeout'],
    type: 'duration',
    default: '2m',
    unit: 'ms',
    description: 'how long stap may take to compile and load the script before the tracer fails',
  },
  'stop-timeout': {
    aliases: ['stopTimeout'],
    type: 'duration',
    default: '20s',
    unit: 'ms',
    description:
      'how long stap may take to run its end probes and unload after SIGINT before it is killed',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
