// Benchmark of the rpc-calls plugin (not a test: prints figures, asserts nothing).
//
//   node bench/rpc-calls-overhead.mjs [runs=3]    (build first: npx tsc -b plugins/rpc-calls;
//                                                  needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl as root)
//
// 1. Workload slowdown: wall time of a fixed oslo.messaging workload (CALLS sequential calls with
//    no server delay, then CASTS casts) on a throw-away vhost while traced (tracing on, the real
//    worker, its output parsed by the real parser in this process), as a ratio to the same
//    workload untraced; runs alternate in this same process.
// 2. Worker cost: CPU time of the worker per traced message.
// 3. Parser throughput: recorded worker lines parsed per second, as a ratio to JSON.parse alone.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { validateOptions } from '@scalpels/core';

const root = fileURLToPath(new URL('..', import.meta.url));
const pluginDir = `${root}plugins/rpc-calls`;
const plugin = (await import(`${pluginDir}/dist/index.js`)).default;
const peer = await import(`${pluginDir}/test/fixtures/oslo-peer.mjs`);
const runs = Number(process.argv[2] ?? 3);
const CALLS = 2000;
const CASTS = 5000;
const USER_HZ = 100;
const vhost = `scalpels-bench-rpc-${process.pid}`;

function cpuMsOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ;
}

async function workload() {
  const url = peer.amqpUrl(vhost);
  const server = await peer.OsloServer.start(url, {
    exchange: 'nova',
    topic: 'compute',
    server: 'h1',
    delayMs: 0,
  });
  const client = await peer.OsloClient.connect(url, 'nova');
  const ctx = peer.context('bench-token');
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) await client.call('compute.h1', 'build_instances', { i }, ctx);
  for (let i = 0; i < CASTS; i++) client.cast('compute', 'terminate_instance', { i }, ctx);
  await client.flush();
  while (server.received.length < CALLS + CASTS) await new Promise((r) => setTimeout(r, 5));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await client.close();
  await server.close();
  return ms;
}

async function traced() {
  const options = validateOptions(plugin, { vhost });
  const journal = [];
  const technique = 'firehose+nft';
  const ctx = {
    target: { kind: 'none', pids: [] },
    taskId: 'bench',
    tracerId: 1,
    technique,
    runtimeDir: '/tmp',
    pluginDir,
  };
  await plugin.setup(options, { ...ctx, journal: async (a) => void journal.push(a) });
  try {
    const spec = await plugin.worker(options, ctx);
    const parser = plugin.parser({ options, technique, startedAt: Date.now() });
    const child = spawn(spec.argv[0], spec.argv.slice(1), {
      env: { ...process.env, ...spec.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let rest = '';
    let ready = false;
    let calls = 0;
    let replies = 0;
    let unmatched = 0;
    child.stdout.on('data', (c) => {
      const text = rest + c.toString();
      const cut = text.lastIndexOf('\n');
      for (const line of text.slice(0, cut).split('\n')) {
        if (line.startsWith('{"type":"ready"')) ready = true;
        const out = parser.line(line);
        for (const r of Array.isArray(out) ? out : out ? [out] : [])
          if (r.kind === 'sample' && r.series === 'rpc.calls') calls += r.value;
          else if (r.kind === 'sample' && r.series === 'rpc.replies')
            if (r.labels.method === '(unmatched)') unmatched += r.value;
            else replies += r.value;
      }
      rest = text.slice(cut + 1);
    });
    while (!ready) await new Promise((r) => setTimeout(r, 20));
    const cpu0 = cpuMsOf(child.pid);
    const ms = await workload();
    await new Promise((r) => setTimeout(r, 1500)); // let the last copies and a tick arrive
    const cpu = cpuMsOf(child.pid) - cpu0;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    for (const r of [parser.end()].flat())
      if (r?.kind === 'sample' && r.series === 'rpc.replies')
        if (r.labels.method === '(unmatched)') unmatched += r.value;
        else replies += r.value;
    return {
      ms,
      workerCpuMs: cpu,
      callsCounted: calls,
      repliesMatched: replies,
      repliesUnmatched: unmatched,
    };
  } finally {
    for (const a of journal.reverse()) await plugin.undo(a, options);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

peer.createVhost(vhost);
let result;
try {
  const plain = [];
  const withTracer = [];
  for (let i = 0; i < runs; i++) {
    plain.push(await workload());
    withTracer.push(await traced());
  }
  // Each traced message: the call, its reply, and each cast.
  const messages = 2 * CALLS + CASTS;

  const c = readFileSync(`${pluginDir}/testdata/rabbitmq-3.10.8-oslo-rpc/stdout.txt`, 'utf8')
    .trimEnd()
    .split('\n');
  const lines = Array.from({ length: 200_000 }, (_, i) => c[i % c.length]);
  const options = validateOptions(plugin, {});
  let t = process.hrtime.bigint();
  const parser = plugin.parser({ options, startedAt: 0 });
  for (const l of lines) parser.line(l);
  parser.end();
  const parseS = Number(process.hrtime.bigint() - t) / 1e9;
  t = process.hrtime.bigint();
  for (const l of lines) JSON.parse(l);
  const jsonS = Number(process.hrtime.bigint() - t) / 1e9;

  result = {
    bench: 'rpc-calls-overhead',
    runs,
    workload: { calls: CALLS, casts: CASTS },
    plainMs: plain.map((x) => Math.round(x)),
    tracedMs: withTracer.map((x) => Math.round(x.ms)),
    slowdown: Number((median(withTracer.map((x) => x.ms)) / median(plain)).toFixed(3)),
    callsCounted: withTracer.map((x) => x.callsCounted),
    repliesMatched: withTracer.map((x) => x.repliesMatched),
    repliesUnmatched: withTracer.map((x) => x.repliesUnmatched),
    workerCpuUsPerMessage: Number(
      ((median(withTracer.map((x) => x.workerCpuMs)) * 1000) / messages).toFixed(1),
    ),
    parserLinesPerSecond: Math.round(lines.length / parseS),
    parserVsJsonParse: Number((jsonS / parseS).toFixed(3)),
  };
} finally {
  peer.deleteVhost(vhost);
}
console.log(JSON.stringify(result));
mkdirSync(`${root}bench/results`, { recursive: true });
writeFileSync(
  `${root}bench/results/rpc-calls-overhead.json`,
  `${JSON.stringify(result, null, 2)}\n`,
);
