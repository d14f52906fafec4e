import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis as RedisClient } from 'ioredis';
import { UserError, errorMessage } from '../errors.js';
import { connectRedis, ensureReady, fieldMap } from '../store/redis.js';
import { RefusalLog } from '../text-safety.js';
import { CLUSTER_MAX_SKEW_MS, signNodeEntry, verifyNodeEntry, type ClusterKey } from './signing.js';

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
 * keep no state: everything is in Redis. Every command and every answer is signed with the
 * cluster key (see signing.ts): whoever can write to Redis without the key controls nothing.
 */
export class Cluster {
  readonly redis: RedisClient;
  private readonly P: string;
  private readonly url: string;
  private blocking: RedisClient | undefined;
  private serving = false;
  /** Request ids this agent has taken, with when it may forget them (past the freshness window). */
  private readonly seenIds = new Map<string, number>();
  private refusals: RefusalLog | undefined;
  private readonly from = `${hostname()}:${process.pid}`;

  constructor(
    redisUrl: string,
    private readonly signer: ClusterKey,
    private readonly maxSkewMs = CLUSTER_MAX_SKEW_MS,
  ) {
    if (!signer) throw new UserError('cluster mode needs a cluster key (--cluster-key-file F)');
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
    seen: (node: string, id: string): string => `${this.P}seen:${node}:${id}`,
  };

  private ready(r: RedisClient = this.redis): Promise<void> {
    return ensureReady(r);
  }

  /** Publishes a heartbeat; the key expires after 2.5 periods, so a dead node is lost within 3. */
  async heartbeat(info: NodeInfo): Promise<void> {
    await this.ready();
    // Signed: whoever writes to Redis cannot make a node look alive (or exist) to front ends.
    const entry = signNodeEntry(this.signer, JSON.stringify(info));
    await this.redis
      .multi()
      .set(this.key.node(info.node), entry, 'PX', Math.round(info.periodMs * 2.5))
      .hset(this.key.nodes(), info.node, entry)
      .exec();
  }

  /**
   * Every node ever registered, alive or lost, with its heartbeat age. Entries not signed with
   * the cluster key (written by someone else, or by an older agent) are left out.
   */
  async nodes(): Promise<NodeState[]> {
    await this.ready();
    const all = await this.redis.hgetall(this.key.nodes());
    const names = Object.keys(all).sort();
    if (names.length === 0) return [];
    const live = await this.redis.mget(names.map((n) => this.key.node(n)));
    const now = Date.now();
    const out: NodeState[] = [];
    for (const [i, n] of names.entries()) {
      const liveJson = verifyNodeEntry(this.signer, live[i]);
      const json = liveJson ?? verifyNodeEntry(this.signer, all[n]);
      if (!json) continue;
      const info = JSON.parse(json) as NodeInfo;
      if (info.node !== n) continue;
      out.push({ ...info, alive: liveJson !== undefined, heartbeatAgeMs: now - info.heartbeatAt });
    }
    return out;
  }

  /** Sends a signed command to a node's stream and waits for its signed reply. */
  async send<T>(node: string, method: string, params: unknown, timeoutMs = 60_000): Promise<T> {
    await this.ready();
    const id = `${Date.now().toString(36)}-${randomBytes(12).toString('hex')}`;
    const req = this.signer.signRequest({
      id,
      node,
      method,
      params: JSON.stringify(params ?? null),
      ts: String(Date.now()),
      from: this.from,
    });
    await this.redis.xadd(
      this.key.commands(node),
      'MAXLEN',
      '~',
      '10000',
      '*',
      ...Object.entries(req).flat(),
    );
    // BLPOP blocks its connection: use a second one, made on demand.
    this.blocking ??= this.redis.duplicate();
    await this.ready(this.blocking);
    const deadline = Date.now() + timeoutMs;
    // Anyone can push to a reply list: answers that do not carry this key's signature for this
    // request and node are skipped, and the wait goes on for the real one.
    for (;;) {
      const left = deadline - Date.now();
      const got =
        left > 0
          ? await this.blocking.blpop(this.key.reply(id), Math.max(1, Math.ceil(left / 1000)))
          : null;
      if (!got)
        throw new UserError(
          `node ${node} did not answer ${method} within ${Math.round(timeoutMs / 1000)} s`,
        );
      let answer: unknown;
      try {
        answer = JSON.parse(got[1]);
      } catch {
        continue;
      }
      if (!this.signer.verifyAnswer(answer) || answer.id !== id || answer.node !== node) continue;
      const reply = JSON.parse(answer.body) as { result?: T; error?: string };
      if (reply.error !== undefined) throw new UserError(`node ${node}: ${reply.error}`);
      return reply.result as T;
    }
  }

