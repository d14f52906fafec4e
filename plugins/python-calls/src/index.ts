import { definePlugin, NODE_CONFIG_FILE, type CheckResult } from '@scalpels/core';
import { createRequire } from 'node:module';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import { checkProfiler, checkUsdt } from './checks.js';
import { describePlan } from './plan.js';
import { profilerWorker } from './worker.js';
import { usdtWorker } from './usdt.js';
import { view } from './view.js';
import { OPTIONS } from './options.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

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
      'an in-process agent loaded with gdb into running interpreters and at start into new ones, streaming counts over a unix socket: it instruments only the functions the rules name (a counting trampoline as their __code__), or, for a bare file glob or no rule, hooks every call (sys.setprofile, sys.monitoring)',
    check: checkProfiler,
  },
] as const;

export default definePlugin({
  name: 'python-calls',
  version: pkg.version,
  description:
    'Which Python functions a process calls, how often and for how long (USDT or an in-process profiler)',
  apiVersion: '>=1.2.0 <2',
  target: 'required',
  options: OPTIONS,
  retiredOptions: {
    python: `an option never names a program: USDT probes use the target's own interpreter, else "python" in the "python-calls" section of ${NODE_CONFIG_FILE}, else /usr/bin/python3`,
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
        // Per rule, how the profiler counts it (instrumented functions or the global hook).
        const plan = r.technique === 'profiler' ? `; rules: ${describePlan(ctx.options)}` : '';
        const detail = `${r.detail}${plan}`;
        return { ...r, detail: before ? `${detail} (${before})` : detail };
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
  report: view,
});
