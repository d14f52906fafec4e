import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ManagementAdmin } from '../src/broker.js';

/**
 * A broker's management listener closes kept-alive connections it finds idle; a request sent on
 * one of them just then fails before any answer ("other side closed"). A real HTTP server that
 * drops the connection of the second request reproduces that moment on loopback.
 */
describe('management API connection closed while idle', () => {
  const servers: ReturnType<typeof createServer>[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  async function broker(dropRequests: number[]): Promise<{ url: string; seen: () => number }> {
    let n = 0;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      n += 1;
      if (dropRequests.includes(n)) {
        req.socket.destroy();
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ name: 'v', tracing: true }));
    });
    servers.push(server);
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, seen: () => n };
  }

  it('sends the request once more on a new connection', async () => {
    const { url, seen } = await broker([2]);
    const admin = new ManagementAdmin(url, 'guest', 'guest');
    expect(await admin.tracing('v')).toBe(true);
    // The second request meets the dropped connection; the third, on a new one, is answered.
    expect(await admin.tracing('v')).toBe(true);
    expect(seen()).toBe(3);
  });

  it('gives up after that one more try', async () => {
    const { url } = await broker([2, 3]);
    const admin = new ManagementAdmin(url, 'guest', 'guest');
    expect(await admin.tracing('v')).toBe(true);
    await expect(admin.tracing('v')).rejects.toThrow(/fetch failed/);
  });
});
