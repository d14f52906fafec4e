import { setTimeout as sleep } from 'node:timers/promises';
import { loadEngine, makeConfig, readerConfig, useColor, type GlobalArgs } from '../context.js';

interface WatchArgs extends GlobalArgs {
  task?: string;
  last?: boolean;
  interval: string;
  window?: string;
  rows?: number;
  once?: boolean;
}

interface Row {
  tracer: string;
  name: string;
  labels: string;
  unit: string;
  kind: string;
  /** Counters: per second over the window; gauges: mean over the window. */
  value: number;
}

const SPARK = '▁▂▃▄▅▆▇█';

function spark(values: number[]): string {
  const max = Math.max(...values);
  if (!(max > 0)) return ' '.repeat(values.length);
  return values.map((v) => SPARK[Math.min(7, Math.round((v / max) * 7))]).join('');
}

/**
 * `scalpels watch [TASK|--last]`: a live, top-like view of a running task's hottest series,
 * read from the store every interval (rates over the last window), fitted to the terminal.
 */
export async function watchCommand(args: WatchArgs): Promise<number> {
  const engine = await loadEngine();
  const { UserError } = engine;
  const intervalMs = engine.parseDuration(args.interval ?? '2s');
  if (!intervalMs || intervalMs < 100)
    throw new UserError(`--interval ${args.interval}: expected a duration of 100ms or more`);
  const windowMs = args.window ? engine.parseDuration(args.window) : Math.max(5000, intervalMs);
  if (!windowMs) throw new UserError(`--window ${args.window}: expected a duration like 5s`);
  const config = await readerConfig(args);
  const store = engine.openStore(config.storeUrl);
  const out = process.stdout;
  const tty = Boolean(out.isTTY);
  const color = useColor(out);
  const bold = (s: string): string => (color ? `\x1b[1m${s}\x1b[0m` : s);
  const dim = (s: string): string => (color ? `\x1b[2m${s}\x1b[0m` : s);
  const history = new Map<string, number[]>();
  let stop = false;
  const onSig = (): void => {
    stop = true;
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  try {
    if (!store.seriesRange) throw new UserError(`store ${store.url} cannot be watched`);
    let task = args.task && !args.last ? await store.findTask(args.task) : undefined;
    if (!task && !(args.task && !args.last)) {
      const tasks = await store.listTasks();
      task = tasks.filter((t) => t.status === 'running').at(-1) ?? tasks.at(-1);
    }
    if (!task)
      throw new UserError(
        args.task ? `no task "${args.task}" in ${store.url}` : `no task yet in ${store.url}`,
      );
    for (;;) {
      const now = Date.now();
      const current = (await store.findTask(task.id)) ?? task;
      const tracers = await store.listTracers(current.id);
      const rows: Row[] = [];
      for (const tr of tracers) {
        const from =
          current.status === 'running' ? now - windowMs : (current.stoppedAt ?? now) - windowMs;
        const to =
          current.status === 'running' ? Number.MAX_SAFE_INTEGER : (current.stoppedAt ?? now) + 1;
        for (const s of await store.seriesRange(tr.id, from, to)) {
          if (s.kind === 'histogram' || s.points === 0) continue;
          const value = s.kind === 'counter' ? s.sum / (windowMs / 1000) : s.sum / s.points;
          if (value === 0) continue;
          rows.push({
            tracer: tr.tracer,
            name: s.name,
            labels: Object.entries(s.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(','),
            unit: s.kind === 'counter' ? `${s.unit}/s` : s.unit,
            kind: s.kind,
            value,
          });
        }
      }
      // Hottest first: per series name its busiest label sets, names ordered by their busiest.
      const byName = new Map<string, Row[]>();
      for (const r of rows) {
        const k = `${r.tracer}\0${r.name}`;
        const g = byName.get(k) ?? [];
        g.push(r);
        byName.set(k, g);
      }
      const groups = [...byName.values()].map((g) => g.sort((a, b) => b.value - a.value));
      groups.sort(
        (a, b) =>
          Number(a[0]!.kind !== 'counter') - Number(b[0]!.kind !== 'counter') ||
          a[0]!.tracer.localeCompare(b[0]!.tracer) ||
          a[0]!.name.localeCompare(b[0]!.name),
      );
      const height = tty ? Math.max(5, (out.rows || 24) - 4) : (args.rows ?? 40);
      const maxRows = args.rows ?? height;
      const perName = Math.max(1, Math.min(3, Math.floor(maxRows / Math.max(1, groups.length))));
      // Every tracer gets its turn: groups are taken round-robin across tracers, then shown in
      // tracer order.
      const queues = new Map<string, Row[][]>();
      for (const g of groups) {
        const q = queues.get(g[0]!.tracer) ?? [];
        q.push(g.slice(0, perName));
        queues.set(g[0]!.tracer, q);
      }
      const picked: Row[][] = [];
      let budget = maxRows;
      for (let round = 0; budget > 0; round++) {
        let any = false;
        for (const q of queues.values()) {
          const g = q[round];
          if (!g || budget <= 0) continue;
          any = true;
          picked.push(g.slice(0, budget));
          budget -= Math.min(g.length, budget);
        }
        if (!any) break;
      }
      const order = new Map(groups.map((g, i) => [g[0]!, i]));
      const shown = picked.sort((a, b) => order.get(a[0]!)! - order.get(b[0]!)!).flat();
      for (const r of shown) {
        const k = `${r.tracer}\0${r.name}\0${r.labels}`;
        const h = history.get(k) ?? [];
        h.push(r.value);
        if (h.length > 10) h.shift();
        history.set(k, h);
      }
      const width = tty ? out.columns || 100 : 200;
      const fixed = 12 + 12 + 10 + 3 * 2;
      const nameW = Math.min(26, Math.max(...shown.map((r) => r.name.length), 6));
      const labelW = Math.max(8, width - fixed - nameW - 14);
      // Names and labels come from traced processes: escape controls before measuring.
      const cut = (raw: string, n: number): string => {
        const s = engine.escapeControl(raw);
        return s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n);
      };
      const lines = [
        bold(
          cut(
            `task ${current.id} "${engine.escapeControl(current.name.replace(/\s+/g, ' '))}" ${current.status} · ${Math.round((now - current.startedAt) / 1000)} s · window ${windowMs / 1000} s · every ${intervalMs / 1000} s`,
            width - 1,
          ).trimEnd(),
        ),
        dim(
          `${'tracer'.padEnd(10)}  ${'series'.padEnd(nameW)}  ${'labels'.padEnd(labelW)}  ${'now'.padStart(12)}  trend`,
        ),
        ...shown.map((r) => {
          const h = history.get(`${r.tracer}\0${r.name}\0${r.labels}`) ?? [];
          return `${cut(r.tracer, 10)}  ${cut(r.name, nameW)}  ${cut(r.labels || '-', labelW)}  ${engine.human(r.value, r.unit).padStart(12)}  ${spark(h)}`.slice(
            0,
            width - 1,
          );
        }),
      ];
      if (!shown.length) lines.push(dim('(no activity in the window)'));
      if (tty && !args.once) out.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
      else out.write(`${lines.join('\n')}\n\n`);
      // A stopping task is still flushing: keep watching until it has stopped.
      if (args.once || stop || (current.status !== 'running' && current.status !== 'stopping'))
        break;
      await sleep(intervalMs);
      if (stop) break;
    }
    return 0;
  } finally {
    process.off('SIGINT', onSig);
    process.off('SIGTERM', onSig);
    await store.close();
  }
}

/** `scalpels agent --metrics HOST:PORT`: /metrics for Prometheus, beside the agent. */
export async function serveMetrics(
  args: GlobalArgs & { metrics?: string },
): Promise<{ close(): Promise<void> }> {
  const engine = await loadEngine();
  const { host, port } = engine.parseHostPort(String(args.metrics), '--metrics');
  const store = engine.openStore((await makeConfig(args)).storeUrl);
  try {
    const server = await engine.serveOpenMetrics(store, host, port);
    process.stderr.write(
      `scalpels agent: metrics on http://${host.includes(':') ? `[${host}]` : host}:${server.port}/metrics\n`,
    );
    return {
      close: async () => {
        await server.close();
        await store.close();
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
