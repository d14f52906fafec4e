import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ATTACKER,
  asNobody,
  cli,
  hasRedisServer,
  hasSetpriv,
  makeKeyFile,
  scratchDir,
  startAgent,
} from './helpers.js';
import { privateRedisServers } from '../private-redis.js';
import { listener } from './attacker.js';

/**
 * Promise: an unprivileged local user cannot read stores, inject records, or redirect root's
 * writes. The attacker (nobody, through setpriv) prepares folders and symlinks where Scalpels
 * used to write as root, in a shared sticky folder like /tmp; root then works as usual.
 */
const procs: ResultPromise[] = [];
const startRedis = privateRedisServers();
const scratch = scratchDir('local');
// A shared sticky folder standing for /tmp (TMPDIR points there for the runs below).
const shared = join(scratch, 'shared-tmp');
mkdirSync(shared);
chmodSync(shared, 0o1777);
const testDir = fileURLToPath(new URL('..', import.meta.url));

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.allSettled(procs);
  rmSync(scratch, { recursive: true, force: true });
});

/** Everything under `dir` that root made (the attacker's own files are nobody's). */
function rootOwned(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const st = lstatSync(join(dir, name));
    if (st.uid === 0) out.push(name);
  }
  return out;
}

const scalpels = (args: string[], env: Record<string, string> = {}) =>
  execa(process.execPath, [cli, ...args], {
    reject: false,
    env: { NO_COLOR: '1', TMPDIR: shared, ...env },
  });

