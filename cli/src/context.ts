import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '@scalpels/core/engine';

export interface GlobalArgs {
  store?: string;
  json?: boolean;
  node?: string;
  /** Cluster commands: the Redis that agents register with; also the default store then. */
  redis?: string;
  /** Cluster commands and agents: the key file that signs commands and answers. */
  clusterKeyFile?: string;
  /** `agent` and `run`: accept user scripts from trusted files (see docs/security.md). */
  allowScripts?: boolean;
  /** `agent` and `run`: accept SystemTap guru mode (with --allow-scripts). */
  allowGuru?: boolean;
  /** Commands that talk to an agent: unix:///path or tcp://host:port. */
  agent?: string;
  tokenFile?: string;
}

/** The CLI package folder: plugins installed beside it (or above it) are the installation's. */
export const cliDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Loads the engine on demand: commands that only list or print stay fast. */
export async function loadEngine(): Promise<typeof import('@scalpels/core/engine')> {
  await import('reflect-metadata');
  return import('@scalpels/core/engine');
}

export async function makeConfig(args: GlobalArgs): Promise<Config> {
  const { defaultStoreUrl, UserError } = await import('@scalpels/core/engine');
  if (args.allowGuru && !args.allowScripts)
    throw new UserError('--allow-guru needs --allow-scripts (guru mode runs user scripts)');
  return {
    storeUrl:
      args.store ??
      process.env.SCALPELS_STORE ??
      args.redis ??
      process.env.SCALPELS_REDIS ??
      defaultStoreUrl(),
    node: args.node ?? process.env.SCALPELS_NODE ?? hostname(),
    pluginSearchFrom: [cliDir],
    env: process.env,
    policy: { allowScripts: args.allowScripts === true, allowGuru: args.allowGuru === true },
  };
}

/**
 * The configuration of a command that reads tasks (tasks, report, compare, watch): its store is
 * --store (or SCALPELS_STORE, --redis), else the store of the agent named by --agent (or
 * SCALPELS_AGENT), so that `start --agent X` and `report --agent X` see the same tasks; else the
 * default store.
 */
export async function readerConfig(args: GlobalArgs): Promise<Config> {
  const config = await makeConfig(args);
  const named =
    args.store ?? process.env.SCALPELS_STORE ?? args.redis ?? process.env.SCALPELS_REDIS;
  const agentUrl = args.agent ?? process.env.SCALPELS_AGENT;
  if (named !== undefined || agentUrl === undefined) return config;
  const engine = await loadEngine();
  const tokenFile = args.tokenFile ?? process.env.SCALPELS_TOKEN_FILE;
  const token = tokenFile ? engine.readTokenFile(tokenFile) : undefined;
  if (agentUrl.startsWith('tcp://') && !token)
    throw new engine.UserError(
      `--agent ${agentUrl}: TCP needs --token-file F (or SCALPELS_TOKEN_FILE)`,
    );
  // Only a socket of root's or this user's speaks for an agent this process may follow.
  const address = engine.parseAgentUrl(agentUrl);
  if (address.kind === 'unix') {
    const { lstatSync } = await import('node:fs');
    const uid = process.getuid?.() ?? 0;
    let owner: number | undefined;
    try {
      const st = lstatSync(address.path);
      owner = st.isSocket() ? st.uid : undefined;
    } catch {
      owner = undefined;
    }
    if (owner !== undefined && owner !== 0 && owner !== uid)
      throw new engine.UserError(
        `the agent socket ${address.path} is owned by uid ${owner}, not root or this user: give --store`,
      );
  }
  const client = new engine.AgentClient(agentUrl, token);
  let answer: unknown;
  try {
    answer = (await client.call<{ store?: unknown }>('ping'))?.store;
  } catch (e) {
    throw new engine.UserError(
      `cannot ask the agent at ${agentUrl} for its store (${(e as Error).message.split('\n')[0]}); give --store`,
    );
  } finally {
    client.close();
  }
  if (typeof answer !== 'string' || answer.length > 4096)
    throw new engine.UserError(`the agent at ${agentUrl} did not name its store: give --store`);
  // Echoed in messages: no control character of the answer reaches the terminal.
  const store = engine.escapeControl(answer, 4096);
  if (store !== answer)
    throw new engine.UserError(`the agent at ${agentUrl} named an unusable store: give --store`);
  // This process reads the store's files: a password file or spill folder comes from the caller
  // (--store, SCALPELS_REDIS_PASSWORD_FILE), never from the agent's answer.
  if (/[?&](passwordfile|spilldir)=/i.test(store))
    throw new engine.UserError(
      `the agent at ${agentUrl} uses a Redis store that names files (${store.split('?')[0]}): give --store`,
    );
  // The agent shows its store with any password masked.
  if (store.includes('***@'))
    throw new engine.UserError(
      `the agent at ${agentUrl} uses ${store}: give --store with its password file`,
    );
  const path = engine.sqlitePath(store);
  if (path !== undefined) {
    if (agentUrl.startsWith('tcp://'))
      throw new engine.UserError(
        `the agent at ${agentUrl} keeps its tasks in ${store} on its own node: read them there, or give --store`,
      );
    // The answer names a file this process will open: only an existing store file of root's
    // or this user's, never a path an impostor on the socket chose for us to create.
    const { lstatSync } = await import('node:fs');
    let st;
    try {
      st = lstatSync(path);
    } catch {
      throw new engine.UserError(
        `the agent at ${agentUrl} names ${store}, which does not exist here`,
      );
    }
    const uid = process.getuid?.() ?? 0;
    if (!st.isFile() || (st.uid !== 0 && st.uid !== uid))
      throw new engine.UserError(
        `the agent at ${agentUrl} names ${store}, which is not a store file of root or of this user; give --store`,
      );
  }
  return { ...config, storeUrl: store };
}

export const useColor = (stream: NodeJS.WriteStream = process.stdout): boolean =>
  Boolean(stream.isTTY) && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';

export function paint(
  text: string,
  color: 'red' | 'green' | 'yellow' | 'dim' | 'bold',
  stream = process.stdout,
): string {
  if (!useColor(stream)) return text;
  const codes = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
  return `\x1b[${codes[color]}m${text}\x1b[0m`;
}

export function statusColor(status: string): 'green' | 'yellow' | 'red' | 'dim' {
  if (status === 'ok' || status === 'stopped' || status === 'running') return 'green';
  if (
    status === 'fixable' ||
    status === 'starting' ||
    status === 'stopping' ||
    status === 'conflict'
  )
    return 'yellow';
  if (status === 'interrupted') return 'dim';
  return 'red';
}

/** The report views of a task's tracers, from the plugins installed beside this CLI. */
export async function reportViews(
  engine: Awaited<ReturnType<typeof loadEngine>>,
  config: Config,
  tracers: readonly string[],
) {
  const registry = new engine.PluginRegistry(config.pluginSearchFrom, config.env);
  return engine.loadReportViews(registry, tracers);
}
