/**
 * A minimal oslo.messaging RPC client and server over amqplib, speaking the real wire format of
 * oslo.messaging's rabbit driver: the 2.0 envelope `{"oslo.version": "2.0", "oslo.message": "<json>"}`,
 * calls with `_msg_id`, `_reply_q`, `_timeout` and `_unique_id`, the request context flattened
 * into `_context_*` keys, topic exchanges named after the control exchange, `<topic>_fanout`
 * exchanges for fanout, and replies `{result, failure, ending, _msg_id}` sent through the default
 * exchange to the caller's `reply_<uuid>` queue.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import amqp, { type Channel, type ChannelModel } from 'amqplib';

export const hex = (): string => randomUUID().replaceAll('-', '');

export function envelope(message: Record<string, unknown>): Buffer {
  return Buffer.from(
    JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }),
  );
}

function unwrap(body: Buffer): Record<string, unknown> {
  const outer = JSON.parse(body.toString()) as Record<string, unknown>;
  return JSON.parse(outer['oslo.message'] as string) as Record<string, unknown>;
}

/** A nova-like request context; `auth_token` is what must never reach the store. */
export function context(token: string, requestId = `req-${randomUUID()}`): Record<string, unknown> {
  return {
    auth_token: token,
    user_id: 'u-1f2e',
    project_id: 'p-9a8b',
    request_id: requestId,
    global_request_id: null,
    roles: ['member', 'reader'],
    is_admin: false,
    user_name: 'demo',
    project_name: 'demo',
    read_deleted: 'no',
    service_catalog: [],
    remote_address: '10.0.0.5',
    timestamp: new Date().toISOString(),
  };
}

function packContext(msg: Record<string, unknown>, ctx: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(ctx)) msg[`_context_${k}`] = v;
}

export interface ServerOptions {
  exchange: string;
  topic: string;
  server: string;
  /** Artificial delay before each reply, in ms. */
  delayMs: number;
  /** Methods that answer with a remote exception. */
  failing?: readonly string[];
  /** Methods that never answer. */
  silent?: readonly string[];
}

/** An RPC server: consumes `topic`, `topic.server` and the `topic_fanout` exchange, answers calls. */
export class OsloServer {
  private constructor(
    private readonly conn: ChannelModel,
    readonly received: { method: string; kind: 'call' | 'cast' }[],
  ) {}

  static async start(url: string, o: ServerOptions): Promise<OsloServer> {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const server = new OsloServer(conn, []);
    await ch.assertExchange(o.exchange, 'topic', { durable: false });
    await ch.assertExchange(`${o.topic}_fanout`, 'fanout', { durable: false, autoDelete: true });
    for (const q of [o.topic, `${o.topic}.${o.server}`]) {
      await ch.assertQueue(q, { durable: false });
      await ch.bindQueue(q, o.exchange, q);
    }
    const fanoutQ = `${o.topic}_fanout_${hex()}`;
    await ch.assertQueue(fanoutQ, { exclusive: true, autoDelete: true });
    await ch.bindQueue(fanoutQ, `${o.topic}_fanout`, '');
    const handle = (body: Buffer): void => {
      const msg = unwrap(body);
      const method = msg.method as string;
      const msgId = msg._msg_id as string | undefined;
      server.received.push({ method, kind: msgId ? 'call' : 'cast' });
      if (!msgId || o.silent?.includes(method)) return;
      setTimeout(() => {
        const failing = o.failing?.includes(method);
        const reply = {
          result: failing ? null : { ok: true, method },
          failure: failing
            ? JSON.stringify({
                class: 'InstanceNotFound',
                module: 'nova.exception',
                message: 'Instance 42 could not be found.',
                tb: ['Traceback (most recent call last):\n'],
                args: [],
                kwargs: { instance_id: 42 },
              })
            : null,
          ending: true,
          _msg_id: msgId,
          _unique_id: hex(),
        };
        ch.publish('', msg._reply_q as string, envelope(reply));
      }, o.delayMs);
    };
    for (const q of [o.topic, `${o.topic}.${o.server}`, fanoutQ])
      await ch.consume(q, (m) => m && handle(m.content), { noAck: true });
    return server;
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}

/** An RPC client: calls wait for their reply on the client's `reply_<uuid>` queue. */
export class OsloClient {
  private readonly waiting = new Map<string, (reply: Record<string, unknown>) => void>();

