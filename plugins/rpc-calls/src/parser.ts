import {
  diagnostic,
  note,
  WORKER_READY_LINE,
  type ParseNote,
  type ParseContext,
  type ParseResult,
  type Parser,
  type TraceRecord,
} from '@scalpels/core';
import { Quantiles } from './quantiles.js';
import { LATENCY_BUCKETS_MS } from './schema.js';
import type { WireMessage, WireReady, WireTraffic } from './wire.js';
import type { Options } from './options.js';

/** Bytes to the broker with no traced message beyond which the tracer says so (heartbeats are a few bytes a second). */
const UNDECODED_BYTES = 64 << 10;

export type MessageKind = 'call' | 'cast' | 'fanout' | 'reply' | 'notification' | 'other';

interface PendingCall {
  key: string;
  ts: number;
  /** The broker's entry time of the call, when the broker stamps messages. */
  brokerTs?: number;
  deadline: number;
  /** `_timeout` in ms: heartbeats from the server push the deadline by this much. */
  monitorMs?: number;
  bytes: number;
  data: Record<string, unknown>;
}

/** Replies to calls that were not seen (sent before the tracer started) are grouped here. */
export const UNMATCHED = '(unmatched)';
/** How many finished call ids are remembered, to tell a late second reply message from a stray one. */
const FINISHED_MEMORY = 10_000;
/** How long a reply waits for its call's trace copy before it counts as unmatched. */
const ORPHAN_WAIT_MS = 2000;

