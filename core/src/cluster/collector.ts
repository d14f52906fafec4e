import { hostname } from 'node:os';
import type { Schema, SeriesKind, TraceRecord } from '../api.js';
import type { RedisStore } from '../store/redis.js';
import { decodeBatch, ensureReady, fieldMap } from '../store/redis.js';
import type { SqliteStore } from '../store/sqlite.js';
import type { TracerRow } from '../store/types.js';

export interface CollectOptions {
  /** Only this task (id); every task when absent. */
  task?: string;
  /** Keep draining new entries until `signal` aborts. */
  follow?: boolean;
  signal?: AbortSignal;
  consumer?: string;
  /** Take over entries another collector received but did not acknowledge for this long (it died). */
  claimIdleMs?: number;
  onBatch?: (info: { task: string; records: number; duplicate: boolean }) => void;
}

export interface CollectResult {
  tasks: number;
  entries: number;
  records: number;
  duplicates: number;
}

const GROUP = 'collectors';

/**
 * Drains task streams from Redis into SQLite through a consumer group. Each stream entry is
 * written with its id in one SQLite transaction and acknowledged only after the commit: a
 * collector that dies re-reads its pending entries, and an entry already committed is detected
 * as a duplicate, so nothing is lost or counted twice.
 */
export async function collect(
  from: RedisStore,
  to: SqliteStore,
  opts: CollectOptions = {},
): Promise<CollectResult> {
  const consumer = opts.consumer ?? `${hostname()}-${process.pid}`;
  const source = from.url;
  const result: CollectResult = { tasks: 0, entries: 0, records: 0, duplicates: 0 };
  const redis = from.redis;
  await ensureReady(redis);
  do {
    const tasks = opts.task
      ? [await from.findTask(opts.task)].filter((t) => t !== undefined)
      : await from.listTasks();
    let progressed = false;
    for (const task of tasks) {
      const stream = from.key.records(task.id);
      try {
        await redis.xgroup('CREATE', stream, GROUP, '0', 'MKSTREAM');
      } catch (e) {
        if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
      }
      const tracers = new Map<
        number,
        { local: TracerRow; write: ReturnType<SqliteStore['importer']> }
      >();
      const local = async (originId: number) => {
        let t = tracers.get(originId);
        if (!t) {
          const origin = (await from.listTracers(task.id)).find((x) => x.id === originId);
          if (!origin) return undefined;
          const row = to.importTracer(source, origin, task);
          t = { local: row, write: to.importer(row, await schemaOf(from, originId)) };
          tracers.set(originId, t);
        }
        return t;
      };
      // Entries a dead collector received but never acknowledged become this consumer's…
      await redis.xautoclaim(
        stream,
        GROUP,
        consumer,
        opts.claimIdleMs ?? 30_000,
        '0-0',
        'COUNT',
        10_000,
      );
      // …and are read first (cursor 0: this consumer's pending entries), then new ones.
      for (const cursor of ['0', '>']) {
        for (;;) {
          const res = (await redis.xreadgroup(
            'GROUP',
            GROUP,
            consumer,
            'COUNT',
            64,
            'STREAMS',
            stream,
            cursor,
          )) as [string, [string, string[]][]][] | null;
          const entries = res?.[0]?.[1] ?? [];
          if (entries.length === 0) break;
          for (const [id, fields] of entries) {
            const f = fieldMap(fields);
            const t = f.t !== undefined ? await local(Number(f.t)) : undefined;
            if (t && f.b) {
              const records = toRecords(f.b);
              const fresh = t.write(source, `${stream}/${id}`, records);
              result.entries++;
              if (fresh) result.records += records.length;
              else result.duplicates++;
              opts.onBatch?.({ task: task.id, records: records.length, duplicate: !fresh });
            }
            await redis.xack(stream, GROUP, id); // after the SQLite commit
            progressed = true;
          }
          if (cursor === '0' && entries.length < 64) break;
        }
      }
      // Final states and counters follow the records.
      for (const [originId, t] of tracers) {
        const origin = (await from.listTracers(task.id)).find((x) => x.id === originId);
        if (origin)
          await to.updateTracer(t.local.id, {
            status: origin.status,
            exitCode: origin.exitCode,
            error: origin.error,
            stderrTail: origin.stderrTail,
            startedAt: origin.startedAt,
            stoppedAt: origin.stoppedAt,
            records: origin.records,
            parseErrors: origin.parseErrors,
            dropped: origin.dropped,
            restarts: origin.restarts,
          });
      }
      const fresh = await from.findTask(task.id);
      if (fresh && tracers.size > 0)
        await to.updateTask(task.id, {
          status: fresh.status,
          stoppedAt: fresh.stoppedAt ?? undefined,
        });
      result.tasks++;
    }
    if (!opts.follow || opts.signal?.aborted) break;
    if (!progressed) await new Promise((r) => setTimeout(r, 500));
  } while (!opts.signal?.aborted);
  return result;
}

async function schemaOf(from: RedisStore, tracerId: number): Promise<Schema> {
  const meta = await from.redis.hgetall(from.key.series(tracerId));
  const series: Record<string, { kind: SeriesKind; unit: string; description: string }> = {};
  for (const [k, v] of Object.entries(meta)) {
    const name = k.slice(0, k.indexOf('\0'));
    const m = JSON.parse(v) as { unit: string; kind: SeriesKind };
    series[name] = { kind: m.kind, unit: m.unit, description: '' };
  }
  // A series whose metadata never reached Redis still imports, as a gauge without unit.
  return {
    series: new Proxy(series, {
      get: (o, name: string) => o[name] ?? { kind: 'gauge', unit: '', description: '' },
    }),
  };
}

function toRecords(json: string): TraceRecord[] {
  const b = decodeBatch(json);
  const out: TraceRecord[] = [];
  for (const [i, ts, value] of b.p) {
    const [series, labels] = b.s[i]!;
    out.push({
      kind: 'sample',
      series,
      labels: JSON.parse(labels) as Record<string, string>,
      ts,
      value,
    });
  }
  for (const [type, key, ts, durationMs, value, data] of b.e)
    out.push({
      kind: 'event',
      type,
      key,
      ts,
      durationMs: durationMs ?? undefined,
      value: value ?? undefined,
      data: data ? (JSON.parse(data) as Record<string, unknown>) : undefined,
    });
  return out;
}
