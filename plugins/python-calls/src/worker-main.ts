/**
 * The profiler technique's worker (run with node): serves the in-process agent over a unix socket,
 * loads it into the target's interpreters with gdb (running ones through a pending call, new ones
 * at Py_RunMain, caught at exec by a bpftrace program), and prints one JSON line per function,
 * process, thread and interval. SIGTERM detaches every agent, prints the last counts and exits.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import {
  bootstrapSource,
  execStopProgram,
  gdbPendingCallScript,
  gdbStartScript,
} from './inject.js';
import type { WorkerConfig } from './worker-config.js';

const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as WorkerConfig;
const agentSource = readFileSync(cfg.agentFile);
/** Under /run when we may (systemd units with PrivateTmp=yes do not see the host's /tmp). */
function makeSocketDir(): string {
  try {
    return mkdtempSync('/run/scalpels-pycalls-');
  } catch {
    return mkdtempSync('/tmp/scalpels-pycalls-');
  }
}
const dir = makeSocketDir();
// Traced services may run as other users: they need to reach the socket. The directory is not
// listable (0711) and has an unguessable name.
chmodSync(dir, 0o711);
const socketPath = join(dir, 'agent.sock');
const bootFile = join(dir, 'bootstrap.py');
writeFileSync(bootFile, bootstrapSource(socketPath), { mode: 0o600 });

