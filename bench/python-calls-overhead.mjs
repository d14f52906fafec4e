// Benchmark of the python-calls plugin (not a test: prints figures, asserts nothing).
//
//   node bench/python-calls-overhead.mjs [calls=2000000] [runs=3]
//        (root, gdb, bpftrace; build first: npx tsc -b)
//
// Workload: a Python loop calling a trivial function `calls` times, timing its own loop with
// time.perf_counter (interpreter start-up, attaching and tracer start-up are not in the figure).
// Per interpreter (Debian's /usr/bin/python3.11, pyenv 3.12 when present) it runs:
//   bare                     no tracer
//   wrapper                  no tracer; f wrapped by a Python decorator (`def w(*a, **k): return
//                            f(*a, **k)`, as functools.wraps decorators are written): the cost
//                            counting f may have (the target)
//   profiler-f               `scalpels run -t python-calls --set python-calls.function=f` (counts
//                            f: instrumented, no global hook)
//   profiler-unmatched       same with a filter that matches nothing
//   profiler-all             every call counted (no filter: the global hook)
//   profiler-file            a bare file glob matching the script (the global hook, counting f)
//   profiler-timing          function=f with timing=true (two clock reads and a histogram per call)
//   hook-only                the script sets a no-op sys.setprofile hook itself, no tracer
//   usdt-with-hook           USDT technique (bpftrace) while the script holds the no-op hook
//                            (Debian's 3.11 probes fire only under a hook; Debian python only)
// Each traced figure is a ratio to the median bare loop time of the same interpreter measured in
// this same run, with bare runs interleaved between the others.
//
// Service-like case (`service` in the output): a loop of `calls / 50` "requests", each doing what
// a service's request does in Python (a few hundred calls: logging to a NullHandler, a JSON round
// trip, a regex, small classes and methods), with `handle` called once per request; the same
// variants with `function=handle`, a filter matching nothing, and the global hook (a bare file
// glob). Figure: loop time relative to the same loop untraced.
//
// In-process case (`inprocess`): the agent (scripts/pycalls_agent.py, connected to a socketpair
// instead of the worker) instruments `f` in one interpreter that also times, interleaved 7 times,
// the same loop over an uninstrumented function and over a Python `*args, **kwargs` wrapper:
// the extra nanoseconds per call of counting against those of a wrapper, free of the start-up
// and scheduling noise of separate runs; the counts are checked (7 x calls exactly).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli/dist/main.js');
const pluginDir = join(root, 'plugins/python-calls');
const calls = Number(process.argv[2] ?? 2_000_000);
const runs = Number(process.argv[3] ?? 3);
const work = mkdtempSync(join(tmpdir(), 'pycalls-bench-'));
const timeFile = join(work, 'ns');

const LOOP = `
import sys, time
def f():
    pass
n = int(sys.argv[1])
if sys.argv[3] == "hook":
    sys.setprofile(lambda *a: None)
if sys.argv[3] == "wrap":
    _f = f
    def f(*a, **k):
        return _f(*a, **k)
t = time.perf_counter()
for _ in range(n):
    f()
dt = time.perf_counter() - t
sys.setprofile(None)
open(sys.argv[2], "w").write("%d" % (dt * 1e9))
`;
writeFileSync(join(work, 'loop.py'), LOOP);

