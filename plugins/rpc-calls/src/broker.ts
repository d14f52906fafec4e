/**
 * Broker administration the tracer needs: the vhost's tracing switch (the firehose) and deleting
 * a left-over trace queue. Through `rabbitmqctl` on the broker's host, or through the management
 * HTTP API when `management-url` is set.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { OptionValues } from '@scalpels/core';

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

/** Broker password: the option password-file, else $SCALPELS_RABBITMQ_PASSWORD, else `guest`. */
export function brokerPassword(options: OptionValues): string {
  const file = options['password-file'];
  if (typeof file === 'string' && file !== '')
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  return process.env[PASSWORD_FILE_ENV] ?? 'guest';
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
    const res = await fetch(
      new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`),
      {
        method,
        headers: { authorization: `Basic ${auth}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      },
    );
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
}

export function brokerAdmin(options: OptionValues, node?: string): BrokerAdmin {
  const url = options['management-url'];
  if (typeof url === 'string' && url !== '')
    return new ManagementAdmin(url, String(options.user ?? 'guest'), brokerPassword(options));
  return new RabbitmqctlAdmin(String(options.rabbitmqctl ?? 'rabbitmqctl'), node);
}

/** The nodes whose tracing switch the tracer sets: the option `nodes`, else the local one. */
export function switchNodes(options: OptionValues): (string | undefined)[] {
  const nodes = (options.nodes as readonly string[] | undefined) ?? [];
  return nodes.length > 0 ? [...nodes] : [undefined];
}
