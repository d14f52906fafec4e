/**
 * Broker administration the tracer needs: the vhost's tracing switch (the firehose) and deleting
 * a left-over trace queue. Through `rabbitmqctl` on the broker's host, or through the management
 * HTTP API when `management-url` is set.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  configuredProgram,
  nodeConfigPath,
  nodeSettings,
  readTrustedFile,
  trustedFile,
  UserError,
} from '@scalpels/core';
import type { Options } from './options.js';

export const PASSWORD_FILE_ENV = 'SCALPELS_RABBITMQ_PASSWORD';

export interface BrokerAdmin {
  /** Whether tracing is on for the vhost; throws when the vhost does not exist or the tool fails. */
  tracing(vhost: string): Promise<boolean>;
  setTracing(vhost: string, on: boolean): Promise<void>;
  /** Deletes a queue; a queue that is already gone is fine. */
  deleteQueue(vhost: string, queue: string): Promise<void>;
  /** Names of the queues of the vhost. */
  queues(vhost: string): Promise<string[]>;
  describe(): string;
  /** The Erlang node whose switch this admin sets (`rabbit@host`): the broker's own name for it. */
  nodeName(): Promise<string>;
  /**
   * The scalpels tracer that turned tracing on for the vhost on that node (`task-tracer`), as
   * marked in a global parameter of the broker; undefined when none is marked.
   */
  traceOwner(vhost: string, node: string): Promise<string | undefined>;
  /** Marks (owner) or unmarks (null) the tracer that turned tracing on. */
  setTraceOwner(vhost: string, node: string, owner: string | null): Promise<void>;
}

/**
 * The global parameter that marks who turned tracing on for a vhost on a node: a tracer of
 * another store (which shares no lease with it) sees it, and does not take that tracing for
 * an operator's. Named after a digest: vhost names may hold any character.
 */
export function traceOwnerParameter(vhost: string, node: string): string {
  const digest = createHash('sha256').update(`${node}\0${vhost}`).digest('hex').slice(0, 24);
  return `scalpels-trace-owner-${digest}`;
}

interface TraceOwnerValue {
  node: string;
  vhost: string;
  owner: string;
}

function ownerOf(value: unknown, vhost: string, node: string): string | undefined {
  const v = (typeof value === 'string' ? safeJson(value) : value) as Partial<TraceOwnerValue>;
  if (!v || v.vhost !== vhost || v.node !== node || typeof v.owner !== 'string') return undefined;
  // Echoed in a refusal: a broker value, so only the shape this plugin writes (`task-tracer`).
  return /^[\w.-]{1,100}$/.test(v.owner) ? v.owner : 'unnamed';
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export function run(
  argv: readonly string[],
  timeoutMs = 30_000,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      argv[0]!,
      argv.slice(1),
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        const why = err?.killed
          ? `error: timed out after ${timeoutMs} ms`
          : err && typeof err.code !== 'number'
            ? `error: ${err.message}`
            : '';
        resolve({
          exitCode: code,
          stdout: String(stdout),
          stderr: `${String(stderr)}${why ? `\n${why}` : ''}`,
        });
      },
    );
  });
}

/**
 * Broker password: the option password-file, else $SCALPELS_RABBITMQ_PASSWORD, else `guest`. The
 * file is read only when root protected it (see readTrustedFile): a request must not make root
 * read /etc/shadow or a private key and send it to a broker of its choice. A password other than
 * guest's goes only to this host or to a broker the node configuration lists (`brokers`).
 */
export function brokerPassword(options: Options): string {
  const file = options['password-file'];
  const password =
    typeof file === 'string' && file !== ''
      ? readTrustedFile(file, { label: 'rpc-calls: option "password-file"' }).replace(/\r?\n$/, '')
      : process.env[PASSWORD_FILE_ENV];
  if (password === undefined) return 'guest';
  const host = options.host;
  const brokers = nodeSettings('rpc-calls').brokers;
  const listed =
    Array.isArray(brokers) && brokers.some((b) => typeof b === 'string' && sameHost(b, host));
  if (!LOCAL_NAMES.has(host.toLowerCase()) && !listed)
    throw new UserError(
      `rpc-calls: option "host" refused: the broker password goes only to this host or to a broker listed in "brokers" of the "rpc-calls" section of ${nodeConfigPath()}`,
    );
  return password;
}

const LOCAL_NAMES = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function sameHost(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x === y || (LOCAL_NAMES.has(x) && LOCAL_NAMES.has(y));
}

/**
 * The management API base URL to use: the option `management-url`, else the node's configured
 * one. An URL from a request must name the broker host (option `host`): the password goes there,
 * so a request cannot send it (or anything root reads) to a server of its choice.
 */
