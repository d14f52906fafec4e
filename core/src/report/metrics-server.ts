import http from 'node:http';
import { UserError } from '../errors.js';
import { buildReport } from '../report.js';
import type { Store } from '../store/types.js';
import { formatReportOpenMetrics } from './openmetrics.js';

export const OPENMETRICS_CONTENT_TYPE =
  'application/openmetrics-text; version=1.0.0; charset=utf-8';

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|localhost)$/;

/**
 * Serves `GET /metrics`: the OpenMetrics text of every running task of a store (counters are
 * totals since the task started, so they only grow while it runs). Loopback addresses only:
 * it has no authentication.
 */
export async function serveOpenMetrics(
  store: Store,
  host: string,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  if (!LOOPBACK.test(host))
    throw new UserError(
      `--metrics ${host}:${port}: /metrics has no authentication and listens on loopback only (127.0.0.1 or ::1)`,
    );
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' });
      res.end(path === '/metrics' ? 'GET only\n' : 'not found: try /metrics\n');
      return;
    }
    void (async () => {
      const tasks = (await store.listTasks()).filter(
        (t) => t.status === 'running' || t.status === 'stopping',
      );
      const reports = [];
      for (const t of tasks) reports.push(await buildReport(store, t, { top: 20 }));
      return formatReportOpenMetrics(reports);
    })().then(
      (body) => {
        res.writeHead(200, { 'content-type': OPENMETRICS_CONTENT_TYPE });
        res.end(body);
      },
      (e: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`${(e as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new UserError(`--metrics ${host}:${port}: cannot listen (${e.message})`)),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as { port: number }).port;
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
