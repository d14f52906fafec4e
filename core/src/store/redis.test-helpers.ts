// Redis for tests (tests only: left out of the build, and not part of the testing kit, since no
// plugin needs a store of its own): the machine's shared Redis under a key prefix of the test
// file's own, and private redis-server instances a test can kill and restart to make its store
// die. Used by the core's tests and by test/ (which may import the core; the core never imports
// test/).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { capability, waitFor } from '../testing/index.js';
import { connectRedis } from './redis.js';

/** The machine's shared Redis (scripts/setup.sh starts it). */
export const SHARED_REDIS_URL = 'redis://127.0.0.1:6379/0';

/**
 * Whether a Redis on 127.0.0.1:`port` answers: PONG to PING (after AUTH with `password`), and,
 * with `pid`, its INFO names that process (not another server that took the port).
 */
function redisAnswers(port: number, check: { password?: string; pid?: number } = {}) {
  return new Promise<boolean>((resolve) => {
    let reply = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    const s = createConnection({ host: '127.0.0.1', port }, () => {
      const auth = check.password === undefined ? '' : `AUTH ${check.password}\r\n`;
      s.write(`${auth}PING\r\n${check.pid === undefined ? '' : 'INFO server\r\n'}`);
    });
    s.setTimeout(2000, () => done(false));
    s.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
      if (/^-/m.test(reply)) return done(false); // an error reply: not ready, or not ours
      if (!reply.includes('+PONG\r\n')) return;
      if (check.pid === undefined) return done(true);
      const pid = /^process_id:(\d+)\r$/m.exec(reply);
      if (pid) done(Number(pid[1]) === check.pid);
    });
    s.once('error', () => done(false));
    s.once('close', () => resolve(false));
  });
}

export interface SharedRedis {
  /** False when the shared Redis does not answer (a printed skip; under CI=true it throws). */
  available: boolean;
  /** This test file's key prefix; every key under it is deleted after the file's tests. */
  prefix: string;
  /** A store URL on the shared Redis under a fresh sub-prefix (`<prefix><n>:`) of its own. */
  url(): string;
}

/**
 * The machine's shared Redis (127.0.0.1:6379) under a random key prefix of this test file's own.
 * Call it at the top of a test file (`await sharedRedis('fe')`): it registers the `afterAll` that
 * deletes every key under the prefix. No Redis there is a missing capability.
 */
export async function sharedRedis(tag: string): Promise<SharedRedis> {
  const prefix = `scalpels-test-${tag}-${randomBytes(4).toString('hex')}:`;
  const shared: SharedRedis = { available: false, prefix, url: () => '' };
  afterAll(async () => {
    if (!shared.available) return;
    const { redis } = connectRedis(SHARED_REDIS_URL);
    await redis.connect();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });
  shared.available = capability(
    'redis',
    await redisAnswers(6379),
    'no Redis on 127.0.0.1:6379 (scripts/setup.sh starts it)',
  );
  let seq = 0;
  shared.url = () => `${SHARED_REDIS_URL}?prefix=${prefix}${++seq}:`;
  return shared;
}

const serverBinary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) =>
  existsSync(p),
);

/**
 * Gate for tests that start a private redis-server: true when it is installed; otherwise a
 * printed skip, or under CI=true a failure (see `capability`).
 */
export function hasRedisServer(): boolean {
  return capability(
    'redis-server',
    serverBinary !== undefined,
    'redis-server is not installed (/usr/bin or /usr/local/bin)',
  );
}

export interface PrivateRedisOptions {
  /**
   * Keep the data across a stop and restart: an append-only file in its private folder, synced on
   * every write (a SIGKILL loses nothing acknowledged). Default: no persistence at all.
   */
  persist?: boolean;
  /** Require this password (`--requirepass`); the readiness check authenticates with it. */
  password?: string;
}