let stopping = false;
const conns = new Set<Socket>();
const waiters = new Map<number, (error: string | undefined) => void>();
/** How each pid got its agent (for the attach event). */
const via = new Map<number, string>();
/** When getting the agent into each pid began (for the attach event's `attachMs`). */
const attachStart = new Map<number, number>();
const totals = new Map<string, number>();
const inflight = new Set<Promise<unknown>>();
const gdbs = new Set<ReturnType<typeof spawn>>();
/** Processes the exec watcher stopped and we resumed; and when it started (see sweepStopped). */
const resumed = new Set<number>();
let watcherStartedAt = 0;
let execWatcher: ReturnType<typeof spawn> | undefined;

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...obj, ts: Date.now() })}\n`);
}

function log(text: string): void {
  process.stderr.write(`python-calls: ${text}\n`);
}

// ---------------------------------------------------------------------------------------------
// The agents' side

interface AgentMessage {
  t: string;
  pid?: number;
  message?: string;
  reason?: string;
  python?: string;
  hook?: string;
  executable?: string;
  forked?: boolean;
  items?: [string, string, string, number, number, number, number, Record<string, number>?][];
}

function serve(): Promise<Server> {
  const server = createServer((sock) => {
    conns.add(sock);
    let pid: number | undefined;
    let detached = false;
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let m: AgentMessage;
        try {
          m = JSON.parse(line) as AgentMessage;
        } catch {
          log(`bad message from agent: ${line.slice(0, 100)}`);
          continue;
        }
        if (typeof m.pid === 'number') pid = m.pid;
        onMessage(sock, m, pid, () => (detached = true));
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      conns.delete(sock);
      if (pid !== undefined && !detached) emit({ t: 'detach', pid, reason: 'lost' });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      chmodSync(socketPath, 0o666);
      resolve(server);
    });
  });
}

function onMessage(
  sock: Socket,
  m: AgentMessage,
  pid: number | undefined,
  markDetached: () => void,
): void {
  switch (m.t) {
    case 'boot': {
      const header = {
        size: agentSource.length,
        name: '<scalpels-python-calls-agent>',
        sock: socketPath,
        rules: cfg.rules,
        timing: cfg.timing,
        exceptions: cfg.exceptions,
        intervalMs: cfg.intervalMs,
      };
      sock.write(`${JSON.stringify(header)}\n`);
      sock.write(agentSource);
      break;
    }
    case 'hello': {
      const how = m.forked ? 'fork' : (via.get(pid!) ?? 'unknown');
      const began = m.forked ? undefined : attachStart.get(pid!);
      emit({
        t: 'attach',
        pid,
        via: how,
        python: m.python,
        hook: m.hook,
        executable: m.executable,
        ...(began !== undefined ? { attachMs: Date.now() - began } : {}),
      });
      waiters.get(pid!)?.(undefined);
      if (stopping) sock.write('{"cmd":"stop"}\n');
      break;
    }
    case 'error':
      emit({ t: 'attach-failed', pid: pid ?? 0, reason: m.message ?? 'agent error' });
      waiters.get(pid!)?.(m.message ?? 'agent error');
      break;
    case 'counts':
      if (pid !== undefined) emitCounts(pid, m.items ?? []);
      break;
    case 'detached':
      markDetached();
      emit({ t: 'detach', pid, reason: m.reason ?? 'stop' });
      break;
    default:
      log(`unknown message ${JSON.stringify(m.t)}`);
  }
}

/** One line per function and thread; with `top`, functions outside the top N (by calls so far) become `(other)`. */
function emitCounts(pid: number, items: NonNullable<AgentMessage['items']>): void {
  for (const it of items) totals.set(it[1], (totals.get(it[1]) ?? 0) + it[4]);
  let keep: Set<string> | undefined;
  if (cfg.top > 0 && totals.size > cfg.top)
    keep = new Set(
      [...totals.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, cfg.top)
        .map(([k]) => k),
    );
  const other = new Map<
    string,
    { calls: number; ns: number; exc: number; hist: Record<string, number> }
  >();
  for (const [thread, fn, file, line, calls, ns, exc, hist] of items) {
    if (keep && !keep.has(fn)) {
      const o = other.get(thread) ?? { calls: 0, ns: 0, exc: 0, hist: {} };
      o.calls += calls;
      o.ns += ns;
      o.exc += exc;
      for (const [b, n] of Object.entries(hist ?? {})) o.hist[b] = (o.hist[b] ?? 0) + n;
      other.set(thread, o);
      continue;
    }
    emit(callsLine(pid, thread, fn, file, line, calls, ns, exc, hist));
  }
  for (const [thread, o] of other)
    emit(callsLine(pid, thread, '(other)', '', 0, o.calls, o.ns, o.exc, o.hist));
}

function callsLine(
  pid: number,
  thread: string,
  fn: string,
  file: string,
  line: number,
  calls: number,
  ns: number,
  exc: number,
  hist: Record<string, number> | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = { t: 'calls', pid, thread, function: fn, file, line, calls };
  if (ns) out.ns = ns;
  if (exc) out.exceptions = exc;
  if (hist && Object.keys(hist).length) out.hist = hist;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Getting the agent into interpreters

function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** An interpreter started as `python*` (directly, through a shebang or a venv link). */
function isPython(pid: number): boolean {
  const exe = exeOf(pid);
  return (
    exe !== undefined &&
    /^python\d*(\.\d+)?[dmu]*$/.test(basename(exe).replace(/ \(deleted\)$/, ''))
  );
}

/** A running process with CPython in it: a python* executable, or one embedding libpython (uwsgi, mod_wsgi). */
function hasPython(pid: number): boolean {
  if (isPython(pid)) return true;
  try {
    return /\/libpython3\.\d+[a-z]*\.so/.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));
  } catch {
    return false;
  }
}

/** Runs gdb on a pid with a script; resolves with its `SCALPELS-` result line or an error. */
function runGdb(
  pid: number,
  script: string,
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  const file = join(dir, `gdb-${pid}.py`);
  writeFileSync(file, script, { mode: 0o600 });
  return new Promise((resolve) => {
    // gdb runs in its own process group, under timeout(1): the stop signal the core sends to
    // the worker's group must not reach a gdb in the middle of a call into the target, and gdb
    // must end even if this worker is killed. timeout sends SIGINT first: gdb then abandons a
    // call into the target, restores its registers (unwindonsignal) and detaches.
    const seconds = String(Math.max(1, Math.round(timeoutMs / 1000)));
    const child = spawn(
      'timeout',
      [
        '-k',
        '5',
        '-s',
        'INT',
        seconds,
        cfg.gdb,
        '-p',
        String(pid),
        '-batch',
        '-nx',
        '-iex',
        'set auto-load off',
        '-x',
        file,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    gdbs.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', (e) => {
      gdbs.delete(child);
      resolve({ ok: false, detail: `cannot run gdb: ${e.message}` });
    });
    child.on('close', (code) => {
      gdbs.delete(child);
      rmSync(file, { force: true });
      const m = /^SCALPELS-(RESULT|ERROR) (.*)$/m.exec(out);
      if (m) resolve({ ok: m[1] === 'RESULT', detail: m[2]! });
      else {
        const why = err
          .split('\n')
          .find((l) => /ptrace|denied|No such process|not permitted/i.test(l));
        resolve({ ok: false, detail: why ?? `gdb exited with code ${code} without a result` });
      }
    });
  });
}

function waitHello(pid: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiters.delete(pid);
      resolve(
        `the interpreter did not run the profiler within ${timeoutMs} ms (its main thread runs no Python code, for example blocked in a system call; or it cannot reach ${socketPath}, being in another mount namespace)`,
      );
    }, timeoutMs);
    waiters.set(pid, (error) => {
      clearTimeout(timer);
      waiters.delete(pid);
      resolve(error);
    });
  });
}

/** A running interpreter: queue the bootstrap for its main thread. */
async function attachRunning(pid: number): Promise<string | undefined> {
  via.set(pid, 'pending-call');
  attachStart.set(pid, Date.now());
  const hello = waitHello(pid, cfg.attachTimeoutMs);
  const r = await runGdb(pid, gdbPendingCallScript(bootFile), 15_000);
  if (!r.ok) {
    waiters.get(pid)?.(r.detail);
    await hello;
    return `gdb: ${r.detail}`;
  }
  return hello;
}

/** A process of the target stopped right after exec: inject interpreters before user code, resume all. */
async function onExec(pid: number): Promise<void> {
  try {
    if (!isPython(pid) || stopping) return;
    via.set(pid, 'start');
    attachStart.set(pid, Date.now());
    const hello = waitHello(pid, 10_000);
    const r = await runGdb(pid, gdbStartScript(bootFile), 15_000);
    if (!r.ok) waiters.get(pid)?.(r.detail);
    const error = await hello;
    if (error) emit({ t: 'attach-failed', pid, reason: error });
  } finally {
    resumed.add(pid);
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // gone already
    }
  }
}

function startExecWatcher(rootPids: readonly number[]): Promise<void> {
  const prog = join(dir, 'exec-stop.bt');
  writeFileSync(prog, execStopProgram(rootPids), { mode: 0o600 });
  // Its own process group, so the core's stop signal to the worker's group does not end it
  // before it has printed every process it stopped; --pdeathsig ends it with the worker, so it
  // never stops processes with nobody left to resume them.
  watcherStartedAt = bootTicksNow();
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', cfg.bpftrace, '--unsafe', prog], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  execWatcher = child;
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'ready') resolve();
        const m = /^exec (\d+)$/.exec(line);
        if (m) {
          const p = onExec(Number(m[1]));
          inflight.add(p);
          void p.finally(() => inflight.delete(p));
        }
      }
    });
    child.on('error', (e) => reject(new Error(`cannot run bpftrace: ${e.message}`)));
    child.on('close', (code) => {
      execWatcher = undefined;
      if (!stopping) {
        const tail = err
          .trim()
          .split('\n')
          .filter((l) => !/RLIMIT_MEMLOCK/.test(l))
          .slice(-2)
          .join(' | ');
        reject(new Error(`bpftrace (exec watcher) exited with code ${code}: ${tail}`));
        log(
          `exec watcher ended (code ${code}): ${tail}; new processes of the target are not followed`,
        );
      }
    });
  });
}

/** The target's processes now: roots and their descendants. */
function processTree(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const queue = [...roots];
  while (queue.length) {
    const p = queue.shift()!;
    if (out.includes(p)) continue;
    out.push(p);
    queue.push(...(children.get(p) ?? []));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  // Let the exec watcher drain: a process it stopped must still be seen, to be resumed.
  await stopExecWatcher();
  await Promise.allSettled([...inflight]);
  sweepStopped();
  for (const c of conns) c.write('{"cmd":"stop"}\n');
  const deadline = Date.now() + 4000;
  while (conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const c of conns) c.destroy();
  cleanup();
  process.exit(0);
}

function stopExecWatcher(): Promise<void> {
  const w = execWatcher;
  if (!w || w.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => w.kill('SIGKILL'), 5000);
    w.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    w.kill('SIGTERM');
  });
}

function cleanup(): void {
  rmSync(dir, { recursive: true, force: true });
}

async function fail(message: string): Promise<never> {
  log(message);
  stopping = true;
  await stopExecWatcher();
  await Promise.allSettled([...inflight]);
  sweepStopped();
  for (const c of conns) c.write('{"cmd":"stop"}\n');
  cleanup();
  process.exit(1);
}

/** Clock ticks since boot now, as in /proc/PID/stat's starttime. */
function bootTicksNow(): number {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Math.floor(uptime * 100); // USER_HZ is 100 on Linux
}

/**
 * After the exec watcher has ended: a process of the target that is stopped, was started after
 * the watcher and was never resumed by us can only be one whose exec line was lost; resume it.
 */
function sweepStopped(): void {
  if (!watcherStartedAt) return;
  for (const pid of processTree(cfg.target.pids)) {
    if (resumed.has(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'T' && Number(fields[19]) >= watcherStartedAt) {
        process.kill(pid, 'SIGCONT');
        log(`resumed pid ${pid}, stopped at exec while the tracer was ending`);
      }
    } catch {
      // gone
    }
  }
}

async function main(): Promise<void> {
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  await serve();
  const roots = cfg.target.pids;
  if (cfg.follow && roots.length > 0) {
    try {
      await startExecWatcher(roots);
    } catch (e) {
      return fail((e as Error).message);
    }
  }
  const pythons = processTree(roots).filter(hasPython);
  if (cfg.target.kind !== 'run' && pythons.length === 0)
    return fail(`no Python interpreter in the target (${cfg.target.description})`);
  const attaching = Promise.all(
    pythons.map(async (pid) => ({ pid, error: await attachRunning(pid) })),
  );
  // A stop during attaching waits for it: gdb must not be left in the middle of its work.
  inflight.add(attaching);
  const results = await attaching;
  inflight.delete(attaching);
  if (stopping) return;
  const failed = results.filter((r) => r.error !== undefined);
  for (const r of failed) emit({ t: 'attach-failed', pid: r.pid, reason: r.error });
  if (failed.length > 0 && failed.length === results.length)
    return fail(failed.map((r) => `pid ${r.pid}: ${r.error}`).join('; '));
  emit({ t: 'ready', attached: results.length - failed.length, follow: cfg.follow });
}

main().catch((e: Error) => fail(e.message));