export function managementUrl(options: Options): string | undefined {
  const configured = nodeSettings('rpc-calls')['management-url'];
  if (configured !== undefined && typeof configured !== 'string')
    throw new UserError(`${nodeConfigPath()}: plugins.rpc-calls.management-url must be a URL`);
  const given = options['management-url'];
  if (typeof given !== 'string' || given === '') return configured || undefined;
  if (given === configured) return given;
  let host: string;
  try {
    host = new URL(given).hostname;
  } catch {
    throw new UserError(
      `rpc-calls: option "management-url": ${JSON.stringify(given)} is not a URL`,
    );
  }
  const broker = options.host;
  if (!sameHost(host, broker))
    throw new UserError(
      `rpc-calls: option "management-url" refused: it names ${host}, not the broker host ${broker} (another URL is set as "management-url" in the "rpc-calls" section of ${nodeConfigPath()})`,
    );
  return given;
}

/**
 * The rabbitmqctl this node runs: the one the node configuration names (`plugins.rpc-calls.
 * rabbitmqctl`), else the system's; never one named by a request. Checked with trustedFile.
 */
export function rabbitmqctlPath(): string | undefined {
  const configured = configuredProgram('rpc-calls', 'rabbitmqctl');
  if (configured) return configured;
  const found = ['/usr/sbin', '/usr/bin', '/sbin', '/bin']
    .map((d) => join(d, 'rabbitmqctl'))
    .find((p) => existsSync(p));
  return found ? trustedFile(found, 'program', { label: 'rpc-calls: rabbitmqctl' }) : undefined;
}

// Colour codes (ESC [ ... m) that rabbitmqctl puts in its usage text.
const ANSI_SGR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');

/**
 * The line that says why rabbitmqctl failed. It may print its whole usage text (ANSI coloured)
 * before the reason, as it does for a user that is neither root nor rabbitmq.
 */
