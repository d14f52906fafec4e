import type { Schema } from '@scalpels/core';

/** Upper bounds (ms) of the call latency histogram buckets; `+Inf` closes it. */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000,
];

const perMethod = (what: string): Schema['series'][string] => ({
  kind: 'counter',
  unit: 'count',
  description: `${what}, per method key \`exchange/topic.method\``,
  labels: ['method'],
});

export const schema: Schema = {
  series: {
    'rpc.calls': perMethod(
      'RPC calls published (messages with `_msg_id` and `_reply_q`, waiting for a reply)',
    ),
    'rpc.casts': perMethod('RPC casts published (a method without `_msg_id`: no reply expected)'),
    'rpc.fanouts': perMethod('RPC fanout casts published (to a `<topic>_fanout` exchange)'),
    'rpc.replies': perMethod(
      'Replies matched to a call (one per answered call, failures included); method `(unmatched)` for replies to calls sent before the tracer started',
    ),
    'rpc.failures': {
      kind: 'counter',
      unit: 'count',
      description: 'Replies carrying a remote exception, per method key and exception class',
      labels: ['method', 'exception'],
    },
    'rpc.timeouts': perMethod(
      'Calls without a reply within their timeout (`_timeout`, else the AMQP expiration, else the option call-timeout)',
    ),
    'rpc.notifications': perMethod(
      'Notifications published (`event_type`); key `exchange/topic:event_type`',
    ),
    'rpc.deliveries': {
      kind: 'counter',
      unit: 'count',
      description:
        'Messages delivered to consumers (only with the option deliver), per method key and message kind',
      labels: ['method', 'kind'],
    },
    'rpc.other': {
      kind: 'counter',
      unit: 'count',
      description:
        'Published messages that are not oslo.messaging RPC or notifications, per exchange',
      labels: ['exchange'],
    },
    'rpc.bytes': {
      kind: 'counter',
      unit: 'bytes',
      description:
        'AMQP body bytes published, per method key and kind (call, cast, fanout, reply, notification, other)',
      labels: ['method', 'kind'],
    },
    'rpc.latency': {
      kind: 'histogram',
      unit: 'ms',
      description:
        'Call latency (call published to reply published), cumulative buckets: the count of calls that took at most `le` ms',
      labels: ['method', 'le'],
    },
    'rpc.latency.p50': {
      kind: 'gauge',
      unit: 'ms',
      description: 'Median call latency since the tracer started',
      labels: ['method'],
    },
    'rpc.latency.p95': {
      kind: 'gauge',
      unit: 'ms',
      description: '95th percentile call latency since the tracer started',
      labels: ['method'],
    },
    'rpc.latency.p99': {
      kind: 'gauge',
      unit: 'ms',
      description: '99th percentile call latency since the tracer started',
      labels: ['method'],
    },
    'rpc.queue_wait.p50': {
      kind: 'gauge',
      unit: 'ms',
      description:
        'Median time calls and casts waited in their queue, from publication to delivery to the server (option deliver), since the tracer started',
      labels: ['method'],
    },
    'rpc.queue_wait.p95': {
      kind: 'gauge',
      unit: 'ms',
      description:
        '95th percentile of the time calls and casts waited in their queue (option deliver)',
      labels: ['method'],
    },
    'rpc.pending': {
      kind: 'gauge',
      unit: 'count',
      description: 'Calls waiting for a reply at the time of the sample',
    },
    'rpc.trace.backlog': {
      kind: 'gauge',
      unit: 'count',
      description:
        'Trace copies waiting in the tracer queue; at the option max-backlog the broker drops the oldest and counts come out low',
    },
    'rpc.traffic.bytes': {
      kind: 'counter',
      unit: 'bytes',
      description:
        'Bytes to and from the broker port, tracer connection excluded: IP packet bytes (technique firehose+nft) or TCP payload bytes (firehose+ss)',
      labels: ['port', 'direction'],
    },
    'rpc.traffic.packets': {
      kind: 'counter',
      unit: 'count',
      description: 'TCP packets to and from the broker port, tracer connection excluded',
      labels: ['port', 'direction'],
    },
    'rpc.traffic.connections': {
      kind: 'gauge',
      unit: 'count',
      description:
        'Established TCP connections to the broker port, tracer connection excluded (needs ss)',
      labels: ['port'],
    },
  },
  events: {
    'rpc.call': {
      description:
        'One RPC call, recorded when its reply arrives, when it times out or when the tracer stops; durationMs is the latency',
      key: 'exchange/topic.method',
      valueUnit: 'bytes',
      fields: {
        outcome: 'reply, failure, timeout or pending',
        requestId: 'request id from the context (`_context_request_id`)',
        globalRequestId: 'global request id from the context, when set',
        msgId: '`_msg_id`',
        server: 'target server (routing key after the topic)',
        namespace: 'target namespace',
        version: 'RPC API version',
        replyBytes: 'size of the reply',
        exception: 'remote exception class, for failures',
        args: 'argument names (never their values)',
      },
    },
    'rpc.cast': {
      description: 'One RPC cast or fanout cast',
      key: 'exchange/topic.method',
      valueUnit: 'bytes',
      fields: {
        fanout: 'true for fanout casts',
        requestId: 'request id',
        server: 'target server',
        args: 'argument names',
      },
    },
    'rpc.notification': {
      description: 'One notification',
      key: 'exchange/topic:event_type',
      valueUnit: 'bytes',
      fields: { publisherId: 'publisher_id', priority: 'priority', requestId: 'request id' },
    },
    'rpc.delivery': {
      description:
        'One message delivered to a consumer (option deliver); durationMs is the time it waited since it was published',
      key: 'exchange/topic.method',
      valueUnit: 'bytes',
      fields: {
        queue: 'queue it was delivered from',
        kind: 'call, cast, fanout, reply, notification or other',
      },
    },
  },
};