const SERVICE = `
import json, logging, re, sys, time
log = logging.getLogger("svc")
log.addHandler(logging.NullHandler())
log.setLevel(logging.DEBUG)
ROUTE = re.compile(r"^/v2/(?P<project>[0-9a-f]+)/servers/(?P<id>[0-9a-f-]+)$")
class Instance:
    def __init__(self, uuid, flavor):
        self.uuid, self.flavor, self.state = uuid, flavor, "building"
    def to_dict(self):
        return {"uuid": self.uuid, "flavor": self.flavor, "state": self.state}
class Manager:
    def __init__(self):
        self.instances = {}
    def lookup(self, path):
        m = ROUTE.match(path)
        return m.group("project"), m.group("id")
    def build(self, uuid, flavor):
        inst = Instance(uuid, flavor)
        self.instances[uuid] = inst
        log.debug("building %s with %s", uuid, flavor)
        return inst
    def handle(self, path, body):
        project, uuid = self.lookup(path)
        req = json.loads(body)
        inst = self.build(uuid, req["flavor"])
        inst.state = "active"
        log.info("project %s: %s active", project, uuid)
        out = json.dumps(inst.to_dict(), sort_keys=True)
        del self.instances[uuid]
        return out
n = int(sys.argv[1]) // 50
mgr = Manager()
body = json.dumps({"flavor": "m1.small", "name": "vm", "meta": {"a": 1, "b": [1, 2, 3]}})
t = time.perf_counter()
for i in range(n):
    mgr.handle("/v2/0123456789abcdef/servers/%08x-aaaa-bbbb-cccc-dddddddddddd" % i, body)
dt = time.perf_counter() - t
open(sys.argv[2], "w").write("%d" % (dt * 1e9))
`;
writeFileSync(join(work, 'service.py'), SERVICE);
const INPROCESS = `
import json, socket, sys, time
def f():
    pass
def h():
    pass
def g():
    pass
_g = g
def wrapper(*a, **k):
    return _g(*a, **k)
N = int(sys.argv[1])
def loop(fn):
    t = time.perf_counter()
    for _ in range(N):
        fn()
    return time.perf_counter() - t
a, b = socket.socketpair()
cfg = {"sock": "/nonexistent", "rules": [{"functions": ["f"]}], "intervalMs": 1e9}
exec(compile(open(sys.argv[2]).read(), "<scalpels-python-calls-agent>", "exec"),
     {"__name__": "_scalpels_pycalls", "_sock": b, "_config": cfg})
agent = sys.modules["_scalpels_pycalls"].agent
res = {"bare": [], "wrapper": [], "counted": []}
for _ in range(7):
    res["bare"].append(loop(h))
    res["wrapper"].append(loop(wrapper))
    res["counted"].append(loop(f))
items = agent.snapshot()["items"]
agent.finish()
m = {k: sorted(v)[3] * 1e9 / N for k, v in res.items()}
print(json.dumps({"hook": agent.hook, "nsPerCall": {k: round(v, 1) for k, v in m.items()},
    "extraNs": {"wrapper": round(m["wrapper"] - m["bare"], 1), "counted": round(m["counted"] - m["bare"], 1)},
    "countsExact": len(items) == 1 and items[0][4] == 7 * N}))
`;
writeFileSync(join(work, 'inprocess.py'), INPROCESS);

function inprocess(python) {
  return new Promise((resolve, reject) => {
    const p = spawn(
      python,
      [join(work, 'inprocess.py'), String(calls), join(pluginDir, 'scripts/pycalls_agent.py')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`inprocess: exit ${code}`)),
    );
  });
}
const serviceArgv = (python) => [python, join(work, 'service.py'), String(calls), timeFile];
const loopArgv = (python, hook = 'nohook') => [
  python,
  join(work, 'loop.py'),
  String(calls),
  timeFile,
  hook,
];
const loopMs = () => Number(readFileSync(timeFile, 'utf8')) / 1e6;

function run(argv) {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, XDG_DATA_HOME: work, NO_COLOR: '1' },
    });
    let err = '';
    p.stderr.on('data', (c) => (err += c));
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${argv.join(' ')}: exit ${code}: ${err.slice(-500)}`)),
    );
  });
}

const scalpels = (python, ...sets) => traced(loopArgv(python), sets);
const traced = (argv, sets) =>
  run([
    process.execPath,
    cli,
    'run',
    '-t',
    'python-calls',
    ...sets.flatMap((s) => ['--set', `python-calls.${s}`]),
    '--store',
    `sqlite://${join(work, 'store.db')}`,
    '--',
    ...argv,
  ]);

