/**
 * No request makes the root agent run a program or read a file it should not (docs/security.md,
 * "Plugin options and files"). Each attack is what the issue reproduced on main: an unprivileged
 * user prepares a program or file, then a request over the agent's unix socket, and over TCP
 * with the token, names it in a tracer option. Each must be refused with one line naming the
 * option, and bpftrace on the agent's process tree must show the program never ran and the file
 * was never opened.
 */
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '@scalpels/core/engine';
import { trustedScratchDir } from '@scalpels/core/testing';
import {
  asNobody,
  attackerDir,
  canAttack,
  cli,
  listener,
  markerProgram,
  settle,
  watchTree,
  writeRootFile,
  type Watcher,
} from './attacker.js';

interface Agent {
  proc: ResultPromise;
  socket: string;
  tcp?: { port: number; token: string };
  watcher: Watcher;
  output: () => string;
}

const TOKEN = 'sec-plugins-test-token-0123456789abcdef';

async function startAgent(scratch: string, name: string, extra: string[]): Promise<Agent> {
  const socket = join(scratch, name, 'agent.sock');
  const tokenFile = join(scratch, `${name}.token`);
  const free = await listener('127.0.0.1');
  const tcpPort = free.port;
  await free.close();
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const proc = execa(
    process.execPath,
    [
      cli,
      'agent',
      '--socket',
      socket,
      '--store',
      `sqlite://${join(scratch, `${name}.db`)}`,
      '--listen',
      `127.0.0.1:${tcpPort}`,
      '--token-file',
      tokenFile,
      ...extra,
    ],
    { reject: false, all: true, env: { NO_COLOR: '1', PATH: process.env.PATH } },
  );
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    proc.all!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /tcp 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void proc.then(() => reject(new Error(`agent exited: ${out}`)));
  });
  const watcher = await watchTree(proc.pid!);
  return { proc, socket, tcp: { port, token: TOKEN }, watcher, output: () => out };
}

const transports = ['unix socket', 'tcp with token'] as const;

function client(agent: Agent, via: (typeof transports)[number]): AgentClient {
  return via === 'unix socket'
    ? new AgentClient(`unix://${agent.socket}`)
    : new AgentClient(`tcp://127.0.0.1:${agent.tcp!.port}`, agent.tcp!.token);
}

/** Sends a start and returns the refusal (a start that succeeds is a failed test). */
async function refusal(
  agent: Agent,
  via: (typeof transports)[number],
  tracer: string,
  options: Record<string, unknown>,
  target?: { pids: number[] },
): Promise<string> {
  const c = client(agent, via);
  try {
    const r = await c.call('start', { tracers: [{ name: tracer, options }], target });
    throw new Error(`started: ${JSON.stringify(r)}`);
  } catch (e) {
    return (e as Error).message;
  } finally {
    c.close();
  }
}

