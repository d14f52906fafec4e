import { loadEngine, type GlobalArgs } from '../context.js';

interface CollectArgs extends GlobalArgs {
  from: string;
  to?: string;
  task?: string;
  follow?: boolean;
  claimIdle?: string;
}

/** `scalpels collect --from redis://… --to sqlite:///…`: drain task streams into SQLite. */
export async function collectCommand(args: CollectArgs): Promise<number> {
  const engine = await loadEngine();
  const from = engine.openStore(args.from);
  const to = engine.openStore(args.to ?? engine.defaultStoreUrl());
  if (!(from instanceof engine.RedisStore))
    throw new engine.UserError('--from must be a redis:// or rediss:// URL');
  if (!(to instanceof engine.SqliteStore))
    throw new engine.UserError('--to must be a sqlite:///path URL');
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const claimIdleMs =
      args.claimIdle === undefined ? undefined : engine.parseDuration(args.claimIdle);
    if (args.claimIdle !== undefined && claimIdleMs === undefined)
      throw new engine.UserError(`--claim-idle ${args.claimIdle}: expected a duration`);
    const r = await engine.collect(from, to, {
      task: args.task,
      follow: args.follow,
      signal: abort.signal,
      claimIdleMs,
    });
    const line = `collected ${r.records} records in ${r.entries} batches from ${r.tasks} task(s) into ${to.url}; ${r.duplicates} duplicate batch(es) skipped`;
    process.stdout.write(args.json ? `${JSON.stringify(r)}\n` : `${line}\n`);
    return 0;
  } finally {
    await from.close();
    await to.close();
  }
}
