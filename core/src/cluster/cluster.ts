import { randomBytes } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';
import { UserError, errorMessage } from '../errors.js';
import { connectRedis, ensureReady, fieldMap } from '../store/redis.js';

/** What an agent publishes with each heartbeat. */
export interface NodeInfo {
  node: string;
  pid: number;
  version: string;
  startedAt: string;
  heartbeatAt: number;
  /** Heartbeat period, so readers know when the node counts as lost. */
  periodMs: number;
  tracers: number;
}

export interface NodeState extends NodeInfo {
  alive: boolean;
  heartbeatAgeMs: number;
}

export type CommandHandler = (method: string, params: unknown) => Promise<unknown>;

/**
 * The cluster through Redis: agents register with a heartbeat key (TTL) and receive commands on
 * a stream per node through a consumer group, answering on a per-request reply list. Front ends
 * keep no state: everything is in Redis.
 */
export class Cluster {
  readonly redis: RedisClient;
  private readonly P: string;
  private readonly url: string;
  private blocking: RedisClient | undefined;
  private serving = false;

  constructor(redisUrl: string) {
    const c = connectRedis(redisUrl);
    this.redis = c.redis;
    this.P = c.store.prefix;
    this.url = redisUrl;
  }

  private key = {
    node: (n: string): string => `${this.P}node:${n}`,
    nodes: (): string => `${this.P}nodes`,
    commands: (n: string): string => `${this.P}commands:${n}`,
    reply: (id: string): string => `${this.P}reply:${id}`,
    done: (id: string): string => `${this.P}request:${id}`,
  };

  private ready(r: RedisClient = this.redis): Promise<void> {
    return ensureReady(r);
  }

  /** Publishes a heartbeat; the key expires after 2.5 periods, so a dead node is lost within 3. */
  async heartbeat(info: NodeInfo): Promise<void> {
    await this.ready();
    const json = JSON.stringify(info);
    await this.redis
      .multi()
      .set(this.key.node(info.node), json, 'PX', Math.round(info.periodMs * 2.5))
      .hset(this.key.nodes(), info.node, json)
      .exec();
  }

  /** Every node ever registered, alive or lost, with its heartbeat age. */
  async nodes(): Promise<NodeState[]> {
    await this.ready();
    const all = await this.redis.hgetall(this.key.nodes());
    const names = Object.keys(all).sort();
    if (names.length === 0) return [];
    const live = await this.redis.mget(names.map((n) => this.key.node(n)));
    const now = Date.now();
    return names.map((n, i) => {
      const info = JSON.parse(live[i] ?? all[n]!) as NodeInfo;
      return { ...info, alive: live[i] !== null, heartbeatAgeMs: now - info.heartbeatAt };
    });
  }

  /** Sends a command to a node's stream and waits for its reply. */
  async send<T>(node: string, method: string, params: unknown, timeoutMs = 60_000): Promise<T> {
    await this.ready();
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    await this.redis.xadd(
      this.key.commands(node),
      'MAXLEN',
      '~',
      '10000',
      '*',
      'id',
      id,
      'method',
      method,
      'params',
      JSON.stringify(params ?? null),
    );
    // BLPOP blocks its connection: use a second one, made on demand.
    this.blocking ??= this.redis.duplicate();
    await this.ready(this.blocking);
    const got = await this.blocking.blpop(
      this.key.reply(id),
      Math.max(1, Math.ceil(timeoutMs / 1000)),
    );
    if (!got)
      throw new UserError(
        `node ${node} did not answer ${method} within ${Math.round(timeoutMs / 1000)} s`,
      );
    const reply = JSON.parse(got[1]) as { result?: T; error?: string };
    if (reply.error !== undefined) throw new UserError(`node ${node}: ${reply.error}`);
    return reply.result as T;
  }

  /**
   * Agent side: reads this node's command stream through a consumer group, runs each command once
   * (a request re-delivered after a crash gets its stored answer), replies, then acknowledges.
   */
  async serve(node: string, handler: CommandHandler): Promise<void> {
    await this.ready();
    const stream = this.key.commands(node);
    try {
      await this.redis.xgroup('CREATE', stream, 'agents', '$', 'MKSTREAM');
    } catch (e) {
      if (!String((e as Error).message).includes('BUSYGROUP')) throw e;
    }
    const reader = this.redis.duplicate();
    await this.ready(reader);
    this.serving = true;
    // First what was delivered to this node but never acknowledged (a previous agent died).
    let cursor = '0';
    void (async () => {
      while (this.serving) {
        let res: [string, [string, string[]][]][] | null;
        try {
          res = (await reader.xreadgroup(
            'GROUP',
            'agents',
            node,
            'COUNT',
            16,
            'BLOCK',
            1000,
            'STREAMS',
            stream,
            cursor,
          )) as typeof res;
        } catch {
          if (!this.serving) break;
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        const entries = res?.[0]?.[1] ?? [];
        if (cursor === '0' && entries.length === 0) cursor = '>';
        for (const [entryId, fields] of entries) {
          void this.handleOne(stream, entryId, fieldMap(fields), handler);
        }
        if (cursor === '0' && entries.length > 0) cursor = entries.at(-1)![0];
      }
      reader.disconnect();
    })();
  }

  private async handleOne(
    stream: string,
    entryId: string,
    f: Record<string, string>,
    handler: CommandHandler,
  ): Promise<void> {
    const id = f.id ?? entryId;
    const doneKey = this.key.done(id);
    let reply = await this.ready()
      .then(() => this.redis.get(doneKey))
      .catch(() => null);
    if (!reply) {
      try {
        const result = await handler(f.method ?? '', JSON.parse(f.params ?? 'null'));
        reply = JSON.stringify({ result: result ?? null });
      } catch (e) {
        reply = JSON.stringify({ error: errorMessage(e).split('\n')[0] });
      }
      await this.redis.set(doneKey, reply, 'EX', 3600).catch(() => undefined);
    }
    await this.redis
      .multi()
      .rpush(this.key.reply(id), reply)
      .expire(this.key.reply(id), 120)
      .xack(stream, 'agents', entryId)
      .exec()
      .catch(() => undefined);
  }

  /** A clean shutdown: the node leaves the registry instead of showing up as lost. */
  async leave(node: string): Promise<void> {
    await this.redis.multi().del(this.key.node(node)).hdel(this.key.nodes(), node).exec();
  }

  async close(): Promise<void> {
    this.serving = false;
    this.blocking?.disconnect();
    this.redis.disconnect();
  }

  toString(): string {
    return this.url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
  }
}
