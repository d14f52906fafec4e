import { loadEngine, makeConfig, type GlobalArgs } from '../context.js';

interface MarkArgs extends GlobalArgs {
  text: string;
  task?: string;
  agent?: string;
  tokenFile?: string;
}

/**
 * `scalpels mark TEXT`: a timestamped marker on the running task (or --task). Written to the
 * store directly; with --agent it goes through the agent's `mark` RPC (a remote node).
 */
export async function markCommand(args: MarkArgs): Promise<number> {
  const engine = await loadEngine();
  const text = String(args.text ?? '').trim();
  if (!text) throw new engine.UserError('mark: give the marker text, for example "boot 50 VMs"');
  if (text.length > 500) throw new engine.UserError('mark: the text is longer than 500 characters');
  const ts = Date.now();
  if (args.agent) {
    const tokenFile = args.tokenFile ?? process.env.SCALPELS_TOKEN_FILE;
    const token = tokenFile ? engine.readTokenFile(tokenFile) : undefined;
    const client = new engine.AgentClient(args.agent, token);
    try {
      const r = await client.call<{ taskId: string; ts: string }>('mark', {
        text,
        task: args.task,
        ts,
      });
      print(r.taskId, r.ts, text, args.json);
    } finally {
      client.close();
    }
    return 0;
  }
  const config = await makeConfig(args);
  const store = engine.openStore(config.storeUrl);
  try {
    if (!store.addMarker)
      throw new engine.UserError(`store ${store.url} cannot hold markers (use a sqlite store)`);
    let task;
    if (args.task) {
      task = await store.findTask(args.task);
      if (!task) throw new engine.UserError(`no task "${args.task}" in ${store.url}`);
    } else {
      const running = (await store.listTasks()).filter((t) => t.status === 'running');
      task = running.at(-1);
      if (!task)
        throw new engine.UserError(
          `no running task in ${store.url} to mark (start one, or name it with --task)`,
        );
    }
    const m = await store.addMarker({ taskId: task.id, ts, text, node: config.node });
    print(task.id, new Date(m.ts).toISOString(), text, args.json);
    return 0;
  } finally {
    await store.close();
  }
}

function print(taskId: string, ts: string, text: string, json?: boolean): void {
  process.stdout.write(
    json
      ? `${JSON.stringify({ task: taskId, ts, text })}\n`
      : `marked ${taskId} at ${ts}: ${text}\n`,
  );
}
