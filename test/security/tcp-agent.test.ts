import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { portUp, rssOf, scratchDir, startAgent, waitFor, type RunningAgent } from './helpers.js';

/**
 * Promise: a TCP client without the token gets nothing but one refusal and a closed connection;
 * a flood neither grows the agent nor its log; a token holder is bounded too (connections, idle
 * time, answers it does not read); nothing a client sends can forge a log line.
 */
const procs: ResultPromise[] = [];
const scratch = scratchDir('tcp');
const TOKEN = 'a-long-enough-secret-token-for-tcp-tests';
const tokenFile = join(scratch, 'token');
writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.allSettled(procs);
  rmSync(scratch, { recursive: true, force: true });
});

/** A raw connection: what it received, whether the agent closed it. */
function connect(port: number, from?: string) {
  // Refusals are logged once per source address: tests that look at the log come from their own.
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
  const state = { data: '', closed: false, socket: s };
  s.on('data', (c) => (state.data += c.toString()));
  s.on('close', () => (state.closed = true));
  s.on('error', () => undefined);
  return new Promise<typeof state>((resolve, reject) => {
    s.once('connect', () => resolve(state));
    s.once('error', reject);
  });
}

const line = (o: object) => `${JSON.stringify(o)}\n`;

describe('TCP agent', () => {
  let agent: RunningAgent;
  let port = 0;
  const logLines = () => agent.output().split('\n').length;

  beforeAll(async () => {
    for (;;) {
      port = 20000 + Math.floor(Math.random() * 20000);
      if (!(await portUp(port))) break;
    }
    agent = await startAgent(procs, [
      '--socket',
      join(scratch, 'agent.sock'),
      '--store',
      `sqlite://${join(scratch, 'store.db')}`,
      '--listen',
      `127.0.0.1:${port}`,
      '--token-file',
      tokenFile,
    ]);
  });
  afterAll(async () => {
    agent?.proc.kill('SIGTERM');
    await agent?.proc;
  });

  it('takes the token once per connection and closes a connection with a bad one', async () => {
    const good = await connect(port);
    good.socket.write(line({ jsonrpc: '2.0', id: 1, method: 'ping', token: TOKEN }));
    good.socket.write(line({ jsonrpc: '2.0', id: 2, method: 'ping' }));
    await waitFor('two answers', () => good.data.split('\n').length > 2);
    const answers = good.data
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: number; result?: unknown });
    expect(answers.map((a) => [a.id, Boolean(a.result)]).sort()).toEqual([
      [1, true],
      [2, true],
    ]);
    good.socket.destroy();

    const bad = await connect(port);
    bad.socket.write(line({ jsonrpc: '2.0', id: 1, method: 'ping', token: `${TOKEN}x` }));
    bad.socket.write(line({ jsonrpc: '2.0', id: 2, method: 'ping', token: TOKEN }));
    await waitFor('the agent to close the connection', () => bad.closed);
    const got = bad.data.trim().split('\n');
    expect(got).toHaveLength(1); // the refusal, and nothing for the line after it
    expect(JSON.parse(got[0]!)).toMatchObject({ id: 1, error: { code: 2 } });
  });

  it('a method name with a newline or a terminal escape forges no log line', async () => {
    const forged = 'ping\nscalpels agent: FORGED-LINE\u001b[2J';
    // Without the token: the refusal is logged, escaped.
    const anon = await connect(port, '127.0.0.2');
    anon.socket.write(line({ jsonrpc: '2.0', id: 1, method: forged }));
    await waitFor('refusal', () => anon.closed);
    // With the token: an unknown method, answered, and escaped wherever it is shown.
    const authed = await connect(port);
    authed.socket.write(line({ jsonrpc: '2.0', id: 1, method: 'ping', token: TOKEN }));
    authed.socket.write(line({ jsonrpc: '2.0', id: 2, method: forged }));
    await waitFor('two answers', () => authed.data.split('\n').length > 2);
    authed.socket.destroy();
    const answer = authed.data
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: number; error?: { message: string } })
      .find((a) => a.id === 2)!;
    expect(answer.error?.message).toContain(
      'unknown method "ping\\nscalpels agent: FORGED-LINE\\x1b[2J"',
    );
    const out = agent.output();
    expect(out).not.toMatch(/^scalpels agent: FORGED-LINE/m);
    expect(out).not.toContain('\u001b');
    expect(out).toContain('ping\\nscalpels agent: FORGED-LINE\\x1b[2J');
  });

  it('one unauthenticated connection flooding the agent is cut off: memory and log stay flat', async () => {
    const rssBefore = rssOf(agent.proc.pid!);
    const linesBefore = logLines();
    const flood = await connect(port, '127.0.0.3');
    const req = line({ jsonrpc: '2.0', id: 1, method: 'ping\nforged' });
    const chunk = Buffer.from(req.repeat(Math.ceil((1 << 20) / req.length)));
    let sent = 0;
    // At most 200 MiB or until the agent closes the connection (it should at the first line).
    while (!flood.closed && sent < 200 << 20) {
      const ok = flood.socket.write(chunk);
      sent += chunk.length;
      if (!ok)
        await new Promise<void>((resolve) => {
          flood.socket.once('drain', resolve);
          flood.socket.once('close', resolve);
        });
    }
    await waitFor('the agent to close the flood', () => flood.closed);
    expect(sent).toBeLessThan(200 << 20);
    // The agent answered at most once and logged the source once.
    expect(flood.data.trim().split('\n').length).toBeLessThanOrEqual(1);
    expect(logLines() - linesBefore).toBe(1);
    expect(agent.output()).toMatch(
      /refused ping\\nforged from 127\.0\.0\.3:\d+: bad or missing token/,
    );
    const grown = rssOf(agent.proc.pid!) - rssBefore;
    console.info(
      `flood: ${sent >> 20} MiB sent before the close, agent RSS ${grown >> 20} MiB more`,
    );
    expect(grown).toBeLessThan(40 << 20);
  });

  it('a token holder that never reads its answers does not make the agent queue them without bound', async () => {
    const rssBefore = rssOf(agent.proc.pid!);
    const c = await connect(port);
    c.socket.pause(); // never read: answers pile up in the kernel, then at the agent
    const requests = 300_000;
    c.socket.write(line({ jsonrpc: '2.0', id: 0, method: 'ping', token: TOKEN }));
    const body = Array.from({ length: requests }, (_, i) =>
      line({ jsonrpc: '2.0', id: i + 1, method: 'ping' }),
    ).join('');
    let wrote = false;
    c.socket.write(body, () => (wrote = true));
    // Settled when our write completed, or when the agent has stopped reading (what we still
    // have to send no longer shrinks).
    let last = -1;
    let still = 0;
    await waitFor(
      'the agent to read everything or stop reading',
      () => {
        const left = c.socket.writableLength;
        still = left === last ? still + 1 : 0;
        last = left;
        return wrote || still >= 20;
      },
      120_000,
    );
    // Without back-pressure the agent held every answer (about 50 MB of JSON) in memory.
    const grown = rssOf(agent.proc.pid!) - rssBefore;
    console.info(
      `unread answers: agent RSS ${grown >> 20} MiB more, ${c.socket.writableLength >> 20} MiB of requests not yet read`,
    );
    expect(grown).toBeLessThan(40 << 20);
    // Reading again, every request gets its answer: back-pressure delayed them, lost none.
    c.socket.resume();
    await waitFor(
      'every answer',
      () => c.data.length > 0 && c.data.split('\n').length > requests + 1,
      120_000,
    );
    c.socket.destroy();
  }, 180_000);

  it('connections beyond maxConnections are closed at once, and an idle one without a token is closed', async () => {
    const conns = await Promise.all(Array.from({ length: 100 }, () => connect(port)));
    // 64 are served (waiting for their token); the rest are closed by the agent.
    await waitFor(
      'the excess connections to be closed',
      () => conns.filter((c) => c.closed).length >= 36,
    );
    // The others said nothing: they are closed when the time for the token is over.
    await waitFor('idle connections to be closed', () => conns.every((c) => c.closed), 60_000);
    expect(conns.every((c) => c.data === '')).toBe(true);
    // And the agent serves a real client again.
    const ok = await connect(port);
    ok.socket.write(line({ jsonrpc: '2.0', id: 1, method: 'ping', token: TOKEN }));
    await waitFor('answer', () => ok.data.includes('\n'));
    expect(JSON.parse(ok.data.split('\n')[0]!)).toMatchObject({
      id: 1,
      result: { node: expect.any(String) },
    });
    ok.socket.destroy();
  }, 120_000);
});
