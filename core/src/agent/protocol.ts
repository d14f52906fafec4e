import { createHash, timingSafeEqual } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.js';

/**
 * Agent RPC: JSON-RPC 2.0, one JSON object per line, over a unix socket (mode 0600) or TCP with a
 * token. Requests name plugins and typed options only — never command lines or paths to run.
 */
export interface RpcRequest {
  jsonrpc: '2.0';
  id: number | string;
  method: string;
  params?: unknown;
  /** On TCP, required in the first request of a connection: the secret of the token file. */
  token?: string;
}

export interface RpcResponse {
  jsonrpc: '2.0';
  id: number | string | null;
  result?: unknown;
  error?: { code: number; message: string };
}

export const RPC_ERRORS = {
  parse: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internal: -32603,
  /** Refused: bad input from the user (unknown plugin, bad option, no such task). */
  user: 1,
  unauthorized: 2,
} as const;

/** Largest request accepted, in bytes: a request carries names and options, never data. */
export const MAX_REQUEST_BYTES = 1 << 20;

export interface StartParams {
  tracers: { name: string; options?: Record<string, unknown> }[];
  target?: { pids?: number[]; services?: string[] };
  name?: string;
  labels?: Record<string, string>;
  /** Restart a crashed worker up to this many times, with backoff (off by default). */
  restarts?: number;
  /** A task created by a cluster front end, which this node's tracers join. */
  taskId?: string;
}

export interface StopParams {
  /** Task id, unique prefix or name; the last task when absent. */
  task?: string;
  /** Only these tracers of the task. */
  tracers?: string[];
}

export interface TracerStatus {
  id: number;
  tracer: string;
  status: string;
  pid: number | null;
  uptimeMs: number | null;
  records: number;
  parseErrors: number;
  dropped: number;
  restarts: number;
  error: string | null;
}

export interface TaskStatus {
  id: string;
  node: string;
  name: string;
  status: string;
  startedAt: string;
  target: string | null;
  tracers: TracerStatus[];
}

export interface AgentInfo {
  node: string;
  pid: number;
  version: string;
  store: string;
  startedAt: string;
}

/** The default socket: `$XDG_RUNTIME_DIR/scalpels/agent.sock`, or `/run/scalpels/agent.sock`. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'scalpels') : '/run/scalpels';
  return join(base, 'agent.sock');
}

export type AgentAddress =
  { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** `unix:///path`, `tcp://host:port`, or a plain socket path. */
export function parseAgentUrl(url: string): AgentAddress {
  if (url.startsWith('unix://')) return { kind: 'unix', path: url.slice('unix://'.length) };
  if (url.startsWith('tcp://')) return parseHostPort(url.slice('tcp://'.length), `--agent ${url}`);
  if (url.startsWith('/')) return { kind: 'unix', path: url };
  throw new UserError(`--agent ${url}: expected unix:///path/to.sock or tcp://host:port`);
}

/** `HOST:PORT`, `[::1]:PORT` or `PORT` (loopback). */
export function parseHostPort(
  text: string,
  what: string,
): { kind: 'tcp'; host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new UserError(`${what}: expected HOST:PORT with a port 1-65535`);
  return { kind: 'tcp', host: m[1] || m[2] || '127.0.0.1', port };
}

/** Reads a token file; refuses a missing, empty or group/world-readable one. */
export function readTokenFile(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new UserError(
      `token file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (token.length < 16)
    throw new UserError(`token file ${path}: token is shorter than 16 characters`);
  if ((statSync(path).mode & 0o077) !== 0)
    throw new UserError(`token file ${path} is readable by group or others; chmod 600 ${path}`);
  return token;
}

/** Constant-time comparison (of digests, so that lengths do not leak either). */
export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

/** Makes the socket's folder; refuses one that another (non-root) user owns or a symlink. */
export function ensureSocketDir(path: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (st.isSymbolicLink() || (st.uid !== uid && st.uid !== 0))
    throw new UserError(
      `refusing socket folder ${dir}: ${st.isSymbolicLink() ? 'a symbolic link' : `owned by uid ${st.uid}`}`,
    );
}