/** Method key of a message: `exchange/topic.method`, `exchange/topic:event_type` for notifications. */
export function classify(m: WireMessage): {
  kind: MessageKind;
  key: string;
  topic: string;
  server?: string;
} {
  const o = m.oslo;
  const rk = m.routingKeys[0] ?? '';
  const fanoutExchange = m.exchange.endsWith('_fanout');
  const dot = rk.indexOf('.');
  let topic = dot < 0 ? rk : rk.slice(0, dot);
  const server = dot < 0 ? undefined : rk.slice(dot + 1);
  if (fanoutExchange) topic = m.exchange.slice(0, -'_fanout'.length);
  if (!o) return { kind: 'other', key: m.exchange, topic };
  if (o.isReply) return { kind: 'reply', key: UNMATCHED, topic };
  if (o.method !== undefined) {
    const key = `${m.exchange}/${topic}.${o.method}`;
    if (o.msgId !== undefined) return { kind: 'call', key, topic, server };
    return { kind: fanoutExchange ? 'fanout' : 'cast', key, topic, server };
  }
  if (o.eventType !== undefined)
    return { kind: 'notification', key: `${m.exchange}/${rk}:${o.eventType}`, topic: rk };
  return { kind: 'other', key: m.exchange, topic };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/**
 * oslo.messaging before reply queues (no `_reply_q` on the call) sent a reply without `_msg_id`
 * to a direct exchange named after the call's msg id: take the id from there.
 */
function withReplyId(m: WireMessage): WireMessage {
  if (m.oslo?.msgId !== undefined) return m;
  const destination = m.exchange || m.routingKeys[0] || '';
  return /^[0-9a-f]{32}$/.test(destination) ? { ...m, oslo: { ...m.oslo, msgId: destination } } : m;
}

/**
 * Turns the worker's lines into records. Counts accumulate between the worker's tick lines and
 * are emitted as counter increases at each tick; calls wait for their reply (matched on
 * `_msg_id`) or their deadline.
 */
export class RpcParser implements Parser {
  private readonly counters = new Map<
    string,
    { series: string; labels: Record<string, string>; value: number }
  >();
  private readonly pending = new Map<string, PendingCall>();
  private readonly finished = new Set<string>();
  private readonly latencies = new Map<string, Quantiles>();
  private readonly latencyChanged = new Set<string>();
  /** Publish time of messages by `_unique_id`, to measure how long a delivered message waited. */
  private readonly published = new Map<string, number>();
  /** How long requests waited in their queue (publish to delivery), per method key (option deliver). */
  private readonly queueWaits = new Map<string, Quantiles>();
  private readonly queueWaitChanged = new Set<string>();
  private lastPending = -1;
  private messages = 0;
  private trafficBytes = 0;
  private trafficPort = 0;
  private vhost: string | undefined;
  private otherVhosts: string[] = [];
  private lastTs = 0;
  private readonly events: boolean;
  private readonly deliver: boolean;
  private readonly callTimeoutMs: number;

  constructor(ctx: Pick<ParseContext<Options>, 'options'>) {
    this.events = ctx.options.events;
    this.deliver = ctx.options.deliver;
    this.callTimeoutMs = ctx.options['call-timeout'];
  }

  line(text: string): ParseResult {
    if (text === WORKER_READY_LINE) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return diagnostic(`not a JSON line: ${text.slice(0, 80)}`);
    }
    if (typeof parsed !== 'object' || parsed === null)
      return diagnostic('line is not a JSON object');
    const line = parsed as { type?: unknown; ts?: unknown };
    if (typeof line.ts !== 'number' || !Number.isFinite(line.ts))
      return diagnostic('line without a numeric ts');
    switch (line.type) {
      case 'ready': {
        const r = parsed as WireReady;
        if (typeof r.vhost === 'string') this.vhost = r.vhost;
        if (Array.isArray(r.otherVhosts)) this.otherVhosts = r.otherVhosts.map(String);
        return null;
      }
      case 'tick':
        return this.tick(line.ts);
      case 'traffic':
        return this.traffic(parsed as WireTraffic);
      case 'backlog': {
        const messages = (parsed as { messages?: unknown }).messages;
        if (typeof messages !== 'number') return diagnostic('backlog line without messages');
        return { kind: 'sample', series: 'rpc.trace.backlog', value: messages, ts: line.ts };
      }
      case 'msg': {
        const m = parsed as WireMessage;
        if (
          typeof m.exchange !== 'string' ||
          !Array.isArray(m.routingKeys) ||
          typeof m.bytes !== 'number'
        )
          return diagnostic('message line without exchange, routingKeys or bytes');
        this.messages++;
        return this.message(m);
      }
      default:
        return diagnostic(`unknown line type ${JSON.stringify(line.type)}`);
    }
  }

  end(): ParseResult {
    this.settleOrphans(undefined);
    const out = this.expire(this.lastTs);
    // Calls still waiting when the tracer stops: neither answered nor timed out.
    if (this.events)
      for (const [msgId, call] of this.pending)
        out.push(this.callEvent(msgId, call, 'pending', undefined, {}));
    this.flush(this.lastTs, out);
    return [...out, ...this.notes()];
  }

  /** What the reader must know: traffic that nothing decoded, vhosts not traced. */
  private notes(): ParseNote[] {
    const out: ParseNote[] = [];
    const vhost = this.vhost ?? '?';
    if (this.messages === 0 && this.trafficBytes > UNDECODED_BYTES)
      out.push(
        note(
          `port ${this.trafficPort} carried ${this.trafficBytes} bytes to the broker but no message was traced on vhost ${vhost}: the clients publish on another vhost (rabbitmqctl list_vhosts; set rpc-calls.vhost)`,
        ),
      );
    if (this.otherVhosts.length > 0)
      out.push(
        note(
          `the services also use vhost${this.otherVhosts.length > 1 ? 's' : ''} ${this.otherVhosts.join(', ')} (transport_url), not traced: run another rpc-calls tracer with rpc-calls.vhost=${this.otherVhosts[0]}`,
        ),
      );
    return out;
  }

  private count(series: string, labels: Record<string, string>, by = 1): void {
    const id = `${series}\0${JSON.stringify(labels)}`;
    const c = this.counters.get(id);
    if (c) c.value += by;
    else this.counters.set(id, { series, labels, value: by });
  }

  private message(m: WireMessage): TraceRecord[] {
    this.lastTs = Math.max(this.lastTs, m.ts);
    // Deadlines are checked at ticks (and against a reply's own time), not at every message.
    const out: TraceRecord[] = [];
    const c = classify(m);
    const o = m.oslo;
    if (m.dir === 'deliver') {
      const key =
        c.kind === 'reply' ? (this.replyKey(withReplyId(m).oslo?.msgId) ?? UNMATCHED) : c.key;
      this.count('rpc.deliveries', { method: key, kind: c.kind });
      const sent = o?.uniqueId !== undefined ? this.published.get(o.uniqueId) : undefined;
      if (sent !== undefined && (c.kind === 'call' || c.kind === 'cast' || c.kind === 'fanout')) {
        let q = this.queueWaits.get(key);
        if (!q) this.queueWaits.set(key, (q = new Quantiles()));
        q.add(Math.max(0, m.ts - sent));
        this.queueWaitChanged.add(key);
      }
      if (this.events) {
        out.push({
          kind: 'event',
          type: 'rpc.delivery',
          key,
          ts: m.ts,
          ...(sent !== undefined ? { durationMs: round3(m.ts - sent) } : {}),
          value: m.bytes,
          data: { queue: m.queues[0], kind: c.kind },
        });
      }
      return out;
    }
    if ((this.events || this.deliver) && o?.uniqueId !== undefined)
      this.rememberPublish(o.uniqueId, m.ts);
    switch (c.kind) {
      case 'call': {
        this.count('rpc.calls', { method: c.key });
        this.count('rpc.bytes', { method: c.key, kind: 'call' }, m.bytes);
        const monitorMs =
          o?.timeoutS !== undefined && o.timeoutS > 0 ? o.timeoutS * 1000 : undefined;
        const limits = [monitorMs, m.expirationMs].filter(
          (x): x is number => x !== undefined && x > 0,
        );
        const timeoutMs = limits.length > 0 ? Math.min(...limits) : this.callTimeoutMs;
        this.pending.set(o!.msgId!, {
          key: c.key,
          ts: m.ts,
          ...(m.brokerTs !== undefined ? { brokerTs: m.brokerTs } : {}),
          deadline: m.ts + timeoutMs,
          monitorMs,
          bytes: m.bytes,
          data: this.commonData(m, c.server),
        });
        const early = this.orphans.get(o!.msgId!);
        if (early) {
          this.orphans.delete(o!.msgId!);
          // Stamped a hair before the call: the latency is then 0, not negative.
          for (const r of early) this.reply({ ...r, ts: Math.max(r.ts, m.ts) }, out);
        }
        break;
      }
      case 'cast':
      case 'fanout': {
        this.count(c.kind === 'cast' ? 'rpc.casts' : 'rpc.fanouts', { method: c.key });
        this.count('rpc.bytes', { method: c.key, kind: c.kind }, m.bytes);
        if (this.events)
          out.push({
            kind: 'event',
            type: 'rpc.cast',
            key: c.key,
            ts: m.ts,
            value: m.bytes,
            data: {
              ...this.commonData(m, c.server),
              ...(c.kind === 'fanout' ? { fanout: true } : {}),
            },
          });
        break;
      }
      case 'reply':
        this.reply(m, out);
        break;
      case 'notification': {
        this.count('rpc.notifications', { method: c.key });
        this.count('rpc.bytes', { method: c.key, kind: 'notification' }, m.bytes);
        if (this.events)
          out.push({
            kind: 'event',
            type: 'rpc.notification',
            key: c.key,
            ts: m.ts,
            value: m.bytes,
            data: {
              publisherId: o?.publisherId,
              priority: o?.priority,
              ...this.commonData(m, undefined),
            },
          });
        break;
      }
      case 'other':
        this.count('rpc.other', { exchange: m.exchange });
        this.count('rpc.bytes', { method: c.key, kind: 'other' }, m.bytes);
        break;
    }
    return out;
  }

  private reply(received: WireMessage, out: TraceRecord[]): void {
    const m = withReplyId(received);
    const o = m.oslo!;
    const call = o.msgId !== undefined ? this.pending.get(o.msgId) : undefined;
    if (!call) {
      if (o.msgId !== undefined && this.finished.has(o.msgId)) {
        // The closing message of an already answered call (older oslo.messaging sends the
        // result, then a separate `ending` message) only adds bytes.
        this.count('rpc.bytes', { method: this.replyKey(o.msgId)!, kind: 'reply' }, m.bytes);
        return;
      }
      if (o.msgId !== undefined) {
        // The trace copies of a call and of its reply come from different channels, so a fast
        // reply can overtake its call on the trace queue: keep it a moment for the call.
        const early = this.orphans.get(o.msgId);
        if (early) early.push(m);
        else this.orphans.set(o.msgId, [m]);
        return;
      }
      this.unmatched(m);
      return;
    }
    this.count('rpc.bytes', { method: call.key, kind: 'reply' }, m.bytes);
    const heartbeat = !o.ending && !o.hasResult && !o.failure;
    if (heartbeat) {
      // A call-monitor heartbeat (or the first half of an old-style reply with a None result):
      // the server is alive, so the caller keeps waiting.
      if (call.monitorMs !== undefined)
        call.deadline = Math.max(call.deadline, m.ts + call.monitorMs);
      call.data.replyBytes = ((call.data.replyBytes as number | undefined) ?? 0) + m.bytes;
      return;
    }
    if (m.ts > call.deadline) {
      // Answered after the caller gave up: the caller saw a timeout.
      this.timeout(o.msgId!, call, out);
      return;
    }
    // The broker's clock when it stamps both messages: the time the reply entered the broker
    // minus the time the call did, whatever delayed the trace copies on their way to this
    // tracer. Otherwise the tracer's receive times, which a stalled tracer skews.
    const brokerClock = call.brokerTs !== undefined && m.brokerTs !== undefined;
    const latency = brokerClock ? Math.max(0, m.brokerTs! - call.brokerTs!) : m.ts - call.ts;
    this.count('rpc.replies', { method: call.key });
    if (o.failure)
      this.count('rpc.failures', { method: call.key, exception: o.failure.class ?? 'unknown' });
    this.observeLatency(call.key, latency);
    this.finish(o.msgId!, call);
    if (this.events) {
      const replyBytes = ((call.data.replyBytes as number | undefined) ?? 0) + m.bytes;
      out.push(
        this.callEvent(o.msgId!, call, o.failure ? 'failure' : 'reply', latency, {
          replyBytes,
          clock: brokerClock ? 'broker' : 'tracer',
          ...(o.failure ? { exception: o.failure.class } : {}),
        }),
      );
    }
  }

  private finishedKeys = new Map<string, string>();
  /** Replies seen before their call, by `_msg_id`. */
  private readonly orphans = new Map<string, WireMessage[]>();

  private unmatched(m: WireMessage): void {
    this.count('rpc.replies', { method: UNMATCHED });
    if (m.oslo?.failure)
      this.count('rpc.failures', {
        method: UNMATCHED,
        exception: m.oslo.failure.class ?? 'unknown',
      });
    this.count('rpc.bytes', { method: UNMATCHED, kind: 'reply' }, m.bytes);
  }

  /** Replies still without their call after ORPHAN_WAIT_MS (or at the end) answered calls we never saw. */
  private settleOrphans(ts: number | undefined): void {
    for (const [msgId, replies] of this.orphans) {
      if (ts !== undefined && replies[0]!.ts + ORPHAN_WAIT_MS > ts) continue;
      this.orphans.delete(msgId);
      const last = replies.at(-1)!;
      this.unmatched(last);
      for (const r of replies.slice(0, -1))
        this.count('rpc.bytes', { method: UNMATCHED, kind: 'reply' }, r.bytes);
    }
  }

  private finish(msgId: string, call: PendingCall): void {
    this.pending.delete(msgId);
    this.finished.add(msgId);
    this.finishedKeys.set(msgId, call.key);
    if (this.finished.size > FINISHED_MEMORY) {
      const oldest = this.finished.values().next().value!;
      this.finished.delete(oldest);
      this.finishedKeys.delete(oldest);
    }
  }

  private replyKey(msgId: string | undefined): string | undefined {
    if (msgId === undefined) return undefined;
    return this.pending.get(msgId)?.key ?? this.finishedKeys.get(msgId);
  }

  private rememberPublish(uniqueId: string, ts: number): void {
    this.published.set(uniqueId, ts);
    if (this.published.size > FINISHED_MEMORY)
      this.published.delete(this.published.keys().next().value!);
  }

  private commonData(m: WireMessage, server: string | undefined): Record<string, unknown> {
    const o = m.oslo;
    const ctx = o?.context ?? {};
    const data: Record<string, unknown> = {};
    if (ctx.request_id !== undefined) data.requestId = ctx.request_id;
    if (ctx.global_request_id !== undefined && ctx.global_request_id !== null)
      data.globalRequestId = ctx.global_request_id;
    for (const [k, v] of Object.entries(ctx))
      if (k !== 'request_id' && k !== 'global_request_id') data[`context.${k}`] = v;
    if (o?.msgId !== undefined) data.msgId = o.msgId;
    if (server !== undefined && server !== '') data.server = server;
    if (o?.namespace !== undefined) data.namespace = o.namespace;
    if (o?.version !== undefined) data.version = o.version;
    if (o?.argNames !== undefined) data.args = o.argNames;
    if (m.user !== undefined) data.user = m.user;
    if (m.connection !== undefined) data.connection = m.connection;
    return data;
  }

  private callEvent(
    msgId: string,
    call: PendingCall,
    outcome: 'reply' | 'failure' | 'timeout' | 'pending',
    latency: number | undefined,
    extra: Record<string, unknown>,
  ): TraceRecord {
    return {
      kind: 'event',
      type: 'rpc.call',
      key: call.key,
      ts: call.ts,
      ...(latency !== undefined ? { durationMs: round3(latency) } : {}),
      value: call.bytes,
      data: { outcome, ...call.data, msgId, ...extra },
    };
  }

  private observeLatency(key: string, latency: number): void {
    let q = this.latencies.get(key);
    if (!q) this.latencies.set(key, (q = new Quantiles()));
    q.add(latency);
    this.latencyChanged.add(key);
    for (const le of LATENCY_BUCKETS_MS)
      if (latency <= le) this.count('rpc.latency', { method: key, le: String(le) });
    this.count('rpc.latency', { method: key, le: '+Inf' });
  }

  /** Calls whose deadline passed by `ts` become timeouts. */
  private expire(ts: number): TraceRecord[] {
    const out: TraceRecord[] = [];
    for (const [msgId, call] of this.pending)
      if (call.deadline <= ts) this.timeout(msgId, call, out);
    return out;
  }

  private timeout(msgId: string, call: PendingCall, out: TraceRecord[]): void {
    this.count('rpc.timeouts', { method: call.key });
    this.finish(msgId, call);
    if (this.events) out.push(this.callEvent(msgId, call, 'timeout', undefined, {}));
  }

  private tick(ts: number): TraceRecord[] {
    this.lastTs = Math.max(this.lastTs, ts);
    this.settleOrphans(ts);
    const out = this.expire(ts);
    this.flush(ts, out);
    return out;
  }

  private flush(ts: number, out: TraceRecord[]): void {
    for (const c of this.counters.values())
      if (c.value !== 0)
        out.push({ kind: 'sample', series: c.series, labels: c.labels, value: c.value, ts });
    this.counters.clear();
    for (const key of this.latencyChanged) {
      const q = this.latencies.get(key)!;
      for (const p of [50, 95, 99] as const)
        out.push({
          kind: 'sample',
          series: `rpc.latency.p${p}`,
          labels: { method: key },
          value: round3(q.percentile(p)!),
          ts,
        });
    }
    this.latencyChanged.clear();
    for (const key of this.queueWaitChanged) {
      const q = this.queueWaits.get(key)!;
      for (const p of [50, 95] as const)
        out.push({
          kind: 'sample',
          series: `rpc.queue_wait.p${p}`,
          labels: { method: key },
          value: round3(q.percentile(p)!),
          ts,
        });
    }
    this.queueWaitChanged.clear();
    if (this.pending.size !== this.lastPending) {
      this.lastPending = this.pending.size;
      out.push({ kind: 'sample', series: 'rpc.pending', value: this.pending.size, ts });
    }
  }

  private traffic(t: WireTraffic): TraceRecord[] {
    if (typeof t.port !== 'number') return [];
    this.trafficPort = t.port;
    if (typeof t.bytesToBroker === 'number') this.trafficBytes += t.bytesToBroker;
    const port = String(t.port);
    const s = (series: string, direction: string | undefined, value: number): TraceRecord => ({
      kind: 'sample',
      series,
      labels: direction ? { port, direction } : { port },
      value,
      ts: t.ts,
    });
    const out = [
      s('rpc.traffic.bytes', 'to-broker', t.bytesToBroker),
      s('rpc.traffic.bytes', 'from-broker', t.bytesFromBroker),
      s('rpc.traffic.packets', 'to-broker', t.packetsToBroker),
      s('rpc.traffic.packets', 'from-broker', t.packetsFromBroker),
    ];
    if (typeof t.connections === 'number')
      out.push(s('rpc.traffic.connections', undefined, t.connections));
    return out;
  }
}

export function createParser(ctx: ParseContext<Options>): Parser {
  return new RpcParser(ctx);
}
