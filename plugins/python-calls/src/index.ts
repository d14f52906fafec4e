import { definePlugin, PLUGIN_API_VERSION, type CheckResult } from '@scalpels/core';
import { createRequire } from 'node:module';
import { createParser } from './parser.js';
import { PRESETS } from './presets.js';
import { schema } from './schema.js';
import { checkProfiler, checkUsdt } from './checks.js';
import { profilerWorker } from './worker.js';
import { usdtWorker } from './usdt.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
const presetNames = Object.keys(PRESETS);

const techniques = [
  {
    name: 'usdt',
    description:
      "CPython's USDT probe python:function__entry counted in the kernel by bpftrace, when the interpreter has it and a self-test shows it fires without a hook",
    check: checkUsdt,
  },
  {
    name: 'profiler',
    description:
      'an in-process profiler (sys.setprofile, or sys.monitoring on 3.12+) loaded with gdb into running interpreters and at start into new ones, streaming counts over a unix socket',
    check: checkProfiler,
  },
] as const;

export default definePlugin({
  name: 'python-calls',
  version: pkg.version,
  description:
    'Which Python functions a process calls, how often and for how long (USDT or an in-process profiler)',
  apiVersion: PLUGIN_API_VERSION,
  target: 'required',
  options: {
    function: {
      type: 'list',
      description:
        'Function names to count (matched against the name or the qualified name, Class.method)',
      pattern: /^[A-Za-z_][A-Za-z0-9_.<>]*$/,
    },
    module: {
      type: 'list',
      description: "Module name globs (the function's module, e.g. oslo_messaging.*)",
    },
    file: {
      type: 'list',
      description: 'Source file path globs (e.g. */oslo_messaging/rpc/client.py)',
    },
    preset: {
      type: 'list',
      description: `Ready-made filters, added to the others: ${presetNames.join(', ')}`,
      pattern: new RegExp(`^(${presetNames.join('|')})$`),
    },
    top: {
      type: 'integer',
      default: 100,
      min: 0,
      description:
        'Report the N most called functions by name and sum the rest as "(other)"; 0 = no limit',
    },
    timing: {
      type: 'boolean',
      default: false,
      description:
        'Measure inclusive time per call (python.call.time, python.call.duration); costs more',
    },
    exceptions: {
      type: 'boolean',
      default: false,
      description: 'Count calls that end by raising (python.exceptions)',
    },
    interval: {
      type: 'duration',
      default: '1s',
      min: '50ms',
      description: 'How often counts are reported',
      unit: 'ms',
    },
    follow: {
      type: 'boolean',
      default: true,
      description:
        'Also trace Python processes the target starts later (caught at exec, before they run any code)',
    },
    attachTimeout: {
      type: 'duration',
      default: '10s',
      description: "How long a running interpreter's main thread may take to pick up the profiler",
      unit: 'ms',
    },
    python: {
      type: 'string',
      default: 'python3',
      description:
        'Interpreter the USDT technique self-tests and attaches to (the one the target runs)',
    },
  },
  requires: [
    { kind: 'root', what: 'root', why: 'ptrace (gdb) and bpftrace on processes of any user' },
    {
      kind: 'binary',
      what: 'gdb (with Python)',
      why: 'loads the profiler into a running interpreter',
    },
    { kind: 'binary', what: 'bpftrace', why: 'catches new interpreters at exec; USDT probes' },
    { kind: 'binary', what: 'CPython 3.8 or newer', why: 'the traced interpreter' },
    {
      kind: 'binary',
      what: 'setpriv, timeout',
      why: 'run gdb and bpftrace so that a stop never leaves the target stopped',
    },
  ],
  techniques,
  async check(ctx): Promise<CheckResult> {
    const results: CheckResult[] = [];
    for (const t of techniques) {
      const r = await t.check(ctx);
      if (r.status === 'ok') {
        const before = results.map((x) => `${x.technique}: ${x.detail}`).join('; ');
        return before ? { ...r, detail: `${r.detail} (${before})` } : r;
      }
      results.push(r);
    }
    const fixable = results.find((r) => r.status === 'fixable');
    const detail = results.map((r) => `${r.technique}: ${r.detail}`).join('; ');
    return fixable ? { ...fixable, detail } : { status: 'unavailable', detail };
  },
  worker(options, ctx) {
    return ctx.technique === 'usdt' ? usdtWorker(options, ctx) : profilerWorker(options, ctx);
  },
  parser: createParser,
  schema,
});
