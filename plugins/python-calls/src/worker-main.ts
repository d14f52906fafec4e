/**
 * The profiler technique's worker (run with node): serves the in-process agent over a unix socket,
 * loads it into the target's interpreters with gdb (running ones through a pending call, new ones
 * at Py_RunMain, caught at exec by a bpftrace program), and prints one JSON line per function,
 * process, thread and interval. SIGTERM detaches every agent, prints the last counts and exits.
 */
import { spawn } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, join } from 'node:path';
import { processTree, readExe, readStat, ticksSinceBoot } from '@scalpels/core/procfs';
import { announceReady, WORKER_READY_LINE } from '@scalpels/core/api';
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
// listable (0711) and has an unguessable name; the socket's path is still public
// (/proc/net/unix), so what keeps other local users out is the key below.
chmodSync(dir, 0o711);
const socketPath = join(dir, 'agent.sock');
const bootFile = join(dir, 'bootstrap.py');
/**
 * Who may talk to this worker: a connection's first line must carry this key. It exists here,
 * in the root-only bootstrap file gdb reads, and in the memory of the interpreters gdb made run
 * the bootstrap (and of their forked children): only traced processes and their descendants
 * have it. Node cannot read SO_PEERCRED, and a pid a peer claims proves nothing.
 */
const key = randomBytes(32).toString('hex');
writeFileSync(bootFile, bootstrapSource(socketPath, key), { mode: 0o600 });
/** Bounds: the first line (before the key is checked), any later line, waiting connections. */
const MAX_AUTH_LINE = 4096;
const MAX_LINE = 16 << 20;
const MAX_UNAUTHENTICATED = 64;
const AUTH_TIMEOUT_MS = 10_000;
let unauthenticated = 0;
let refusals = 0;

function keyMatches(given: unknown): boolean {
  if (typeof given !== 'string' || given.length !== key.length) return false;
  return timingSafeEqual(Buffer.from(given), Buffer.from(key));
}

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
  /** The worker's key: required in a connection's first message. */
  key?: string;
  pid?: number;
  message?: string;
  reason?: string;
  python?: string;
  hook?: string;
  executable?: string;
  forked?: boolean;
  via?: string;
  plan?: [Record<string, string[]>, string, string][];
  items?: [string, string, string, number, number, number, number, Record<string, number>?][];
}

function serve(): Promise<Server> {
  const server = createServer((sock) => {
    let pid: number | undefined;
    let detached = false;
    let authed = false;
    let buf = '';
    if (unauthenticated >= MAX_UNAUTHENTICATED) {
      sock.destroy();
      return;
    }
    unauthenticated++;
    let counted = true;
    const settle = (): void => {
      if (counted) unauthenticated--;
      counted = false;
    };
    const refuse = (why: string): void => {
      // Logged a bounded number of times: a local user must not be able to flood the log.
      if (++refusals <= 10) log(`refused a connection on the agent socket: ${why}`);
      settle();
      sock.destroy();
    };
    const timer = setTimeout(() => refuse('no key in time'), AUTH_TIMEOUT_MS);
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
          if (!authed) return refuse('first line is not JSON');
          log(`bad message from agent: ${line.slice(0, 100)}`);
          continue;
        }
        if (!authed) {
          if (!keyMatches(m.key)) return refuse('bad or missing key');
          authed = true;
          clearTimeout(timer);
          settle();
          conns.add(sock);
        }
        // The pid is the one of the connection's first message: a connection speaks for one process.
        if (pid === undefined && typeof m.pid === 'number') pid = m.pid;
        else if (typeof m.pid === 'number' && m.pid !== pid) continue;
        onMessage(sock, m, pid, () => (detached = true));
      }
      if (buf.length > (authed ? MAX_LINE : MAX_AUTH_LINE)) {
        if (!authed) return refuse('first line too long');
        log(`message from pid ${pid ?? '?'} larger than ${MAX_LINE} bytes: connection closed`);
        sock.destroy();
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      settle();
      conns.delete(sock);
      if (authed && pid !== undefined && !detached) emit({ t: 'detach', pid, reason: 'lost' });
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
      if (pid !== undefined && typeof m.via === 'string' && /^[a-z-]{1,20}$/.test(m.via))
        via.set(pid, m.via);
      const header = {
        size: agentSource.length,
        name: '<scalpels-python-calls-agent>',
        sock: socketPath,
        // For the connection a forked child opens (it inherits the process's memory anyway).
        key,
        rules: cfg.rules,
        threads: cfg.threads,
        // A new interpreter (caught at exec) has not run its script yet: the agent also watches
        // for the functions the script defines.
        via: pid !== undefined ? via.get(pid) : undefined,
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
        ...(m.plan ? { techniques: describePlan(m.plan) } : {}),
        ...(began !== undefined ? { attachMs: Date.now() - began } : {}),
      });
      // What the report and status list: per process, instrumented functions or the global hook.
      emit({
        t: 'technique',
        pid,
        technique: m.hook === 'instrument' ? 'instrument' : 'hook',
        ...(m.plan ? { techniques: describePlan(m.plan) } : {}),
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

/** Which technique each rule uses and why, as one line (the attach event's `techniques`). */
function describePlan(plan: NonNullable<AgentMessage['plan']>): string {
  return plan
    .map(([rule, technique, why]) => {
      const parts = Object.entries(rule).map(([k, v]) => `${k}=${v.join(',')}`);
      return `${parts.join(' ') || 'every call'}: ${technique} (${why})`;
    })
    .join('; ');
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

/** An interpreter started as `python*` (directly, through a shebang or a venv link). */
function isPython(pid: number): boolean {
  const exe = readExe(pid);
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
  via.set(pid, 'pending-call'); // or `direct`, as the bootstrap says
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
  watcherStartedAt = ticksSinceBoot();
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
        if (line === WORKER_READY_LINE) resolve();
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

/** The target's processes now: roots (the same processes, by pid and start time) and their descendants. */
function targetTree(): number[] {
  return processTree(cfg.target.roots ?? cfg.target.pids).map((p) => p.pid);
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

/**
 * After the exec watcher has ended: a process of the target that is stopped, was started after
 * the watcher and was never resumed by us can only be one whose exec line was lost; resume it.
 */
function sweepStopped(): void {
  if (!watcherStartedAt) return;
  for (const pid of targetTree()) {
    if (resumed.has(pid)) continue;
    const st = readStat(pid);
    if (st?.state === 'T' && st.startTime >= watcherStartedAt) {
      try {
        process.kill(pid, 'SIGCONT');
        log(`resumed pid ${pid}, stopped at exec while the tracer was ending`);
      } catch {
        // gone
      }
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
  const pythons = targetTree().filter(hasPython);
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
  announceReady();
}

main().catch((e: Error) => fail(e.message));