  private constructor(
    private readonly conn: ChannelModel,
    private readonly ch: Channel,
    readonly replyQ: string,
    private readonly exchange: string,
  ) {}

  static async connect(url: string, exchange: string): Promise<OsloClient> {
    const conn = await amqp.connect(url);
    const ch = await conn.createChannel();
    const replyQ = `reply_${hex()}`;
    await ch.assertQueue(replyQ, { durable: false, autoDelete: true });
    const client = new OsloClient(conn, ch, replyQ, exchange);
    await ch.consume(
      replyQ,
      (m) => {
        if (!m) return;
        const reply = unwrap(m.content);
        const id = reply._msg_id as string;
        client.waiting.get(id)?.(reply);
        client.waiting.delete(id);
      },
      { noAck: true },
    );
    return client;
  }

  /** `RPCClient.call`: resolves with the reply, or with `timeout` after `timeoutS`. */
  call(
    target: string,
    method: string,
    args: Record<string, unknown>,
    ctx: Record<string, unknown>,
    timeoutS = 60,
  ): Promise<Record<string, unknown> | 'timeout'> {
    const msgId = hex();
    const msg: Record<string, unknown> = {
      method,
      args,
      version: '6.0',
      _msg_id: msgId,
      _reply_q: this.replyQ,
      _timeout: null,
      _unique_id: hex(),
    };
    packContext(msg, ctx);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(msgId);
        resolve('timeout');
      }, timeoutS * 1000);
      this.waiting.set(msgId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      // oslo's rabbit driver sets the message expiration to the call's timeout.
      this.ch.publish(this.exchange, target, envelope(msg), {
        expiration: String(timeoutS * 1000),
      });
    });
  }

  /** `RPCClient.cast`; with `fanout` it goes to every server of the topic. */
  cast(
    target: string,
    method: string,
    args: Record<string, unknown>,
    ctx: Record<string, unknown>,
    fanout = false,
  ): void {
    const msg: Record<string, unknown> = { method, args, version: '6.0', _unique_id: hex() };
    packContext(msg, ctx);
    if (fanout) this.ch.publish(`${target}_fanout`, '', envelope(msg));
    else this.ch.publish(this.exchange, target, envelope(msg));
  }

  /** A versioned notification (`Notifier` with driver messagingv2). */
  notify(
    topic: string,
    eventType: string,
    payload: Record<string, unknown>,
    ctx: Record<string, unknown>,
  ): void {
    const msg: Record<string, unknown> = {
      message_id: randomUUID(),
      publisher_id: 'compute.host1',
      event_type: eventType,
      priority: 'INFO',
      payload,
      timestamp: new Date().toISOString().replace('T', ' ').replace('Z', ''),
    };
    packContext(msg, ctx);
    this.ch.publish(this.exchange, topic, envelope(msg));
  }

  async flush(): Promise<void> {
    // A round trip on the channel: everything published before is at the broker.
    await this.ch.checkQueue(this.replyQ);
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}

/** A throw-away vhost, so tests never touch the tracing switch of vhosts others use. */
export function createVhost(name: string): void {
  execFileSync('rabbitmqctl', ['-q', 'add_vhost', name]);
  execFileSync('rabbitmqctl', ['-q', 'set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
}

export function deleteVhost(name: string): void {
  execFileSync('rabbitmqctl', ['-q', 'delete_vhost', name]);
}

export function vhostTracing(name: string): boolean {
  const rows = JSON.parse(
    execFileSync('rabbitmqctl', [
      '-q',
      '--formatter',
      'json',
      'list_vhosts',
      'name',
      'tracing',
    ]).toString(),
  ) as { name: string; tracing: boolean }[];
  return rows.find((r) => r.name === name)?.tracing === true;
}

export function vhostQueues(name: string): string[] {
  const rows = JSON.parse(
    execFileSync('rabbitmqctl', [
      '-q',
      '--formatter',
      'json',
      'list_queues',
      '-p',
      name,
      'name',
    ]).toString(),
  ) as { name: string }[];
  return rows.map((r) => r.name);
}

export function amqpUrl(vhost: string): string {
  return `amqp://guest:guest@127.0.0.1:5672/${encodeURIComponent(vhost)}`;
}