describe.runIf(canAttack)('tracer options over the agent, as an attacker', () => {
  let scratch: string;
  let atk: string;
  let rootOnly: string;
  let trusted: string;
  let plain: Agent;
  let scripts: Agent;
  const marker = (name: string): string => join(atk, `ran-${name}`);
  const files: Record<string, string> = {};

  beforeAll(async () => {
    scratch = mkdtempSync('/run/scalpels-sec-test-');
    atk = attackerDir();
    // Root's own secrets outside /etc/scalpels: root-owned, 0600, in root-owned folders.
    rootOnly = mkdtempSync('/root/scalpels-sec-');
    trusted = trustedScratchDir('sec-');
    files.rabbitmqctl = markerProgram(atk, 'rabbitmqctl', marker('rabbitmqctl'));
    files.python = markerProgram(atk, 'python3', marker('python'));
    const stp = join(atk, 'evil.stp');
    const w = asNobody(['sh', '-c', `printf 'probe begin { exit() }\\n' > ${stp}`]);
    if (w.status !== 0) throw new Error(w.stderr);
    files.stp = stp;
    const cnf = join(atk, 'my.cnf');
    asNobody(['sh', '-c', `umask 077; printf '[client]\\nuser=root\\n' > ${cnf}`]);
    files.nobodyCnf = cnf;
    files.rootSecret = writeRootFile(join(rootOnly, 'secret'), 'root-only-secret\n', 0o600);
    files.symlink = join(trusted, 'link.cnf');
    symlinkSync(files.rootSecret, files.symlink);
    files.worldReadable = writeRootFile(join(trusted, 'open.cnf'), '[client]\n', 0o644);
    files.brokerPassword = writeRootFile(join(trusted, 'rabbitmq.pw'), 'broker-secret\n', 0o600);
    files.sqlPassword = writeRootFile(
      join(trusted, 'sql.cnf'),
      '[client]\nuser=root\npassword=sql-secret\n',
      0o600,
    );
    plain = await startAgent(scratch, 'plain', []);
    scripts = await startAgent(scratch, 'scripts', ['--allow-scripts']);
  }, 240_000);

  afterAll(async () => {
    for (const a of [plain, scripts]) {
      await a?.watcher.stop();
      a?.proc.kill('SIGTERM');
      await a?.proc;
    }
    for (const d of [scratch, atk, rootOnly, trusted])
      if (d) rmSync(d, { recursive: true, force: true });
  }, 180_000);

  /** The refusal is one line naming the option; nothing forbidden was run or opened. */
  async function expectRefused(
    agent: Agent,
    message: string,
    pattern: RegExp,
    never: { ran?: string[]; opened?: string[]; marker?: string },
  ): Promise<void> {
    expect(message).toMatch(pattern);
    expect(message).not.toContain('\n');
    await settle(agent.watcher);
    const seen = agent.watcher.lines();
    for (const p of never.ran ?? []) expect(seen, `ran ${p}`).not.toContain(`exec ${p}`);
    for (const p of never.opened ?? []) expect(seen, `opened ${p}`).not.toContain(`open ${p}`);
    if (never.marker) expect(existsSync(never.marker), 'the marker program ran').toBe(false);
  }

  it('the watcher sees what the agent opens: a protected option file is read (control)', async () => {
    const good = writeRootFile(
      join(trusted, 'good.cnf'),
      '[client]\nuser=scalpels_no_such_user\npassword=x\nhost=127.0.0.1\nport=1\n',
      0o600,
    );
    const m = await refusal(plain, 'unix socket', 'sql-queries', { 'defaults-file': good });
    expect(m).toMatch(/^agent: sql-queries cannot run here: /);
    await settle(plain.watcher);
    expect(plain.watcher.lines()).toContain(`open ${good}`);
  });

  it('scalpels run (root, embedded) holds the same rules', async () => {
    const run = (args: string[]) =>
      execa(
        process.execPath,
        [cli, 'run', '--store', `sqlite://${join(scratch, 'run.db')}`, ...args, '--', 'true'],
        { reject: false, env: { NO_COLOR: '1', PATH: process.env.PATH } },
      );
    let r = await run(['-t', 'rpc-calls', '--set', `rpc-calls.rabbitmqctl=${files.rabbitmqctl}`]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toMatch(/rpc-calls: option "rabbitmqctl" is no longer accepted: /);
    expect(existsSync(marker('rabbitmqctl'))).toBe(false);
    r = await run(['-t', 'sql-queries', '--set', 'sql-queries.defaults-file=/etc/shadow']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toMatch(
      /sql-queries: option "defaults-file": "\/etc\/shadow" refused: /,
    );
    r = await run(['--allow-guru', '-t', 'systemtap', '--set', 'systemtap.guru=true']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toMatch(/--allow-guru needs --allow-scripts/);
  });

  for (const via of transports) {
    describe(`over the ${via}`, () => {
      it('rpc-calls.rabbitmqctl naming a program nobody wrote: refused, never run', async () => {
        const m = await refusal(plain, via, 'rpc-calls', { rabbitmqctl: files.rabbitmqctl });
        await expectRefused(
          plain,
          m,
          /^agent: rpc-calls: option "rabbitmqctl" is no longer accepted: an option never names a program: .*"rpc-calls" section of \/etc\/scalpels\/config\.json$/,
          {
            ran: [files.rabbitmqctl!],
            opened: [files.rabbitmqctl!],
            marker: marker('rabbitmqctl'),
          },
        );
      });

      it('python-calls.python naming a shebang script nobody wrote: refused, never run', async () => {
        const m = await refusal(
          plain,
          via,
          'python-calls',
          { python: files.python },
          { pids: [process.pid] },
        );
        await expectRefused(
          plain,
          m,
          /^agent: python-calls: option "python" is no longer accepted: an option never names a program: .*\/etc\/scalpels\/config\.json.*$/,
          { ran: [files.python!], opened: [files.python!], marker: marker('python') },
        );
      });

      it('sql-queries.defaults-file=/etc/shadow: refused, never opened', async () => {
        const m = await refusal(plain, via, 'sql-queries', { 'defaults-file': '/etc/shadow' });
        await expectRefused(
          plain,
          m,
          /^agent: sql-queries: option "defaults-file": "\/etc\/shadow" refused: as root, credential files are read only from \/etc\/scalpels\/ or a folder listed in "trustedDirs" of \/etc\/scalpels\/config\.json$/,
          { opened: ['/etc/shadow'] },
        );
      });

      it('sql-queries.defaults-file of root-owned 0600 file outside /etc/scalpels, of a file nobody owns, through a symlink, or readable by all: refused, never opened', async () => {
        const cases: [string, RegExp][] = [
          [
            files.rootSecret!,
            /refused: as root, credential files are read only from \/etc\/scalpels\//,
          ],
          [files.nobodyCnf!, /refused: is owned by uid 65534, not root$/],
          [files.symlink!, /refused: is a symbolic link \(name the file itself\)$/],
          [files.worldReadable!, /refused: has mode 0644: a credential file must be 0600 or 0640$/],
        ];
        for (const [file, why] of cases) {
          const m = await refusal(plain, via, 'sql-queries', { 'defaults-file': file });
          expect(m).toMatch(/^agent: sql-queries: option "defaults-file": /);
          await expectRefused(plain, m, why, { opened: [file, files.rootSecret!] });
        }
      });

      it('rpc-calls.password-file plus management-url: no file leaves, no URL is called', async () => {
        const local = await listener('127.0.0.1');
        const other = await listener('127.0.0.2');
        try {
          // Root's private file sent to a local URL: refused for the file.
          let m = await refusal(plain, via, 'rpc-calls', {
            'password-file': files.rootSecret,
            'management-url': `http://127.0.0.1:${local.port}/`,
          });
          await expectRefused(
            plain,
            m,
            /^agent: rpc-calls: option "password-file": ".*" refused: as root, credential files are read only from \/etc\/scalpels\//,
            { opened: [files.rootSecret!] },
          );
          // A management URL that is not the broker host: refused for the URL.
          m = await refusal(plain, via, 'rpc-calls', {
            'management-url': `http://127.0.0.2:${other.port}/`,
          });
          await expectRefused(
            plain,
            m,
            /^agent: rpc-calls: option "management-url" refused: it names 127\.0\.0\.2, not the broker host 127\.0\.0\.1 \(another URL is set as "management-url" in the "rpc-calls" section of \/etc\/scalpels\/config\.json\)$/,
            {},
          );
          // A protected password file sent to a broker of the request's choice: refused.
          m = await refusal(plain, via, 'rpc-calls', {
            'password-file': files.brokerPassword,
            host: '127.0.0.2',
            port: other.port,
          });
          await expectRefused(
            plain,
            m,
            /^agent: rpc-calls: option "host" refused: the broker password goes only to this host or to a broker listed in "brokers" of the "rpc-calls" section of \/etc\/scalpels\/config\.json$/,
            {},
          );
          expect(local.hits()).toBe(0);
          expect(other.hits()).toBe(0);
        } finally {
          await local.close();
          await other.close();
        }
      });

      it('sql-queries with a protected password pointed at a server of the request: no login leaves', async () => {
        const other = await listener('127.0.0.2');
        try {
          const m = await refusal(plain, via, 'sql-queries', {
            'defaults-file': files.sqlPassword,
            host: '127.0.0.2',
            port: other.port,
          });
          await expectRefused(
            plain,
            m,
            /^agent: sql-queries cannot run here: sql-queries: option "host" refused: a password goes only to this host's server or to one listed in "servers" of the "sql-queries" section of \/etc\/scalpels\/config\.json/,
            {},
          );
          const viaSocket = await refusal(plain, via, 'sql-queries', {
            'defaults-file': files.sqlPassword,
            socket: join(atk, 'mysql.sock'),
          });
          expect(viaSocket).toMatch(
            /option "socket" refused: a password goes only to a known server socket/,
          );
          expect(other.hits()).toBe(0);
        } finally {
          await other.close();
        }
      });

      it('systemtap.script of a .stp file without --allow-scripts: refused, stap never run', async () => {
        const m = await refusal(plain, via, 'systemtap', { script: files.stp });
        await expectRefused(
          plain,
          m,
          /^agent: systemtap: option "script": ".*evil\.stp" refused: user scripts need the agent \(or scalpels run\) started with --allow-scripts$/,
          { opened: [files.stp!] },
        );
        expect(plain.watcher.lines().filter((l) => /^exec \S*\/stap$/.test(l))).toEqual([]);
      });

      it('systemtap guru mode without --allow-guru: refused', async () => {
        const m = await refusal(plain, via, 'systemtap', { guru: true });
        await expectRefused(
          plain,
          m,
          /^agent: systemtap: option "guru" refused: guru mode needs the agent \(or scalpels run\) started with --allow-guru$/,
          {},
        );
        expect(plain.watcher.lines().filter((l) => /^exec \S*\/stap$/.test(l))).toEqual([]);
      });

      it('with --allow-scripts, a script nobody wrote (in the shared /tmp) is still refused', async () => {
        const m = await refusal(scripts, via, 'systemtap', { script: files.stp });
        await expectRefused(
          scripts,
          m,
          /^agent: systemtap: option "script": ".*evil\.stp" refused: folder \/tmp\/scalpels-attacker-\w+ is owned by uid 65534, not root$/,
          { opened: [files.stp!] },
        );
        const guru = await refusal(scripts, via, 'systemtap', {
          guru: true,
          flags: `-I ${atk}`,
        });
        expect(guru).toMatch(/^agent: systemtap: option "guru" refused: .*--allow-guru$/);
        expect(scripts.watcher.lines().filter((l) => /^exec \S*\/stap$/.test(l))).toEqual([]);
      });
    });
  }
});
