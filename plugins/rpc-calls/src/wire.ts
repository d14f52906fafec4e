/**
 * The line format between the worker and the parser: one JSON object per stdout line. The worker
 * already reduced each traced message to these fields, so message bodies (arguments, results,
 * tokens) never leave the worker process.
 */

/** One message seen on the firehose (`amq.rabbitmq.trace`). */
export interface WireMessage {
  type: 'msg';
  /** Wall-clock milliseconds (fractional) when the worker received the traced copy. */
  ts: number;
  /**
   * Wall-clock milliseconds when the message entered the broker, from the broker's own clock: the
   * `timestamp_in_ms` header that RabbitMQ 3.12+ sets with
   * `message_interceptors.incoming.set_header_timestamp` (3.6-3.11: the rabbitmq_message_timestamp
   * plugin), carried in the trace copy's `properties`. Absent when the broker does not stamp.
   */
  brokerTs?: number;
  /** `publish`: a client published it; `deliver`: the broker handed it to a consumer. */
  dir: 'publish' | 'deliver';
  exchange: string;
  routingKeys: string[];
  /** For `deliver`: the queue it was delivered from. For `publish`: the queues it was routed to. */
  queues: string[];
  node?: string;
  vhost?: string;
  connection?: string;
  user?: string;
  /** Size of the AMQP body in bytes. */
  bytes: number;
  /** AMQP `expiration` property in ms, when set (oslo.messaging sets it to a call's timeout). */
  expirationMs?: number;
  /** The decoded oslo.messaging content; absent when the body is not oslo.messaging JSON. */
  oslo?: OsloSummary;
  /** Why the body could not be decoded. */
  undecoded?: string;
}

/** What the worker keeps of an oslo.messaging message. Only whitelisted fields; never argument values. */
export interface OsloSummary {
  /** `oslo.version` of the 2.0 envelope; absent for messages sent without an envelope. */
  envelope?: string;
  method?: string;
  namespace?: string;
  version?: string;
  /** `_msg_id`: set on calls and on their replies. */
  msgId?: string;
  /** `_reply_q`: set on calls. */
  replyQ?: string;
  /** `_timeout` (seconds): call monitor timeout, when the caller set one. */
  timeoutS?: number;
  uniqueId?: string;
  /** Reply fields. */
  isReply?: boolean;
  ending?: boolean;
  hasResult?: boolean;
  /** For failed replies: the remote exception's class and module (never its message or traceback). */
  failure?: { class?: string; module?: string };
  /** Notification fields. */
  eventType?: string;
  publisherId?: string;
  priority?: string;
  /** Names of the call's arguments (values are never kept). */
  argNames?: string[];
  /** Whitelisted request context (`_context_*` without the prefix), secrets redacted. */
  context?: Record<string, string | number | boolean | null>;
}

export interface WireTick {
  type: 'tick';
  ts: number;
}

export interface WireReady {
  type: 'ready';
  ts: number;
  queue: string;
  vhost: string;
  bindings: string[];
  /** Other vhosts the services of this node use (transport_url), not traced by this tracer. */
  otherVhosts?: string[];
}

/** Increases of TCP traffic to and from the broker port since the previous sample. */
export interface WireTraffic {
  type: 'traffic';
  ts: number;
  port: number;
  bytesToBroker: number;
  bytesFromBroker: number;
  packetsToBroker: number;
  packetsFromBroker: number;
  /** Established connections (tracer's own excluded), when `ss` is available. */
  connections?: number;
}

/** Messages waiting in the trace queue (the worker is behind the broker by this much). */
export interface WireBacklog {
  type: 'backlog';
  ts: number;
  messages: number;
}

export type WireLine = WireMessage | WireTick | WireReady | WireTraffic | WireBacklog;

/** The worker's configuration, passed in an environment variable (never argv: it is readable by all). */
export interface WorkerConfig {
  host: string;
  port: number;
  vhost: string;
  /** Other vhosts the services use (see vhosts.ts), said in the tracer's note. */
  otherVhosts?: string[];
  user: string;
  queue: string;
  deliver: boolean;
  intervalMs: number;
  /** Longest the trace queue may grow; beyond it the broker drops the oldest trace copies. */
  maxBacklog: number;
  contextFields: string[];
  /** How TCP traffic to the broker port is measured; absent: not at all. */
  traffic?: TrafficConfig;
  tls: boolean;
}

export type TrafficConfig =
  /** nftables counters in a table that setup created (exact). */
  | { mode: 'nft'; nft: string; table: string; port: number; ss?: string }
  /** Socket counters sampled with `ss` (misses connections shorter than the interval). */
  | { mode: 'ss'; ss: string; port: number };

export const CONFIG_ENV = 'SCALPELS_RPC_CALLS_CONFIG';
export const PASSWORD_ENV = 'SCALPELS_RPC_CALLS_PASSWORD';
