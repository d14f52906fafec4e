import { UserError } from '../errors.js';
import type { Store, TaskRow } from '../store/types.js';

/**
 * `report --format jsonl`: every record of a task, one JSON object per line, streamed from the
 * store (nothing is held in memory). The first line describes the task, then per tracer one
 * `tracer` line followed by its samples and events.
 */
export async function* reportJsonl(
  store: Store,
  task: TaskRow,
  onRecord?: (n: number) => void,
): AsyncGenerator<string> {
  if (!store.records) throw new UserError(`store ${store.url} cannot export records`);
  const iso = (ms: number | null): string | null =>
    ms === null ? null : new Date(ms).toISOString();
  yield `${JSON.stringify({
    record: 'task',
    format: 'scalpels.records/v1',
    id: task.id,
    name: task.name,
    status: task.status,
    startedAt: iso(task.startedAt),
    stoppedAt: iso(task.stoppedAt),
    labels: task.labels,
    nodes: task.nodes,
    target: task.target,
  })}\n`;
  if (store.listMarkers)
    for (const m of await store.listMarkers(task.id))
      yield `${JSON.stringify({ record: 'marker', ts: m.ts, text: m.text, node: m.node })}\n`;
  let n = 0;
  for (const t of await store.listTracers(task.id)) {
    yield `${JSON.stringify({
      record: 'tracer',
      tracerId: t.id,
      tracer: t.tracer,
      plugin: { package: t.pluginPackage, version: t.pluginVersion },
      node: t.node,
      status: t.status,
      records: t.records,
    })}\n`;
    let chunk = '';
    // The series part of a sample line is the same for every point of a series: serialized once
    // (the store hands the same labels object for every point of a series).
    const fragments = new WeakMap<object, string>();
    for await (const batch of store.records(t.id)) {
      for (const r of batch) {
        if (r.kind === 'sample') {
          let frag = fragments.get(r.labels);
          if (frag === undefined) {
            frag = `"series":${JSON.stringify(r.series)},"labels":${JSON.stringify(r.labels)},"unit":${JSON.stringify(r.unit)},"kind":${JSON.stringify(r.seriesKind)}`;
            fragments.set(r.labels, frag);
          }
          chunk += `{"record":"sample","tracerId":${t.id},"ts":${r.ts},${frag},"value":${Number.isFinite(r.value) ? r.value : 'null'}}\n`;
        } else
          chunk += `${JSON.stringify({
            record: 'event',
            tracerId: t.id,
            ts: r.ts,
            type: r.type,
            key: r.key,
            durationMs: r.durationMs,
            value: r.value,
            data: r.data,
          })}\n`;
        n++;
      }
      onRecord?.(n);
      yield chunk;
      chunk = '';
    }
    if (chunk) yield chunk;
  }
  onRecord?.(n);
}
