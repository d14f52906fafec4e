import { writeFileSync } from 'node:fs';
import { loadEngine, readerConfig, reportViews, type GlobalArgs } from '../context.js';

interface CompareArgs extends GlobalArgs {
  a: string;
  b: string;
  format: 'table' | 'json' | 'html';
  output?: string;
  rows: number;
  top: number;
  ops?: string;
}

/** `--ops N` (both tasks) or `--ops A,B`: positive whole numbers of operations. */
function parseOps(
  engine: Awaited<ReturnType<typeof loadEngine>>,
  text: string | undefined,
): { a: number; b: number } | undefined {
  if (text === undefined) return undefined;
  const parts = String(text).split(',');
  const n = parts.map(Number);
  if (parts.length > 2 || n.some((x) => !Number.isInteger(x) || x <= 0))
    throw new engine.UserError(
      `--ops ${text}: expected N or A,B (positive whole numbers of operations)`,
    );
  return { a: n[0]!, b: n[1] ?? n[0]! };
}

/** `scalpels compare A B`: the same series and top keys of two tasks side by side. */
export async function compareCommand(args: CompareArgs): Promise<number> {
  const engine = await loadEngine();
  const config = await readerConfig(args);
  const ops = parseOps(engine, args.ops);
  const store = engine.openStore(config.storeUrl);
  try {
    const find = async (ref: string) => {
      const t = await store.findTask(ref);
      if (!t) throw new engine.UserError(`no task "${ref}" in ${store.url}`);
      return t;
    };
    const a = await find(String(args.a));
    const b = await find(String(args.b));
    const progress = new engine.Progress(`compare ${a.id} ${b.id}`);
    progress.update('aggregating in the store');
    const c = await engine.compareTasks(store, a, b, { top: args.top, ops });
    let text: string;
    if (args.format === 'json') text = `${JSON.stringify(c, null, 2)}\n`;
    else if (args.format === 'html') {
      progress.update('timelines');
      const [ra, rb] = await Promise.all([
        engine.buildReport(store, a, { top: 0 }),
        engine.buildReport(store, b, { top: 0 }),
      ]);
      const [ta, tb] = [
        await engine.buildTimeline(store, a, ra, { maxLines: 1000 }),
        await engine.buildTimeline(store, b, rb, { maxLines: 1000 }),
      ];
      // How to read each histogram's buckets (bound unit, cumulative or not), as the report does.
      const views = await reportViews(engine, config, [
        ...new Set([...ra.tracers, ...rb.tracers].map((t) => t.tracer)),
      ]);
      text = engine.formatCompareHtml(c, ta, tb, { rows: args.rows, views });
    } else text = engine.formatCompareTable(c, { rows: args.rows });
    progress.done();
    if (args.output) writeFileSync(args.output, text);
    else process.stdout.write(text);
    return 0;
  } finally {
    await store.close();
  }
}
