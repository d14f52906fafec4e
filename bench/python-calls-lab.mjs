// Benchmark of python-calls on the OpenStack lab (not a test: prints figures, asserts nothing).
//
//   node bench/python-calls-lab.mjs [boots=10] [rounds=3]
//        (root, gdb, bpftrace, the lab of /work/shared/openstack-lab up; build first: npx tsc -b)
//
// Workload: the lab's `workload.sh BOOTS` (boots BOOTS servers, waits until ACTIVE, deletes them).
// Per round, the same workload twice, in alternating order:
//   untraced   nothing attached
//   traced     python-calls attached to nova-conductor, nova-scheduler and nova-compute (their
//              whole process trees) with a filter of the four manager methods one boot runs once each
// Figure: CPU ticks (utime + stime of /proc/PID/stat, every process of the three services' trees)
// used while the workload ran, traced / untraced, medians over the rounds of this same run; and
// the calls counted per method and process in each traced round (BOOTS each, exactly).
// Other sessions may run workloads on the lab: a phase during which any workload.sh that is not
// ours ran is discarded and repeated (at most 12 times), each after 15 s without other workloads.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const lab = process.env.OSLAB_DIR ?? '/work/shared/openstack-lab';
const boots = Number(process.argv[2] ?? 10);
const rounds = Number(process.argv[3] ?? 3);
const SERVICES = ['nova-conductor', 'nova-scheduler', 'nova-compute'];
export const METHODS = [
  'ComputeTaskManager.schedule_and_build_instances',
  'SchedulerManager.select_destinations',
  'ComputeManager.build_and_run_instance',
  'ComputeManager.terminate_instance',
];

function procs() {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      out.push({
        pid: Number(name),
        ppid: Number(f[1]),
        ticks: Number(f[11]) + Number(f[12]),
        cmd,
      });
    } catch {
      // gone
    }
  }
  return out;
}

/** Root pid of each service: `python3 /usr/bin/<service>` whose parent is not the same service. */
function serviceRoots() {
  const all = procs();
  const byPid = new Map(all.map((p) => [p.pid, p]));
  const roots = {};
  for (const s of SERVICES) {
    const mine = all.filter((p) => p.cmd[1] === `/usr/bin/${s}`);
    const r = mine.find((p) => byPid.get(p.ppid)?.cmd[1] !== `/usr/bin/${s}`);
    if (r) roots[s] = r.pid;
  }
  return roots;
}

/** CPU ticks of every process in the trees of the given roots, now. */
function treeTicks(rootPids) {
  const all = procs();
  const kids = new Map();
  for (const p of all) kids.set(p.ppid, [...(kids.get(p.ppid) ?? []), p]);
  const byPid = new Map(all.map((p) => [p.pid, p]));
  let sum = 0;
  const queue = rootPids.map((p) => byPid.get(p)).filter(Boolean);
  const pids = [];
  while (queue.length) {
    const p = queue.shift();
    pids.push(p.pid);
    sum += p.ticks;
    queue.push(...(kids.get(p.pid) ?? []));
  }
  return { sum, pids };
}

/** workload.sh processes that are not `mine` nor descend from it (its subshells are ours). */
function foreignWorkloads(mine) {
  const all = procs();
  const byPid = new Map(all.map((p) => [p.pid, p]));
  const ours = (p) => {
    for (let q = p, i = 0; q && i < 64; q = byPid.get(q.ppid), i++) if (q.pid === mine) return true;
    return false;
  };
  return all
    .filter((p) => p.cmd.some((a) => a.endsWith('workload.sh')) && !ours(p))
    .map((p) => p.pid);
}

/** Runs workload.sh; resolves with its RESULT line and whether another workload overlapped. */
function workload() {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(lab, 'workload.sh'), String(boots)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    let overlapped = false;
    const poll = setInterval(() => {
      if (foreignWorkloads(child.pid).length) overlapped = true;
    }, 300);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(poll);
      const result = out.split('\n').find((l) => l.startsWith('RESULT')) ?? '';
      if (code !== 0) reject(new Error(`workload.sh exited ${code}: ${out.slice(-400)}`));
      else resolve({ result, overlapped });
    });
  });
}