export interface PrivateRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>/0` */
  readonly url: string;
  /** Its private folder (0700): the server's working directory, removed after the file's tests. */
  readonly dir: string;
  /** The running server's pid; undefined while it is stopped. */
  readonly pid: number | undefined;
  /** Sends `signal` to the server and waits until it has exited. */
  stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /** Starts the stopped server again, on the same port and folder; waits until it answers. */
  restart(): Promise<void>;
}

/** How long a private redis-server may take to answer PING, or to exit once signalled. */
const SERVER_TIMEOUT_MS = 30_000;

/** A free loopback port (closed again at once; the server started on it says if it was taken). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

/** Servers still running when the worker process exits without having run afterAll. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Starts private redis-server instances for one test file: each on a free loopback port, in a
 * private temporary folder (0700), no persistence unless asked, started when it answers PING.
 * Call it at collection time (top level or a describe body): it registers the `afterAll` that
 * kills (SIGKILL) every server it started, even when a test failed, and removes their folders.
 * Gate the tests on `hasRedisServer()`.
 */
export function privateRedisServers(): (options?: PrivateRedisOptions) => Promise<PrivateRedis> {
  const started: { server: () => ChildProcess | undefined; dir: string }[] = [];
  afterAll(async () => {
    for (const { server, dir } of started) {
      const c = server();
      if (c?.pid !== undefined && !exited(c)) {
        c.kill('SIGKILL');
        await new Promise((r) => c.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  return async (options = {}) => {
    if (serverBinary === undefined) throw new Error('redis-server is not installed');
    const binary = serverBinary;
    const dir = mkdtempSync(join(tmpdir(), 'scalpels-redis-'));
    chmodSync(dir, 0o700);
    let child: ChildProcess | undefined;
    started.push({ server: () => child, dir });

    /** Starts the server on `port`; rejects, with its output, when it exits or stays silent. */
    const launch = async (port: number): Promise<void> => {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', ''];
      args.push('--appendonly', options.persist ? 'yes' : 'no');
      if (options.persist) args.push('--appendfsync', 'always');
      if (options.password !== undefined) args.push('--requirepass', options.password);
      const c = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      live.add(c);
      c.once('exit', () => live.delete(c));
      const closed = new Promise((r) => c.once('close', r));
      let output = '';
      const keep = (d: Buffer | string): void => {
        output = (output + d.toString()).slice(-4000);
      };
      c.stdout!.on('data', keep);
      c.stderr!.on('data', keep);
      let spawnError: Error | undefined;
      c.once('error', (e) => (spawnError = e));
      const where = `the private redis-server on 127.0.0.1:${port}`;
      const gone = (): string | undefined =>
        spawnError
          ? `${where} did not start: ${spawnError.message}`
          : exited(c)
            ? `${where} exited (${c.exitCode ?? c.signalCode}) before answering PING`
            : undefined;
      try {
        await waitFor(
          `${where} to answer PING`,
          async () => {
            if (gone()) throw new Error(gone());
            return redisAnswers(port, { password: options.password, pid: c.pid });
          },
          SERVER_TIMEOUT_MS,
        );
      } catch (e) {
        c.kill('SIGKILL');
        // What it said before it exited (its pipes close just after), bounded.
        if (gone()) await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
        throw new Error(`${gone() ?? (e as Error).message}; its output:\n${output}`);
      }
    };

    // A port found free may be taken before the server binds it: then another one.
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await launch(port);
        break;
      } catch (e) {
        if (attempt === 3 || !exited(child!) || !/in use/i.test((e as Error).message)) throw e;
      }
    }

    return {
      port,
      url: `redis://127.0.0.1:${port}/0`,
      dir,
      get pid() {
        return child && !exited(child) ? child.pid : undefined;
      },
      async stop(signal) {
        const c = child;
        if (!c || exited(c)) return;
        c.kill(signal);
        await waitFor(
          `redis-server ${c.pid} to exit on ${signal}`,
          () => exited(c),
          SERVER_TIMEOUT_MS,
        );
      },
      async restart() {
        if (child && !exited(child)) throw new Error(`redis-server ${child.pid} is still running`);
        await launch(port);
      },
    };
  };
}
