import { writeFileSync } from 'node:fs';
import { loadEngine, makeConfig, type GlobalArgs } from '../context.js';

interface CompareArgs extends GlobalArgs {
  a: string;
  b: string;
  format: 'table' | 'json' | 'html';
  output?: string;
  rows: number;
  top: number;
}

/** `scalpels compare A B`: the same series and top keys of two tasks side by side. */
export async function compareCommand(args: CompareArgs): Promise<number> {
  const engine = await loadEngine();
  const config = await makeConfig(args);
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
    const c = await engine.compareTasks(store, a, b, { top: args.top });
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
      text = engine.formatCompareHtml(c, ta, tb, { rows: args.rows });
    } else text = engine.formatCompareTable(c, { rows: args.rows });
    progress.done();
    if (args.output) writeFileSync(args.output, text);
    else process.stdout.write(text);
    return 0;
  } finally {
    await store.close();
  }
}