/** Buffers batches for a Redis that is not there, until they spill to disk; in a child process. */
const spillRun = (query: string, env: Record<string, string> = {}) =>
  execa(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { RedisStore } from '@scalpels/core/engine';
       const store = new RedisStore('redis://127.0.0.1:1/0?buffer=300&prefix=sec-spill:${query}');
       const schema = { series: { tick: { kind: 'counter', unit: 'count', description: 'tick' } } };
       const sink = store.recordSink({ id: 1, taskId: 'x' }, schema);
       for (let i = 0; i < 40; i++) await sink.write([{ kind: 'sample', series: 'tick', value: 1, ts: i }]);
       process.stdout.write(JSON.stringify({ pid: process.pid, dropped: sink.dropped() }));
       store.redis.disconnect();
       process.exit(0);`,
    ],
    { reject: false, cwd: testDir, env: { TMPDIR: shared, ...env } },
  );

/**
 * A fake agent answering every request with the next of `stores` as its store (the last one
 * repeats), on a unix socket path or a TCP port; as nobody when `asAttacker`.
 */
async function impostorAgent(
  where: string,
  stores: readonly string[],
  asAttacker: boolean,
): Promise<{ stop: () => Promise<void> }> {
  const listen = /^\d+$/.test(where) ? `${where}, '127.0.0.1'` : JSON.stringify(where);
  const script = `
    const stores = ${JSON.stringify(stores)};
    let n = 0;
    require('net').createServer((c) => {
      let buf = '';
      c.on('data', (d) => {
        buf += d;
        for (let i; (i = buf.indexOf('\\n')) >= 0; buf = buf.slice(i + 1)) {
          const req = JSON.parse(buf.slice(0, i));
          const store = stores[Math.min(n++, stores.length - 1)];
          c.write(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { node: 'x', pid: 1, version: '0', store } }) + '\\n');
        }
      });
    }).listen(${listen}, () => console.log('listening'));`;
  const argv = [process.execPath, '-e', script];
  const proc = asAttacker
    ? execa('setpriv', [...ATTACKER, ...argv], { reject: false, env: {} })
    : execa(argv[0]!, argv.slice(1), { reject: false });
  procs.push(proc);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('listening')) resolve();
    });
    void proc.then((r) => reject(new Error(`fake agent exited: ${r.stderr}`)));
  });
  return {
    stop: async () => {
      proc.kill('SIGKILL');
      await proc;
    },
  };
}

describe.runIf(hasSetpriv)('an unprivileged local user', () => {
  it('cannot make root spill into a folder it prepared, nor through a symlink it planted', async () => {
    // Where spill files used to go: $TMPDIR/scalpels-spill, used as is when it existed.
    const old = join(shared, 'scalpels-spill');
    expect((await asNobody('mkdir', ['-m', '777', old])).exitCode).toBe(0);
    const target = join(scratch, 'root-file');
    writeFileSync(target, 'root data\n', { mode: 0o600 });
    expect((await asNobody('ln', ['-s', target, join(old, 'planted.jsonl')])).exitCode).toBe(0);

    const r = await spillRun('');
    expect(r.exitCode, r.stderr).toBe(0);
    const { pid, dropped } = JSON.parse(r.stdout) as { pid: number; dropped: number };
    expect(dropped).toBe(0);
    // Nothing of root's in the attacker's folder, the planted link's target untouched.
    expect(rootOwned(old)).toEqual([]);
    expect(statSync(target).size).toBe('root data\n'.length);
    // The spill went to root's own folder: 0700, the file 0600, and nobody cannot even look.
    const dir = '/run/scalpels/spill';
    const files = readdirSync(dir).filter((f) => f.startsWith(`spill-${pid}-`));
    expect(files.length).toBeGreaterThan(0);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    expect((await asNobody('ls', [dir])).exitCode).not.toBe(0);
    expect((await asNobody('cat', [join(dir, files[0]!)])).exitCode).not.toBe(0);
    for (const f of files) rmSync(join(dir, f), { force: true });
  });

  it('cannot have root use a spill folder or runtime folder it owns or symlinked', async () => {
    const theirs = join(shared, 'theirs');
    expect((await asNobody('mkdir', ['-m', '777', theirs])).exitCode).toBe(0);
    const r = await spillRun(`&spilldir=${theirs}`);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { dropped: number }).dropped).toBeGreaterThan(0);
    expect(readdirSync(theirs)).toEqual([]);

    // A runtime folder that is a symlink to a folder of root's: refused, nothing written there.
    const rootDir = join(scratch, 'root-dir');
    mkdirSync(rootDir, { mode: 0o700 });
    const link = join(shared, 'runtime-link');
    expect((await asNobody('ln', ['-s', rootDir, link])).exitCode).toBe(0);
    const run = await scalpels(
      ['run', '-t', 'proc', '--store', `sqlite://${join(scratch, 'rt.db')}`, '--', 'true'],
      { SCALPELS_RUNTIME_DIR: link },
    );
    expect(run.exitCode).not.toBe(0);
    expect(run.stderr).toMatch(/refusing .*runtime-link: it is a symbolic link/);
    expect(readdirSync(rootDir)).toEqual([]);
    const owned = await scalpels(
      ['run', '-t', 'proc', '--store', `sqlite://${join(scratch, 'rt.db')}`, '--', 'true'],
      { SCALPELS_RUNTIME_DIR: theirs },
    );
    expect(owned.exitCode).not.toBe(0);
    expect(owned.stderr).toMatch(/refusing .*theirs: owned by uid 65534/);
    expect(readdirSync(theirs)).toEqual([]);
  });

  it('finds nothing of a traced run in the shared /tmp, and cannot read its store', async () => {
    const before = new Set(readdirSync(shared));
    const storeDir = join(scratch, 'open');
    mkdirSync(storeDir, { mode: 0o755 }); // a folder others may list: the file itself is private
    const store = join(storeDir, 'store.db');
    const run = await scalpels([
      'run',
      '-t',
      'proc',
      '--set',
      'proc.interval=100ms',
      '--store',
      `sqlite://${store}`,
      '--',
      'sleep',
      '0.5',
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(readdirSync(shared).filter((f) => !before.has(f))).toEqual([]);
    expect(statSync(store).mode & 0o777).toBe(0o600);
    const read = await asNobody('cat', [store]);
    expect(read.exitCode).not.toBe(0);
    expect(read.stderr).toMatch(/Permission denied/);
    // A store in a new folder: the folder is made 0700.
    const deep = join(storeDir, 'new', 'store.db');
    const run2 = await scalpels(['run', '-t', 'proc', '--store', `sqlite://${deep}`, '--', 'true']);
    expect(run2.exitCode, run2.stderr).toBe(0);
    expect(statSync(join(storeDir, 'new')).mode & 0o777).toBe(0o700);
    // Injecting records: the store cannot be opened for writing either.
    const write = await asNobody('sh', ['-c', `echo junk >> ${store}`]);
    expect(write.exitCode).not.toBe(0);
  });

  it("cannot talk to root's agent on its unix socket, nor make it listen in a folder it owns", async () => {
    const sock = join(scratch, 'agent.sock');
    const agent = await startAgent(procs, [
      '--socket',
      sock,
      '--store',
      `sqlite://${join(scratch, 'agent.db')}`,
    ]);
    try {
      expect(statSync(sock).mode & 0o777).toBe(0o600);
      const marker = join(shared, 'agent-marker');
      const attempt = await asNobody(process.execPath, [
        '-e',
        `const s = require('net').connect(${JSON.stringify(sock)});
         s.on('connect', () => { s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'start',
           params: { tracers: [{ name: 'python-calls', options: { python: ${JSON.stringify(marker)} } }] } }) + '\\n');
           s.on('data', (d) => { process.stdout.write(String(d)); process.exit(0); }); });
         s.on('error', (e) => { process.stderr.write(e.code); process.exit(3); });`,
      ]);
      expect(attempt.exitCode).toBe(3);
      expect(attempt.stderr).toBe('EACCES');
      expect(existsSync(marker)).toBe(false);
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
    const theirs = join(shared, 'sockdir');
    expect((await asNobody('mkdir', ['-m', '777', theirs])).exitCode).toBe(0);
    const refused = await scalpels(['agent', '--socket', join(theirs, 'agent.sock')]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/refusing socket folder .*sockdir: owned by uid 65534/);
    expect(readdirSync(theirs)).toEqual([]);
  });
  it('cannot steer root to a store through an impostor agent, on a socket or a TCP port', async () => {
    const dir = join(shared, 'impostor');
    expect((await asNobody('mkdir', ['-m', '755', dir])).exitCode).toBe(0);
    // A socket of nobody's, where root may be told to look (`--agent unix://...`).
    const sock = join(dir, 'agent.sock');
    const onSocket = await impostorAgent(sock, [`sqlite://${join(dir, 'planted.db')}`], true);
    try {
      const r = await scalpels(['report', '--last', '--agent', `unix://${sock}`]);
      expect(r.exitCode).toBe(1);
      expect(r.stderr.trim()).toMatch(
        /^scalpels: the agent socket \S+agent\.sock is owned by uid 65534, not root or this user: give --store$/,
      );
    } finally {
      await onSocket.stop();
    }
    // A TCP port (the real agent is not running): the token authenticates root to the agent,
    // not the agent to root. A SQLite path, and a Redis store whose password file is /etc/shadow
    // (root would read it and send it to the attacker's Redis).
    const redis = await listener('127.0.0.1');
    const tokenFile = join(scratch, 'impostor-token');
    writeFileSync(tokenFile, 'a-long-enough-secret-token-5678\n', { mode: 0o600 });
    const port = 20000 + Math.floor(Math.random() * 20000);
    const onTcp = await impostorAgent(
      String(port),
      [
        `sqlite://${join(dir, 'planted.db')}`,
        `redis://127.0.0.1:${redis.port}/0?passwordfile=/etc/shadow`,
      ],
      false,
    );
    try {
      const agent = ['--agent', `tcp://127.0.0.1:${port}`, '--token-file', tokenFile];
      const first = await scalpels(['report', '--last', ...agent]);
      expect(first.exitCode).toBe(1);
      expect(first.stderr.trim()).toMatch(
        /keeps its tasks in sqlite:\/\/\S+planted\.db on its own node: read them there, or give --store$/,
      );
      const second = await scalpels(['tasks', ...agent]);
      expect(second.exitCode).toBe(1);
      expect(second.stderr.trim()).toMatch(
        /uses a Redis store that names files \(redis:\/\/127\.0\.0\.1:\d+\/0\): give --store$/,
      );
      expect(redis.hits()).toBe(0);
    } finally {
      await onTcp.stop();
      await redis.close();
    }
    expect(existsSync(join(dir, 'planted.db'))).toBe(false);
    expect(rootOwned(dir)).toEqual([]);
  });

  it("follows a root agent's SQLite store only when it exists and is root's or the caller's", async () => {
    // Root's own socket (an agent answering oddly): the file checks still hold.
    const dir = join(shared, 'odd-agent');
    expect((await asNobody('mkdir', ['-m', '755', dir])).exitCode).toBe(0);
    const theirs = join(dir, 'theirs.db');
    expect((await asNobody('touch', [theirs])).exitCode).toBe(0);
    const sock = join(scratch, 'odd-agent.sock');
    const odd = await impostorAgent(
      sock,
      [`sqlite://${join(dir, 'planted.db')}`, `sqlite://${theirs}`],
      false,
    );
    try {
      const first = await scalpels(['report', '--last', '--agent', `unix://${sock}`]);
      expect(first.exitCode).toBe(1);
      expect(first.stderr.trim()).toMatch(
        /names sqlite:\/\/\S+planted\.db, which does not exist here$/,
      );
      const second = await scalpels(['tasks', '--agent', `unix://${sock}`]);
      expect(second.exitCode).toBe(1);
      expect(second.stderr.trim()).toMatch(
        /names sqlite:\/\/\S+theirs\.db, which is not a store file of root or of this user; give --store$/,
      );
    } finally {
      await odd.stop();
    }
    expect(existsSync(join(dir, 'planted.db'))).toBe(false);
    expect(rootOwned(dir)).toEqual([]);
  });
});

describe.runIf(hasSetpriv && hasRedisServer)('the Redis password', () => {
  it('comes from a file (never in /proc/PID/cmdline); on the command line it draws a warning', async () => {
    const password = `pw-${Date.now()}-secret`;
    const redis = await startRedis({ password });
    const keyFile = makeKeyFile(scratch, 'pw-cluster.key');
    const pwFile = join(scratch, 'redis.pw');
    writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    const url = `${redis.url}?passwordfile=${pwFile}`;
    const agent = await startAgent(
      procs,
      [
        '--redis',
        url,
        '--node',
        'pw-node',
        '--socket',
        join(scratch, 'pw.sock'),
        '--cluster-key-file',
        keyFile,
      ],
      {},
      'cluster member',
    );
    try {
      const cmdline = await asNobody('cat', [`/proc/${agent.proc.pid}/cmdline`]);
      expect(cmdline.exitCode).toBe(0);
      expect(cmdline.stdout).toContain('passwordfile');
      expect(cmdline.stdout).not.toContain(password);
      const nodes = await scalpels([
        'nodes',
        '--json',
        '--redis',
        url,
        '--cluster-key-file',
        keyFile,
      ]);
      expect(nodes.exitCode, nodes.stderr).toBe(0);
      expect(nodes.stderr).not.toMatch(/warning/);
      // From the environment, too.
      const env = await scalpels(
        ['nodes', '--json', '--redis', redis.url, '--cluster-key-file', keyFile],
        {
          SCALPELS_REDIS_PASSWORD_FILE: pwFile,
        },
      );
      expect(env.exitCode, env.stderr).toBe(0);
      // Inline: works, and says that every local user can see it.
      const inline = await scalpels([
        'nodes',
        '--json',
        '--redis',
        `redis://:${password}@127.0.0.1:${redis.port}/0`,
        '--cluster-key-file',
        keyFile,
      ]);
      expect(inline.exitCode, inline.stderr).toBe(0);
      expect(inline.stderr).toMatch(/warning: a Redis password on the command line is visible/);
      // A password file others can read, or a symlink to one, is refused.
      const loose = join(scratch, 'loose.pw');
      writeFileSync(loose, password, { mode: 0o644 });
      const bad = await scalpels([
        'nodes',
        '--redis',
        `${redis.url}?passwordfile=${loose}`,
        '--cluster-key-file',
        keyFile,
      ]);
      expect(bad.exitCode).toBe(1);
      expect(bad.stderr).toMatch(/has mode 644/);
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.proc;
    }
  });
});