  /**
   * Agent side: reads this node's command stream through a consumer group, runs each command once
   * (a request re-delivered after a crash gets its stored answer), replies, then acknowledges.
   */
  async serve(
    node: string,
    handler: CommandHandler,
    log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
  ): Promise<void> {
    this.refusals = new RefusalLog(log);
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
          void this.handleOne(node, stream, entryId, fieldMap(fields), handler);
        }
        if (cursor === '0' && entries.length > 0) cursor = entries.at(-1)![0];
      }
      reader.disconnect();
    })();
  }

  /**
   * Checks one stream entry before anything runs: signed with the cluster key, for this node,
   * fresh, and never seen before. A refusal starts nothing, is logged once per source, and is
   * removed from the stream.
   */
  private async admit(
    node: string,
    f: Record<string, string>,
  ): Promise<{ ok: true } | { ok: false; why: string; kind: string; answer?: string }> {
    if (f.sig === undefined) return { ok: false, why: 'unsigned command', kind: 'unsigned' };
    if (!this.signer.verifyRequest(f))
      return { ok: false, why: 'badly signed command', kind: 'bad signature' };
    // From here on the request was made by a key holder: it may be told why it is refused.
    if (f.node !== node)
      return { ok: false, why: `command for node ${f.node}`, kind: 'other node' };
    const ts = Number(f.ts);
    const now = Date.now();
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.maxSkewMs)
      return {
        ok: false,
        kind: 'stale',
        why: `stale command (made ${Math.round((now - ts) / 1000)} s ago; clocks in sync?)`,
        answer: 'refused: the command is stale (is this clock in sync with the front end?)',
      };
    // Replays: an id already taken here is refused, in memory (Redis keys can be deleted by
    // whoever writes to Redis) and in Redis (survives an agent restart).
    for (const [id, until] of this.seenIds) if (until < now) this.seenIds.delete(id);
    if (this.seenIds.has(f.id!)) return { ok: false, why: 'replayed command', kind: 'replay' };
    this.seenIds.set(f.id!, now + 2 * this.maxSkewMs);
    const fresh = await this.redis.set(
      this.key.seen(node, f.id!),
      '1',
      'PX',
      Math.max(3_600_000, 2 * this.maxSkewMs),
      'NX',
    );
    if (fresh === null) return { ok: false, why: 'replayed command', kind: 'replay' };
    return { ok: true };
  }

  private async handleOne(
    node: string,
    stream: string,
    entryId: string,
    f: Record<string, string>,
    handler: CommandHandler,
  ): Promise<void> {
    const id = f.id ?? entryId;
    const doneKey = this.key.done(`${node}:${id}`);
    // A request this agent answered before it died: its stored (signed) answer again, nothing run.
    let reply = await this.ready()
      .then(() => this.redis.get(doneKey))
      .catch(() => null);
    if (!reply) {
      const admitted = await this.admit(node, f).catch((e: unknown) => ({
        ok: false as const,
        why: `cannot check the command: ${errorMessage(e)}`,
        kind: 'error',
        answer: undefined,
      }));
      if (!admitted.ok) {
        // Signed requests name their front end; anything else is one source: Redis itself.
        const source =
          typeof f.from === 'string' && this.signer.verifyRequest(f)
            ? f.from
            : 'a Redis client without the cluster key';
        this.refusals?.refuse(
          source,
          `${admitted.why}${typeof f.method === 'string' ? ` ${f.method}` : ''} from ${source} (stream entry ${entryId})`,
          admitted.kind,
        );
        const multi = this.redis.multi().xack(stream, 'agents', entryId).xdel(stream, entryId);
        if (admitted.answer)
          multi
            .rpush(this.key.reply(id), this.answer(node, id, { error: admitted.answer }))
            .expire(this.key.reply(id), 120);
        await multi.exec().catch(() => undefined);
        return;
      }
      let body: string;
      try {
        const result = await handler(f.method!, JSON.parse(f.params!));
        body = JSON.stringify({ result: result ?? null });
      } catch (e) {
        body = JSON.stringify({ error: errorMessage(e).split('\n')[0] });
      }
      reply = this.answer(node, id, body);
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

  private answer(node: string, id: string, body: string | { error: string }): string {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    return JSON.stringify(this.signer.signAnswer({ id, node, body: text, ts: Date.now() }));
  }

  /** A clean shutdown: the node leaves the registry instead of showing up as lost. */
  async leave(node: string): Promise<void> {
    await this.redis.multi().del(this.key.node(node)).hdel(this.key.nodes(), node).exec();
  }

  async close(): Promise<void> {
    this.serving = false;
    this.refusals?.close();
    this.blocking?.disconnect();
    this.redis.disconnect();
  }

  toString(): string {
    return this.url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@');
  }
}
