import { createWriteStream, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import {
  loadEngine,
  makeConfig,
  paint,
  readerConfig,
  reportViews,
  statusColor,
  type GlobalArgs,
} from '../context.js';

interface ReportArgs extends GlobalArgs {
  task?: string;
  last?: boolean;
  format: 'table' | 'json' | 'csv' | 'html' | 'jsonl' | 'openmetrics';
  output?: string;
  top?: number;
  topBy?: 'time' | 'count' | 'value';
  all?: boolean;
  ops?: number;
}

async function openStore(args: GlobalArgs) {
  const engine = await loadEngine();
  const config = await readerConfig(args);
  return { engine, config, store: engine.openStore(config.storeUrl) };
}

/** `--ops N`: a positive whole number of operations, or a clear error. */
export function checkOps(
  engine: Awaited<ReturnType<typeof loadEngine>>,
  ops: number | undefined,
): number | undefined {
  if (ops === undefined) return undefined;
  if (!Number.isInteger(ops) || ops <= 0)
    throw new engine.UserError(`--ops ${ops}: expected a positive whole number of operations`);
  return ops;
}

function duration(ms: number | null): string {
  if (ms === null) return '-';
  const s = ms / 1000;
  return s < 60
    ? `${s.toFixed(1)}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${Math.round(s % 60)}s`
      : `${(s / 3600).toFixed(1)}h`;
}

export async function tasksCommand(args: GlobalArgs): Promise<number> {
  const { engine, store } = await openStore(args);
  try {
    const tasks = await store.listTasks();
    const withTracers = await Promise.all(
      tasks.map(async (t) => ({ ...t, tracers: await store.listTracers(t.id) })),
    );
    if (args.json) {
      const out = withTracers.map((t) => ({
        id: t.id,
        name: t.name,
        status: t.status,
        startedAt: new Date(t.startedAt).toISOString(),
        stoppedAt: t.stoppedAt === null ? null : new Date(t.stoppedAt).toISOString(),
        labels: t.labels,
        nodes: t.nodes,
        target: t.target,
        tracers: t.tracers.map((r) => ({
          id: r.id,
          tracer: r.tracer,
          status: r.status,
          records: r.records,
          node: r.node,
        })),
      }));
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
      return 0;
    }
    if (tasks.length === 0) {
      process.stdout.write('no tasks yet (try: scalpels run -t proc -- sleep 2)\n');
      return 0;
    }
    const rows = withTracers.map((t) => [
      t.id,
      t.name,
      t.status,
      new Date(t.startedAt).toISOString().replace('T', ' ').slice(0, 19),
      duration(t.stoppedAt === null ? Date.now() - t.startedAt : t.stoppedAt - t.startedAt),
      t.tracers
        .map(
          (r) =>
            `${r.tracer}${r.status === 'stopped' || r.status === 'running' ? '' : `(${r.status})`}`,
        )
        .join(','),
    ]);
    const text = engine.table(
      ['ID', 'NAME', 'STATUS', 'STARTED (UTC)', 'DURATION', 'TRACERS'],
      rows,
    );
    const [head, ...lines] = text.split('\n');
    process.stdout.write(`${paint(head!, 'bold')}\n`);
    lines.forEach((l, i) =>
      process.stdout.write(
        `${l.replace(` ${tasks[i]!.status} `, ` ${paint(tasks[i]!.status, statusColor(tasks[i]!.status))} `)}\n`,
      ),
    );
    return 0;
  } finally {
    await store.close();
  }
}

export async function reportCommand(args: ReportArgs): Promise<number> {
  const { engine, config, store } = await openStore(args);
  try {
    const ops = checkOps(engine, args.ops);
    const task = args.task && !args.last ? await store.findTask(args.task) : await store.lastTask();
    if (!task)
      throw new engine.UserError(
        args.task ? `no task "${args.task}" in ${store.url}` : `no task yet in ${store.url}`,
      );
    const progress = new engine.Progress(`report ${task.id}`);
    if (args.format === 'jsonl') {
      await writeStream(
        engine.reportJsonl(store, task, (n) => progress.update(`${n} records`)),
        args.output,
      );
      progress.done();
      return 0;
    }
    progress.update('aggregating in the store');
    const views = await reportViews(
      engine,
      config,
      (await store.listTracers(task.id)).map((t) => t.tracer),
    );
    const report = await engine.buildReport(store, task, {
      top: args.top,
      topBy: args.topBy,
      ops,
      views,
    });
    let text: string;
    if (args.format === 'html') {
      progress.update('timelines');
      const timeline = await engine.buildTimeline(store, task, report);
      text = engine.formatReportHtml(report, timeline, { views });
    } else
      text =
        args.format === 'json'
          ? `${JSON.stringify(report, null, 2)}\n`
          : args.format === 'csv'
            ? engine.formatReportCsv(report)
            : args.format === 'openmetrics'
              ? engine.formatReportOpenMetrics(report)
              : engine.formatReportText(report, { all: args.all });
    progress.done();
    if (args.output) writeFileSync(args.output, text);
    else process.stdout.write(text);
    return 0;
  } finally {
    await store.close();
  }
}

/** Writes chunks to FILE or stdout, waiting when the stream is full. */
async function writeStream(chunks: AsyncIterable<string>, output?: string): Promise<void> {
  const out = output ? createWriteStream(output) : process.stdout;
  // A reader that goes away (`| head`) ends the export quietly.
  let closed = false;
  out.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    closed = true;
    out.emit('drain');
  });
  for await (const chunk of chunks) {
    if (closed) break;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  if (output) {
    out.end();
    await once(out, 'finish');
  }
}

export async function recoverCommand(args: GlobalArgs): Promise<number> {
  const engine = await loadEngine();
  const container = engine.createContainer(await makeConfig(args));
  const tasks = container.resolve<InstanceType<typeof engine.TaskService>>(
    engine.TOKENS.TaskService,
  );
  const r = await tasks.recoverAll();
  process.stdout.write(
    `recovered ${r.tracers} interrupted tracer(s); undid ${r.undone} change(s)\n`,
  );
  for (const f of r.failed) process.stdout.write(`  ${f}\n`);
  await container
    .resolve<InstanceType<typeof engine.StoreProvider>>(engine.TOKENS.StoreProvider)
    .close();
  return r.failed.length ? 1 : 0;
}