export function ctlReason(stdout: string, stderr: string): string {
  const lines = `${stderr}\n${stdout}`
    .replace(ANSI_SGR, '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  // The reason comes last, after any usage text.
  const telling = [...lines]
    .reverse()
    .find((l) =>
      /^error|only root|nodedown|unable to|cookie|not found|does not exist|refused|timed out|could not/i.test(
        l,
      ),
    );
  return (telling ?? lines.at(-1) ?? 'no output').slice(0, 300);
}

export class RabbitmqctlAdmin implements BrokerAdmin {
  constructor(
    private readonly ctl: string,
    /** Erlang node name (`rabbit@host`); the local node when absent. The firehose is per node. */
    private readonly node?: string,
  ) {}

  describe(): string {
    return this.node ? `${this.ctl} -n ${this.node}` : this.ctl;
  }

  private async call(args: string[]): Promise<string> {
    const r = await run([this.ctl, ...(this.node ? ['-n', this.node] : []), ...args]);
    if (r.exitCode !== 0)
      throw new Error(
        `${this.ctl} ${args.join(' ')} failed (exit ${r.exitCode}): ${ctlReason(r.stdout, r.stderr)}`,
      );
    return r.stdout;
  }

  async tracing(vhost: string): Promise<boolean> {
    const out = await this.call(['-q', '--formatter', 'json', 'list_vhosts', 'name', 'tracing']);
    const rows = JSON.parse(out) as { name: string; tracing: boolean }[];
    const row = rows.find((r) => r.name === vhost);
    if (!row) throw new Error(`vhost ${JSON.stringify(vhost)} does not exist on the broker`);
    return row.tracing === true;
  }

  async setTracing(vhost: string, on: boolean): Promise<void> {
    await this.call([on ? 'trace_on' : 'trace_off', '-p', vhost]);
  }

  async deleteQueue(vhost: string, queue: string): Promise<void> {
    if (!(await this.queues(vhost)).includes(queue)) return;
    try {
      await this.call(['-q', 'delete_queue', '-p', vhost, queue]);
    } catch (e) {
      // Gone in between (an exclusive queue vanishes with its connection): that is what we wanted.
      if ((await this.queues(vhost)).includes(queue)) throw e;
    }
  }

  async queues(vhost: string): Promise<string[]> {
    const out = await this.call(['-q', '--formatter', 'json', 'list_queues', '-p', vhost, 'name']);
    return (JSON.parse(out) as { name: string }[]).map((q) => q.name);
  }

  async traceOwner(vhost: string, node: string): Promise<string | undefined> {
    const name = traceOwnerParameter(vhost, node);
    const out = await this.call(['-q', '--formatter', 'json', 'list_global_parameters']);
    const rows = (safeJson(out) ?? []) as { name?: unknown; value?: unknown }[];
    const row = Array.isArray(rows) ? rows.find((r) => r.name === name) : undefined;
    return row ? ownerOf(row.value, vhost, node) : undefined;
  }

  async setTraceOwner(vhost: string, node: string, owner: string | null): Promise<void> {
    const name = traceOwnerParameter(vhost, node);
    if (owner !== null) {
      const value: TraceOwnerValue = { node, vhost, owner };
      await this.call(['-q', 'set_global_parameter', name, JSON.stringify(value)]);
      return;
    }
    if ((await this.traceOwner(vhost, node)) === undefined) return;
    await this.call(['-q', 'clear_global_parameter', name]);
  }

  async nodeName(): Promise<string> {
    if (this.node) return this.node;
    const out = (await this.call(['-q', 'eval', 'node().'])).trim().replace(/^'|'$/g, '');
    if (!/^[^@\s]+@[^@\s]+$/.test(out))
      throw new Error(`unexpected node name ${JSON.stringify(out)}`);
    return out;
  }
}

/** The management plugin's HTTP API (`rabbitmq_management`), for brokers on another host. */
export class ManagementAdmin implements BrokerAdmin {
  constructor(
    private readonly baseUrl: string,
    private readonly user: string,
    private readonly password: string,
  ) {}

  describe(): string {
    return `management API ${this.baseUrl}`;
  }

  private async request(
    method: string,
    path: string,
    body?: unknown,
    missingOk = method === 'DELETE',
  ): Promise<Response> {
    const auth = Buffer.from(`${this.user}:${this.password}`).toString('base64');
    const url = new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`);
    const send = () =>
      fetch(url, {
        method,
        headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      });
    let res: Response;
    try {
      res = await send();
    } catch (err) {
      // A kept-alive connection the server closed while idle fails the next request before it
      // is sent ("other side closed"); every request here is idempotent, so one more try on a
      // new connection is safe.
      if (!staleConnection(err)) throw err;
      res = await send();
    }
    if (!res.ok && !(missingOk && res.status === 404))
      throw new Error(`${method} ${path}: HTTP ${res.status} ${res.statusText}`);
    return res;
  }

  async tracing(vhost: string): Promise<boolean> {
    const res = await this.request('GET', `api/vhosts/${encodeURIComponent(vhost)}`);
    return ((await res.json()) as { tracing?: boolean }).tracing === true;
  }

  async setTracing(vhost: string, on: boolean): Promise<void> {
    // PUT replaces the vhost's description and tags too: send the current ones back.
    const path = `api/vhosts/${encodeURIComponent(vhost)}`;
    const res = await this.request('GET', path, undefined, !on);
    if (res.status === 404) return; // the vhost is gone, and its tracing with it
    const current = (await res.json()) as {
      description?: string;
      tags?: string[] | string;
      default_queue_type?: string;
    };
    const body: Record<string, unknown> = {
      tracing: on,
      description: current.description ?? '',
      tags: Array.isArray(current.tags) ? current.tags.join(',') : (current.tags ?? ''),
    };
    if (current.default_queue_type && current.default_queue_type !== 'undefined')
      body.default_queue_type = current.default_queue_type;
    await this.request('PUT', path, body);
  }

  async deleteQueue(vhost: string, queue: string): Promise<void> {
    await this.request(
      'DELETE',
      `api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`,
    );
  }

  async queues(vhost: string): Promise<string[]> {
    const res = await this.request('GET', `api/queues/${encodeURIComponent(vhost)}?columns=name`);
    return ((await res.json()) as { name: string }[]).map((q) => q.name);
  }

  async traceOwner(vhost: string, node: string): Promise<string | undefined> {
    const path = `api/global-parameters/${encodeURIComponent(traceOwnerParameter(vhost, node))}`;
    const res = await this.request('GET', path, undefined, true);
    if (res.status === 404) return undefined;
    return ownerOf(((await res.json()) as { value?: unknown }).value, vhost, node);
  }

  async setTraceOwner(vhost: string, node: string, owner: string | null): Promise<void> {
    const name = traceOwnerParameter(vhost, node);
    const path = `api/global-parameters/${encodeURIComponent(name)}`;
    if (owner === null) {
      await this.request('DELETE', path);
      return;
    }
    const value: TraceOwnerValue = { node, vhost, owner };
    await this.request('PUT', path, { name, value });
  }

  async nodeName(): Promise<string> {
    const res = await this.request('GET', 'api/overview');
    const node = ((await res.json()) as { node?: unknown }).node;
    if (typeof node !== 'string' || !node) throw new Error('the management API names no node');
    return node;
  }
}

export function brokerAdmin(options: Options, node?: string): BrokerAdmin {
  const url = managementUrl(options);
  if (url) return new ManagementAdmin(url, options.user, brokerPassword(options));
  const ctl = rabbitmqctlPath();
  if (!ctl)
    throw new Error(
      `rabbitmqctl not found (/usr/sbin, /usr/bin, /sbin, /bin, or "rabbitmqctl" in the "rpc-calls" section of ${nodeConfigPath()})`,
    );
  return new RabbitmqctlAdmin(ctl, node);
}

/** The nodes whose tracing switch the tracer sets: the option `nodes`, else the local one. */
export function switchNodes(options: Options): (string | undefined)[] {
  const nodes = options.nodes ?? [];
  return nodes.length > 0 ? [...nodes] : [undefined];
}

/** Whether a fetch failed because its pooled connection was closed under it, before any answer. */
function staleConnection(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}