/** Until no other workload has run for 15 s (other sessions share the lab). */
async function waitQuiet() {
  let quietSince = Date.now();
  while (Date.now() - quietSince < 15_000) {
    if (foreignWorkloads(0).length) quietSince = Date.now();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function measure(roots, traced) {
  for (let attempt = 0; attempt < 12; attempt++) {
    await waitQuiet();
    let before;
    let wl;
    let records = [];
    const during = async () => {
      before = treeTicks(Object.values(roots));
      wl = await workload();
      return treeTicks(Object.values(roots));
    };
    let after;
    if (traced) {
      const { runWorker } = await import(
        join(root, 'bench/node_modules/@scalpels/core/dist/testing/index.js')
      );
      const { default: plugin } = await import(join(root, 'plugins/python-calls/dist/index.js'));
      const res = await runWorker(plugin, {
        pluginDir: join(root, 'plugins/python-calls'),
        technique: 'profiler',
        options: { function: METHODS.join(',') },
        target: { kind: 'pid', pids: Object.values(roots), description: SERVICES.join(', ') },
        during: async () => {
          after = await during();
        },
      });
      records = res.records;
    } else after = await during();
    if (wl.overlapped) {
      console.error(`${traced ? 'traced' : 'untraced'}: another workload ran meanwhile; again`);
      continue;
    }
    const calls = {};
    const series = new Set();
    const techniques = new Set();
    for (const r of records) {
      if (r.kind === 'sample' && r.series === 'python.calls') {
        const k = `${r.labels.function} pid=${r.labels.pid}`;
        calls[k] = (calls[k] ?? 0) + r.value;
        series.add(JSON.stringify(r.labels));
      }
      if (r.kind === 'event' && r.type === 'attach') techniques.add(r.data.hook);
    }
    return {
      ticks: after.sum - before.sum,
      processes: after.pids.length,
      result: wl.result,
      ...(traced ? { calls, series: series.size, hooks: [...techniques] } : {}),
    };
  }
  throw new Error('other workloads kept overlapping');
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sum = (rs) => rs.reduce((a, r) => a + r.ticks, 0);

async function main() {
  const roots = serviceRoots();
  const missing = SERVICES.filter((s) => !roots[s]);
  if (!existsSync(join(lab, 'workload.sh')) || missing.length) {
    console.log(
      JSON.stringify({
        benchmark: 'python-calls-lab',
        skipped: `the OpenStack lab is not running here (missing: ${missing.join(', ') || lab})`,
      }),
    );
    return;
  }
  const runs = { untraced: [], traced: [] };
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [false, true] : [true, false];
    for (const traced of order) {
      const m = await measure(roots, traced);
      runs[traced ? 'traced' : 'untraced'].push(m);
      console.error(`round ${i + 1} ${traced ? 'traced' : 'untraced'}: ${JSON.stringify(m)}`);
    }
  }
  const u = median(runs.untraced.map((r) => r.ticks));
  const t = median(runs.traced.map((r) => r.ticks));
  // Per method, summed over the processes that ran it (nova-conductor has worker processes).
  const perMethod = runs.traced.map((r) => {
    const m = {};
    for (const [k, v] of Object.entries(r.calls)) {
      const name = k.split(' ')[0];
      m[name] = (m[name] ?? 0) + v;
    }
    return m;
  });
  const exact = perMethod.every(
    (m) => Object.keys(m).length === METHODS.length && Object.values(m).every((v) => v === boots),
  );
  const result = {
    benchmark: 'python-calls-lab',
    boots,
    rounds,
    services: roots,
    load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    untracedTicks: runs.untraced.map((r) => r.ticks),
    tracedTicks: runs.traced.map((r) => r.ticks),
    cpuRatio: Number((t / u).toFixed(3)),
    // Less sensitive to one slow round on a busy machine than the ratio of medians.
    cpuRatioOfSums: Number((sum(runs.traced) / sum(runs.untraced)).toFixed(3)),
    countsExact: exact,
    perMethod,
    calls: runs.traced.map((r) => r.calls),
    hooks: [...new Set(runs.traced.flatMap((r) => r.hooks))],
  };
  console.log(JSON.stringify(result));
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(
    join(root, 'bench/results/python-calls-lab.json'),
    JSON.stringify(result, null, 2) + '\n',
  );
}

await main();
