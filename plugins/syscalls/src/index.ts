import { createRequire } from 'node:module';
import { definePlugin } from '@scalpels/core';
import { checkChain, techniques } from './check.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import {
  isMountPoint,
  mountedTracefs,
  kernelHasTracefs,
  mountTracefs,
  TRACEFS,
  unmountTracefs,
} from './tracefs.js';
import { verify } from './verify.js';
import { worker } from './worker.js';
import { view } from './view.js';
import { OPTIONS } from './options.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

/** Undo kind: tracefs mounted by setup(); data says where. */
const MOUNT_TRACEFS = 'mount-tracefs';
/** The lease every tracer attaching to tracefs on this node shares (same key in fs-io, systemtap). */
const TRACEFS_LEASE = 'tracefs';

export default definePlugin({
  name: 'syscalls',
  version: pkg.version,
  description:
    'System calls per process and per call: counts, errors by errno, latency; aggregated in the kernel',
  apiVersion: '>=1.2.0 <2',
  target: 'optional',
  options: OPTIONS,
  requires: [
    {
      kind: 'binary',
      what: 'bpftrace (or perf, or strace as fallbacks)',
      why: 'counts the system calls',
    },
    { kind: 'root', what: 'root', why: 'attaching eBPF programs and perf events to tracepoints' },
    {
      kind: 'kernel',
      what: 'tracefs with raw_syscalls tracepoints (CONFIG_FTRACE_SYSCALLS)',
      why: 'bpftrace and perf attach there',
    },
  ],
  techniques,
  check: checkChain,
  verify,
  worker,
  parser: createParser,
  schema,
  report: view,
  async setup(_options, ctx) {
    if (ctx.technique === 'strace') return;
    // tracefs is the node's, shared with every tracer that attaches there (fs-io, systemtap's
    // bpf runtime, other syscalls tracers): whoever mounted it unmounts it only when the last
    // of them stops.
    await ctx.lease({
      resource: TRACEFS_LEASE,
      scope: 'node',
      async change(journal) {
        if (mountedTracefs() || !kernelHasTracefs() || isMountPoint(TRACEFS)) return;
        await journal({
          kind: MOUNT_TRACEFS,
          data: { path: TRACEFS },
          description: `mount tracefs on ${TRACEFS} (not mounted before; unmounted when the last tracer using it stops)`,
        });
        await mountTracefs(TRACEFS);
      },
    });
  },
  async undo(action) {
    if (action.kind !== MOUNT_TRACEFS) return;
    // Only the mount point this plugin makes: a journal entry is data, never a free path.
    const path = (action.data as { path?: unknown } | null)?.path;
    if (path !== TRACEFS) throw new Error(`refusing to unmount ${JSON.stringify(path)}`);
    await unmountTracefs(TRACEFS);
  },
});
