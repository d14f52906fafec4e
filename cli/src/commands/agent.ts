import { createRequire } from 'node:module';
import { loadEngine, makeConfig, paint, statusColor, type GlobalArgs } from '../context.js';
import { parseLabels, tracerRequests } from './run.js';

export interface AgentArgs extends GlobalArgs {
  agent?: string;
  tokenFile?: string;
}

interface ServeArgs extends AgentArgs {
  socket?: string;
  listen?: string;
  heartbeat?: string;
}

const version = (createRequire(import.meta.url)('../../package.json') as { version: string })
  .version;

/** `scalpels agent`: serve RPC until SIGTERM/SIGINT, then stop every tracer cleanly. */
export async function agentCommand(args: ServeArgs): Promise<number> {
  const engine = await loadEngine();
  const { UserError } = engine;
  const config = await makeConfig(args);
  let tcp: { host: string; port: number; token: string } | undefined;
  if (args.listen) {
    const tokenFile = args.tokenFile ?? process.env.SCALPELS_TOKEN_FILE;
    if (!tokenFile)
      throw new UserError(
        '--listen needs --token-file F: a TCP agent accepts only requests carrying the token',
      );
    const { host, port } = engine.parseHostPort(args.listen, '--listen');
    tcp = { host, port, token: engine.readTokenFile(tokenFile) };
  }
  const socketPath = args.socket ?? engine.defaultSocketPath();
  const redisUrl = args.redis ?? process.env.SCALPELS_REDIS;
  let cluster:
    | { redisUrl: string; heartbeatMs: number; key: import('@scalpels/core/engine').ClusterKey }
    | undefined;
  if (redisUrl) {
    const heartbeatMs = engine.parseDuration(args.heartbeat ?? '2s');
    if (heartbeatMs === undefined || heartbeatMs < 100)
      throw new UserError(`--heartbeat ${args.heartbeat}: expected a duration of at least 100ms`);
    // Whoever can write to Redis must not control this root agent: commands are signed.
    const keyFile = engine.clusterKeyFileOf(args.clusterKeyFile);
    if (!keyFile)
      throw new UserError(
        '--redis needs --cluster-key-file F (or SCALPELS_CLUSTER_KEY_FILE): an agent in cluster mode runs only commands signed with the cluster key',
      );
    cluster = { redisUrl, heartbeatMs, key: engine.ClusterKey.fromFile(keyFile) };
  }
  const container = engine.createContainer(config);
  const server = new engine.AgentServer(container, { socketPath, tcp, version, cluster });
  const { recovered } = await server.listen();
  const log = (m: string): boolean => process.stderr.write(`scalpels agent: ${m}\n`);
  if (recovered)
    log(`recovered ${recovered} tracer(s) left by a previous agent (marked interrupted)`);
  // A Redis URL may carry a password: never log it.
  const storeShown = config.storeUrl.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
  log(
    `node ${config.node}, store ${storeShown}, socket ${socketPath}` +
      `${tcp ? `, tcp ${tcp.host}:${server.address?.port ?? tcp.port}` : ''}${cluster ? ', cluster member' : ''}`,
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: stopping every tracer`);
      void server.close().then(resolve, resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  await container.resolve<{ close(): Promise<void> }>(engine.TOKENS.StoreProvider).close();
  return 0;
}

async function client(args: AgentArgs) {
  const engine = await import('@scalpels/core/engine');
  const url = args.agent ?? process.env.SCALPELS_AGENT ?? `unix://${engine.defaultSocketPath()}`;
  const tokenFile = args.tokenFile ?? process.env.SCALPELS_TOKEN_FILE;
  const token = tokenFile ? engine.readTokenFile(tokenFile) : undefined;
  if (url.startsWith('tcp://') && !token)
    throw new engine.UserError(`--agent ${url}: TCP needs --token-file F (or SCALPELS_TOKEN_FILE)`);
  return new engine.AgentClient(url, token);
}

export interface StartArgs extends AgentArgs {
  tracer: string[];
  set?: string[];
  pid?: number[];
  service?: string[];
  name?: string;
  label?: string[];
  restarts?: number;
}

export async function startCommand(
  startArgs: StartArgs & { nodes?: string; redis?: string; preset?: string },
): Promise<number> {
  // --preset: its tracers and options, and its services that run here (says which do not).
  const args = await (await import('./presets.js')).applyPreset(startArgs, 'start');
  const { redisUrlOf, clusterStartCommand } = await import('./cluster.js');
  if (redisUrlOf(args)) return clusterStartCommand({ ...args, nodes: args.nodes ?? 'all' });
  if (args.nodes) {
    const { UserError } = await import('@scalpels/core');
    throw new UserError('--nodes needs --redis URL (the cluster the nodes registered with)');
  }
  const requests = await tracerRequests(args.tracer, args.set);
  const c = await client(args);
  try {
    const r = await c.call<{ taskId: string }>('start', {
      tracers: requests.map((t) => ({ name: t.name, options: t.options })),
      target: { pids: args.pid ?? [], services: args.service ?? [] },
      name: args.name,
      labels: parseLabels(args.label),
      restarts: args.restarts,
    });
    process.stdout.write(args.json ? `${JSON.stringify(r)}\n` : `${r.taskId}\n`);
    return 0;
  } finally {
    c.close();
  }
}

interface StopArgs extends AgentArgs {
  task?: string;
  last?: boolean;
  tracer?: string[];
}

export async function stopCommand(args: StopArgs & { redis?: string }): Promise<number> {
  const { redisUrlOf, clusterStopCommand } = await import('./cluster.js');
  if (redisUrlOf(args)) return clusterStopCommand(args);
  const c = await client(args);
  try {
    const r = await c.call<{ taskId: string; tracers: { tracer: string; status: string }[] }>(
      'stop',
      {
        task: args.last ? undefined : args.task,
        tracers: args.tracer?.flatMap((t) => t.split(',')).filter(Boolean),
      },
    );
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else
      process.stdout.write(
        `task ${r.taskId}: ${r.tracers.map((t) => `${t.tracer} ${t.status}`).join(', ')}\n`,
      );
    return 0;
  } finally {
    c.close();
  }
}

export async function statusCommand(args: AgentArgs & { redis?: string }): Promise<number> {
  const { redisUrlOf, clusterStatusCommand } = await import('./cluster.js');
  if (redisUrlOf(args)) return clusterStatusCommand(args);
  const engine = await import('@scalpels/core/engine');
  const c = await client(args);
  try {
    const r = await c.call<{
      agent: import('@scalpels/core/engine').AgentInfo;
      tasks: import('@scalpels/core/engine').TaskStatus[];
    }>('status');
    if (args.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(
      `agent on ${r.agent.node} (pid ${r.agent.pid}, since ${r.agent.startedAt}), store ${r.agent.store}\n`,
    );
    if (r.tasks.length === 0) {
      process.stdout.write('no running task\n');
      return 0;
    }
    const rows = r.tasks.flatMap((t) =>
      t.tracers.map((tr) => [
        t.id,
        tr.tracer,
        tr.status,
        tr.pid === null ? '-' : String(tr.pid),
        tr.uptimeMs === null ? '-' : `${(tr.uptimeMs / 1000).toFixed(0)}s`,
        String(tr.records),
        String(tr.parseErrors),
        String(tr.restarts),
      ]),
    );
    const text = engine.table(
      ['TASK', 'TRACER', 'STATUS', 'PID', 'UPTIME', 'RECORDS', 'PARSE ERR', 'RESTARTS'],
      rows,
    );
    const [head, ...lines] = text.split('\n');
    process.stdout.write(`${paint(head!, 'bold')}\n`);
    for (const [i, l] of lines.entries()) {
      const st = rows[i]![2]!;
      process.stdout.write(`${l.replace(` ${st} `, ` ${paint(st, statusColor(st))} `)}\n`);
    }
    return 0;
  } finally {
    c.close();
  }
}

/** For doctor: is the agent reachable, and is its socket private? */
export async function agentHealth(
  args: AgentArgs,
): Promise<{ ok: boolean; detail: string; hint?: string }> {
  const engine = await import('@scalpels/core/engine');
  const { statSync } = await import('node:fs');
  const url = args.agent ?? process.env.SCALPELS_AGENT ?? `unix://${engine.defaultSocketPath()}`;
  let perms = '';
  try {
    const addr = engine.parseAgentUrl(url);
    if (addr.kind === 'unix') {
      const mode = statSync(addr.path).mode & 0o777;
      if (mode & 0o077)
        return {
          ok: false,
          detail: `socket ${addr.path} has mode ${mode.toString(8)}: others can reach the agent`,
          hint: `chmod 600 ${addr.path}`,
        };
      perms = `, socket mode ${mode.toString(8)}`;
    }
  } catch {
    return {
      ok: false,
      detail: `no agent socket at ${url}`,
      hint: 'start one: scalpels agent (or systemctl start scalpels-agent)',
    };
  }
  try {
    const c = await client(args);
    const info = await c.call<{ node: string; pid: number; version: string }>('ping');
    c.close();
    return {
      ok: true,
      detail: `agent reachable at ${url} (node ${info.node}, pid ${info.pid}, ${info.version}${perms})`,
    };
  } catch (e) {
    return { ok: false, detail: (e as Error).message, hint: 'start one: scalpels agent' };
  }
}
