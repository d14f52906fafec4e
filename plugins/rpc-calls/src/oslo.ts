import type { OsloSummary, WireMessage } from './wire.js';

/** Context keys kept by default (after the `_context_` prefix). Everything else is dropped. */
export const DEFAULT_CONTEXT_FIELDS: readonly string[] = [
  'request_id',
  'global_request_id',
  'user_id',
  'project_id',
  'user_name',
  'project_name',
];

/** Context keys that are never kept, even when asked for: tokens, passwords, keys, credentials. */
export const SECRET_KEY = /token|passw|secret|credential|auth|key|cert|signature|cookie|session/i;

export const REDACTED = '[redacted]';

/** The firehose headers RabbitMQ adds to each traced message (see the rabbitmq firehose docs). */
export interface FirehoseHeaders {
  exchange_name?: unknown;
  routing_keys?: unknown;
  properties?: unknown;
  node?: unknown;
  vhost?: unknown;
  connection?: unknown;
  user?: unknown;
  routed_queues?: unknown;
}

const str = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : undefined;
const strList = (v: unknown): string[] =>
  Array.isArray(v) ? v.map(str).filter((s): s is string => s !== undefined) : [];

/**
 * Reduces one traced message to the wire line the worker prints: firehose headers, body size and
 * the oslo.messaging fields worth knowing. Argument values, results and secrets are dropped here.
 */
export function summarizeTraced(
  ts: number,
  routingKey: string,
  headers: FirehoseHeaders,
  body: Buffer,
  contextFields: readonly string[] = DEFAULT_CONTEXT_FIELDS,
): WireMessage {
  const dir = routingKey.startsWith('deliver.') ? 'deliver' : 'publish';
  const props = (headers.properties ?? {}) as Record<string, unknown>;
  const expiration = Number(str(props.expiration) ?? props.expiration);
  const msg: WireMessage = {
    type: 'msg',
    ts,
    dir,
    exchange: str(headers.exchange_name) ?? '',
    routingKeys: strList(headers.routing_keys),
    // A deliver trace names its queue in the routing key only.
    queues:
      dir === 'deliver' ? [routingKey.slice('deliver.'.length)] : strList(headers.routed_queues),
    node: str(headers.node),
    vhost: str(headers.vhost),
    connection: str(headers.connection),
    user: str(headers.user),
    bytes: body.length,
  };
  if (Number.isFinite(expiration) && expiration >= 0) msg.expirationMs = expiration;
  const brokerTs = brokerTimestamp(props.headers);
  if (brokerTs !== undefined) msg.brokerTs = brokerTs;
  const decoded = decodeOslo(body, contextFields);
  if ('error' in decoded) msg.undecoded = decoded.error;
  else msg.oslo = decoded.summary;
  return msg;
}

/**
 * The broker's entry time stamp of a message (`timestamp_in_ms`, an AMQP long), when the broker
 * sets one; a value that is not a plausible epoch time in ms is ignored.
 */
export function brokerTimestamp(headers: unknown): number | undefined {
  if (!isObject(headers)) return undefined;
  const v = headers.timestamp_in_ms;
  const n =
    typeof v === 'number'
      ? v
      : typeof v === 'bigint'
        ? Number(v)
        : typeof v === 'string' && /^\d+$/.test(v)
          ? Number(v)
          : NaN;
  // Between 2001 and 2286: anything else is not a time stamp in ms.
  return Number.isSafeInteger(n) && n >= 1e12 && n < 1e13 ? n : undefined;
}

/** Decodes an oslo.messaging body: the 2.0 envelope (`oslo.version`, `oslo.message`) or a bare dict. */
export function decodeOslo(
  body: Buffer,
  contextFields: readonly string[] = DEFAULT_CONTEXT_FIELDS,
): { summary: OsloSummary } | { error: string } {
  let outer: unknown;
  try {
    outer = JSON.parse(body.toString('utf8'));
  } catch {
    return { error: 'body is not JSON' };
  }
  if (!isObject(outer)) return { error: 'body is not a JSON object' };
  let inner: Record<string, unknown> = outer;
  let envelope: string | undefined;
  if ('oslo.version' in outer || 'oslo.message' in outer) {
    envelope = String(outer['oslo.version']);
    const text = outer['oslo.message'];
    if (typeof text !== 'string') return { error: 'oslo envelope without a string oslo.message' };
    try {
      const parsed: unknown = JSON.parse(text);
      if (!isObject(parsed)) return { error: 'oslo.message is not a JSON object' };
      inner = parsed;
    } catch {
      return { error: 'oslo.message is not JSON' };
    }
  }
  const s: OsloSummary = {};
  if (envelope !== undefined) s.envelope = envelope;
  const text = (k: string): string | undefined => {
    const v = inner[k];
    return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
  };
  const method = text('method');
  if (method !== undefined) s.method = method;
  const namespace = text('namespace');
  if (namespace !== undefined) s.namespace = namespace;
  const version = text('version');
  if (version !== undefined) s.version = version;
  const msgId = text('_msg_id');
  if (msgId !== undefined) s.msgId = msgId;
  const replyQ = text('_reply_q');
  if (replyQ !== undefined) s.replyQ = replyQ;
  if (typeof inner._timeout === 'number') s.timeoutS = inner._timeout;
  const uniqueId = text('_unique_id');
  if (uniqueId !== undefined) s.uniqueId = uniqueId;
  if (method === undefined && ('result' in inner || 'failure' in inner || 'ending' in inner)) {
    s.isReply = true;
    s.ending = inner.ending === true;
    s.hasResult = inner.result !== undefined && inner.result !== null;
    if (inner.failure !== undefined && inner.failure !== null)
      s.failure = failureSummary(inner.failure);
  }
  const eventType = text('event_type');
  if (eventType !== undefined) {
    s.eventType = eventType;
    const publisher = text('publisher_id');
    if (publisher !== undefined) s.publisherId = publisher;
    const priority = text('priority');
    if (priority !== undefined) s.priority = priority;
  }
  if (isObject(inner.args)) s.argNames = Object.keys(inner.args);
  const context = pickContext(inner, contextFields);
  if (context) s.context = context;
  return { summary: s };
}

/** Keeps the asked-for `_context_*` keys; anything that looks like a secret is replaced. */
function pickContext(
  inner: Record<string, unknown>,
  fields: readonly string[],
): Record<string, string | number | boolean | null> | undefined {
  let out: Record<string, string | number | boolean | null> | undefined;
  for (const field of fields) {
    const key = `_context_${field}`;
    if (!(key in inner)) continue;
    const v = inner[key];
    out ??= {};
    if (SECRET_KEY.test(field)) out[field] = REDACTED;
    else if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      out[field] = v;
    else out[field] = REDACTED;
  }
  return out;
}

/** A remote failure is a JSON string with class, module, message and traceback; keep only class and module. */
function failureSummary(failure: unknown): { class?: string; module?: string } {
  let f: unknown = failure;
  if (typeof failure === 'string') {
    try {
      f = JSON.parse(failure);
    } catch {
      return {};
    }
  }
  if (!isObject(f)) return {};
  const out: { class?: string; module?: string } = {};
  if (typeof f.class === 'string') out.class = f.class;
  if (typeof f.module === 'string') out.module = f.module;
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
