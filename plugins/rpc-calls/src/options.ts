import type { OptionSpecs, OptionValuesOf } from '@scalpels/core';
import { DEFAULT_CONTEXT_FIELDS } from './oslo.js';

/** The options of rpc-calls (`--set rpc-calls.KEY=VALUE`). */
export const OPTIONS = {
  host: { type: 'string', default: '127.0.0.1', description: 'Broker host' },
  port: {
    type: 'port',
    default: 5672,
    description: 'Broker AMQP port (also the port whose traffic is sampled)',
  },
  vhost: {
    type: 'string',
    description:
      'Virtual host to trace (default: the one the services use, from the transport_url of root-owned /etc/<project>/*.conf naming this broker; else /)',
  },
  user: {
    type: 'string',
    default: 'guest',
    description: 'Broker user (needs read permission on the vhost)',
  },
  'password-file': {
    type: 'file',
    trust: 'credential',
    description:
      'File holding the broker password (root-owned, 0600/0640, not a symlink; as root inside /etc/scalpels/); else $SCALPELS_RABBITMQ_PASSWORD, else "guest"',
  },
  tls: { type: 'boolean', default: false, description: 'Connect with amqps' },
  deliver: {
    type: 'boolean',
    default: false,
    description: 'Also trace deliveries to consumers (deliver.#): doubles the firehose traffic',
  },
  events: {
    type: 'boolean',
    default: false,
    description: 'Record one event per call, cast and notification, with its request id',
  },
  interval: {
    type: 'duration',
    default: '1s',
    min: '100ms',
    unit: 'ms',
    description: 'How often counters and traffic are sampled',
  },
  'max-backlog': {
    type: 'integer',
    default: 100_000,
    min: 100,
    description:
      'Most trace copies queued on the broker for the tracer; beyond it the oldest are dropped (protects the broker memory)',
  },
  'call-timeout': {
    type: 'duration',
    default: '60s',
    min: '1ms',
    unit: 'ms',
    description:
      'Timeout of calls that carry neither `_timeout` nor an AMQP expiration (oslo.messaging rpc_response_timeout)',
  },
  'context-fields': {
    type: 'list',
    default: DEFAULT_CONTEXT_FIELDS,
    pattern: /^[a-z0-9_]+$/,
    description:
      'Request-context keys (after `_context_`) kept in events; keys that look secret are always redacted',
  },
  traffic: {
    type: 'boolean',
    default: true,
    description: 'Sample TCP packets and bytes to the broker port (needs ss)',
  },
  nodes: {
    type: 'list',
    pattern: /^[^@\s]+@[^@\s]+$/,
    description:
      'Erlang nodes (rabbit@host) whose tracing switch rabbitmqctl sets: the firehose is per node, so list every node of a cluster the services publish through (default: the local node)',
  },
  'management-url': {
    type: 'string',
    pattern: /^https?:\/\//,
    description:
      'Management API base URL (http://host:15672): switches tracing over HTTP instead of rabbitmqctl; must name the broker host unless it is the one configured on the node',
  },
} as const satisfies OptionSpecs;

/** What the plugin's functions receive: options validated by the core, defaults applied. */
export type Options = OptionValuesOf<typeof OPTIONS>;