/** The USDT technique is not chosen here (its self-test fails on 3.11), so run its worker directly. */
async function usdt(python) {
  const { runWorker } = await import(
    join(root, 'bench/node_modules/@scalpels/core/dist/testing/index.js')
  );
  const { default: plugin } = await import(join(pluginDir, 'dist/index.js'));
  const go = join(work, 'go');
  rmSync(go, { force: true });
  const launcher = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'); const cp = require('child_process');
const t = setInterval(() => { if (!fs.existsSync(${JSON.stringify(go)})) return; clearInterval(t);
  const c = cp.spawn(${JSON.stringify(python)}, ${JSON.stringify(loopArgv(python, 'hook').slice(1))}, { stdio: 'inherit' });
  c.on('close', (code) => process.exit(code ?? 1)); }, 5);`,
    ],
    { stdio: 'ignore' },
  );
  const closed = new Promise((r) => launcher.on('close', r));
  await runWorker(plugin, {
    pluginDir,
    technique: 'usdt',
    // The probes' interpreter: the target's own once it runs Python, else /usr/bin/python3 (an
    // option never names a program).
    options: { function: 'f' },
    target: { kind: 'run', pids: [launcher.pid], description: 'bench' },
    during: async () => {
      writeFileSync(go, '');
      await closed;
    },
  });
}

const pythons = [
  ['debian-3.11', '/usr/bin/python3.11'],
  ['pyenv-3.12', '/root/.pyenv/versions/3.12.1/bin/python3.12'],
].filter(([, p]) => existsSync(p));

/** The service-like loop: untraced, and the variants of the header comment; ratios to untraced. */
async function serviceCase(python) {
  const variants = {
    'profiler-handle': () => traced(serviceArgv(python), ['function=handle']),
    'profiler-unmatched': () => traced(serviceArgv(python), ['function=no_such_function']),
    'profiler-hook': () => traced(serviceArgv(python), ['file=*/service.py']),
  };
  const times = Object.fromEntries(['bare', ...Object.keys(variants)].map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    for (const [v, fn] of Object.entries(variants)) {
      await run(serviceArgv(python));
      times.bare.push(loopMs());
      try {
        await fn();
        times[v].push(loopMs());
      } catch (e) {
        console.error(`service ${v}: ${e.message}`);
      }
    }
  }
  const bare = median(times.bare);
  return {
    requests: Math.floor(calls / 50),
    bareMs: Number(bare.toFixed(1)),
    variants: Object.fromEntries(
      Object.entries(times)
        .filter(([k, v]) => k !== 'bare' && v.length > 0)
        .map(([k, v]) => [
          k,
          { ms: Number(median(v).toFixed(1)), slowdown: Number((median(v) / bare).toFixed(3)) },
        ]),
    ),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result = {
  benchmark: 'python-calls-overhead',
  calls,
  load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  interpreters: {},
};
for (const [name, python] of pythons) {
  const variants = {
    wrapper: () => run(loopArgv(python, 'wrap')),
    'profiler-f': () => scalpels(python, 'function=f'),
    'profiler-unmatched': () => scalpels(python, 'function=no_such_function'),
    'profiler-all': () => scalpels(python),
    'profiler-file': () => scalpels(python, 'file=*/loop.py'),
    'profiler-timing': () => scalpels(python, 'function=f', 'timing=true'),
    'hook-only': () => run(loopArgv(python, 'hook')),
  };
  if (name.startsWith('debian')) variants['usdt-with-hook'] = () => usdt(python);
  const times = Object.fromEntries(['bare', ...Object.keys(variants)].map((k) => [k, []]));
  for (let i = 0; i < runs; i++) {
    for (const [v, fn] of Object.entries(variants)) {
      await run(loopArgv(python));
      times.bare.push(loopMs());
      try {
        await fn();
        times[v].push(loopMs());
      } catch (e) {
        console.error(`${name} ${v}: ${e.message}`);
      }
    }
  }
  const service = await serviceCase(python);
  const inproc = await inprocess(python).catch((e) => ({ error: e.message }));
  const bare = median(times.bare);
  result.interpreters[name] = {
    service,
    inprocess: inproc,
    python,
    bareMs: Number(bare.toFixed(1)),
    variants: Object.fromEntries(
      Object.entries(times)
        .filter(([k, v]) => k !== 'bare' && v.length > 0)
        .map(([k, v]) => [
          k,
          { ms: Number(median(v).toFixed(1)), slowdown: Number((median(v) / bare).toFixed(2)) },
        ]),
    ),
  };
}
console.log(JSON.stringify(result));
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, 'bench/results/python-calls-overhead.json'),
  JSON.stringify(result, null, 2) + '\n',
);
rmSync(work, { recursive: true, force: true });
