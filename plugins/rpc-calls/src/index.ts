import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  definePlugin,
  NODE_CONFIG_FILE,
  type CheckContext,
  type CheckResult,
  type Technique,
  type UndoAction,
} from '@scalpels/core';
import {
  brokerAdmin,
  brokerPassword,
  managementUrl,
  rabbitmqctlPath,
  switchNodes,
} from './broker.js';
import { createParser } from './parser.js';
import { schema } from './schema.js';
import { createTable, deleteTable, nftTableName } from './nft.js';
import { verify } from './verify.js';
import { tracedVhost } from './vhosts.js';
import { traceQueueName, workerSpec, type Tools } from './worker.js';
import { view } from './view.js';
import { OPTIONS, type Options } from './options.js';

const pluginDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(pluginDir, 'package.json'), 'utf8')) as {
  version: string;
};

/** Undo kinds this plugin journals. */
export const UNDO_TRACE_ON = 'rabbitmq-trace-on';
export const UNDO_TRACE_QUEUE = 'rabbitmq-trace-queue';

export interface TraceOnData {
  vhost: string;
  /** Tracing state before the tracer turned it on (always false: nothing is journaled when it was on). */
  wasOn: boolean;
  /** Erlang node (option nodes), when not the local one. */
  node?: string;
  /** The broker's name of that node and the mark left there (`task-tracer`), to remove on undo. */
  erlangNode?: string;
  owner?: string;
}
export const UNDO_NFT_TABLE = 'nft-table';
export interface NftTableData {
  table: string;
}
export interface TraceQueueData {
  vhost: string;
  queue: string;
}

function findBinary(name: string): string | undefined {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin']
    .map((d) => join(d, name))
    .find((p) => existsSync(p));
}

function tools(): Tools {
  return { ss: findBinary('ss'), nft: findBinary('nft') };
}

/** Ways of measuring the traffic to the broker port; the firehose part is the same in all. */
const techniques: Technique<Options>[] = [
  {
    name: 'firehose+nft',
    description:
      'firehose, plus exact packet and byte counts from an nftables table of our own (root, nf_tables)',
    async check(ctx) {
      const nftBin = findBinary('nft');
      if (!ctx.options.traffic) return { status: 'unavailable', detail: 'traffic sampling is off' };
      if (!nftBin)
        return { status: 'fixable', detail: 'nft not found', hint: 'apt-get install nftables' };
      if (!ctx.isRoot) return { status: 'unavailable', detail: 'nftables counters need root' };
      if (ctx.depth === 'full') {
        const r = await ctx.exec([nftBin, 'list', 'tables']);
        if (r.exitCode !== 0)
          return {
            status: 'unavailable',
            detail: `nft does not work here: ${r.stderr.trim().split('\n')[0]}`,
          };
      }
      return { status: 'ok', detail: 'traffic from nftables counters' };
    },
  },
  {
    name: 'firehose+ss',
    description:
      'firehose, plus traffic sampled from socket counters with ss (connections shorter than the interval are missed)',
    async check(ctx) {
      if (!ctx.options.traffic) return { status: 'unavailable', detail: 'traffic sampling is off' };
      return findBinary('ss')
        ? { status: 'ok', detail: 'traffic from socket counters (ss)' }
        : { status: 'fixable', detail: 'ss not found', hint: 'apt-get install iproute2' };
    },
  },
  {
    name: 'firehose',
    description: 'firehose only, no traffic counters',
    async check() {
      return { status: 'ok', detail: 'no traffic counters' };
    },
  },
];

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

async function brokerCheck(ctx: CheckContext<Options>): Promise<CheckResult> {
  const o = ctx.options;
  const { host, port } = o;
  const { vhost, why } = tracedVhost(o);
  // Refusals (an URL naming another host, an unprotected password file) throw a UserError.
  const management = managementUrl(o) !== undefined;
  if (o['password-file'] !== undefined) brokerPassword(o);
  let ctl: string | undefined;
  if (!management) {
    ctl = rabbitmqctlPath();
    if (!ctl)
      return {
        status: 'fixable',
        detail: 'rabbitmqctl not found: it is needed to turn tracing (the firehose) on and off',
        hint: LOCAL_HOSTS.has(host)
          ? 'run on the broker host with rabbitmq-server installed (apt-get install rabbitmq-server), or set rpc-calls.management-url'
          : `the broker ${host} is remote: set rpc-calls.management-url=http://${host}:15672 (rabbitmq-plugins enable rabbitmq_management)`,
      };
    if (!LOCAL_HOSTS.has(host))
      return {
        status: 'fixable',
        detail: `broker ${host} is not this host: rabbitmqctl would switch tracing on the local node`,
        hint: `set rpc-calls.management-url=http://${host}:15672 (rabbitmq-plugins enable rabbitmq_management on the broker)`,
      };
  }
  if (ctx.depth === 'quick')
    return {
      status: 'ok',
      detail: `${management ? 'management API' : ctl} present (broker not probed)`,
    };

  // Full: broker reachable, credentials accepted, firehose exchange present, tracing switch allowed.
  const amqp = (await import('amqplib')).default;
  let conn: Awaited<ReturnType<typeof amqp.connect>> | undefined;
  try {
    conn = await amqp.connect(
      {
        protocol: o.tls ? 'amqps' : 'amqp',
        hostname: host,
        port,
        vhost,
        username: o.user,
        password: brokerPassword(o),
      },
      { timeout: 5000 },
    );
    const ch = await conn.createChannel();
    await ch.checkExchange('amq.rabbitmq.trace');
  } catch (e) {
    const msg = (e as Error).message;
    if (/ACCESS_REFUSED|403|auth/i.test(msg))
      return {
        status: 'fixable',
        detail: `broker ${host}:${port} refused the credentials of user ${o.user}: ${msg}`,
        hint: 'set rpc-calls.user and rpc-calls.password-file (or $SCALPELS_RABBITMQ_PASSWORD); the user needs read permission on the vhost',
      };
    // A missing vhost, or one the user has no permission on, closes the connection at open.
    if (/NOT_ALLOWED|vhost|ConnectionOpenOk/i.test(msg))
      return {
        status: 'fixable',
        detail: `vhost ${vhost} does not exist or user ${o.user} has no permission on it`,
        hint: `check rpc-calls.vhost (rabbitmqctl list_vhosts), then rabbitmqctl set_permissions -p ${vhost} ${o.user} ".*" ".*" ".*"`,
      };
    if (/NOT_FOUND/.test(msg))
      return {
        status: 'unavailable',
        detail: `no amq.rabbitmq.trace exchange on vhost ${vhost}: ${msg}`,
      };
    return {
      status: 'fixable',
      detail: `broker not reachable at ${host}:${port}: ${msg}`,
      hint: 'start it (systemctl start rabbitmq-server) or set rpc-calls.host / rpc-calls.port',
    };
  } finally {
    await conn?.close().catch(() => undefined);
  }
  try {
    for (const node of switchNodes(o)) await brokerAdmin(o, node).tracing(vhost);
  } catch (e) {
    return {
      status: 'fixable',
      detail: `cannot read the tracing switch of vhost ${vhost}: ${(e as Error).message.split('\n')[0]}`,
      hint: management
        ? 'give the management user the administrator tag (rabbitmqctl set_user_tags USER administrator)'
        : 'run as root (rabbitmqctl needs the Erlang cookie), or set rpc-calls.management-url',
    };
  }
  return {
    status: 'ok',
    detail: `broker ${host}:${port} vhost ${vhost} (${why}) reachable, tracing switch via ${management ? 'management API' : ctl}`,
  };
}

async function check(ctx: CheckContext<Options>): Promise<CheckResult> {
  const broker = await brokerCheck(ctx);
  if (broker.status !== 'ok') return broker;
  for (const t of techniques) {
    const r = await t.check(ctx);
    if (r.status === 'ok')
      return { ...broker, detail: `${broker.detail}; ${r.detail}`, technique: t.name };
  }
  return { ...broker, technique: 'firehose' };
}

async function undo(action: UndoAction, stored: Options): Promise<void> {
  const options = checkUndoOptions(stored);
  const admin = brokerAdmin(options);
  if (action.kind === UNDO_TRACE_ON) {
    const data = action.data as TraceOnData;
    const nodeAdmin = brokerAdmin(options, data.node);
    if (!data.wasOn) await nodeAdmin.setTracing(data.vhost, false);
    // The mark goes with the tracing it marked, and only this tracer's own (data from the store:
    // checked before it reaches the broker).
    if (
      typeof data.erlangNode === 'string' &&
      /^[^@\s]+@[^@\s]+$/.test(data.erlangNode) &&
      typeof data.owner === 'string' &&
      (await nodeAdmin.traceOwner(data.vhost, data.erlangNode)) === data.owner
    )
      await nodeAdmin.setTraceOwner(data.vhost, data.erlangNode, null);
  } else if (action.kind === UNDO_TRACE_QUEUE) {
    const data = action.data as TraceQueueData;
    await admin.deleteQueue(data.vhost, data.queue);
  } else if (action.kind === UNDO_NFT_TABLE) {
    const nftBin = findBinary('nft');
    if (!nftBin) throw new Error('nft not found: cannot delete the counters table');
    await deleteTable(nftBin, (action.data as NftTableData).table);
  }
}

/**
 * Options as undo() uses them: they come from a journal (data in the store), so a management URL
 * must name the broker host, so that no credential is sent elsewhere. No program is taken from
 * them: the core refuses a journal naming an option the plugin does not declare (the retired
 * `rabbitmqctl`), and brokerAdmin() finds rabbitmqctl on this host.
 */
function checkUndoOptions(options: Options): Options {
  const url = options['management-url'];
  if (url !== undefined && url !== '') {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    if (host !== options.host)
      throw new Error(`management-url ${host} is not the broker host: refused in undo`);
  }
  return options;
}

export default definePlugin({
  name: 'rpc-calls',
  version: pkg.version,
  description:
    'OpenStack RPC over RabbitMQ: the firehose decoded method by method (calls, casts, replies, failures, timeouts), call latency, bytes, and traffic to the broker port',
  apiVersion: '>=1.3.0 <2',
  target: 'none',
  options: OPTIONS,
  retiredOptions: {
    rabbitmqctl: `an option never names a program: rabbitmqctl is found in /usr/sbin, /usr/bin, /sbin or /bin, or set as "rabbitmqctl" in the "rpc-calls" section of ${NODE_CONFIG_FILE}`,
  },
  requires: [
    {
      kind: 'service',
      what: 'RabbitMQ broker (AMQP 0-9-1)',
      why: 'the firehose is consumed over AMQP',
    },
    {
      kind: 'binary',
      what: 'rabbitmqctl (or the management API)',
      why: 'to turn tracing on for the vhost and back off',
    },
    { kind: 'root', what: 'root (for rabbitmqctl)', why: 'rabbitmqctl reads the Erlang cookie' },
    {
      kind: 'binary',
      what: 'nft (nftables), root',
      why: 'optional: exact traffic counters to the broker port',
    },
    {
      kind: 'binary',
      what: 'ss (iproute2)',
      why: 'optional: sampled traffic counters when nftables is not usable',
    },
  ],
  techniques,
  check,
  verify: (_options, ctx) => verify(ctx, techniques),
  validate(options) {
    if (options['context-fields'].length > 50) return 'context-fields: at most 50 keys';
    const nodes = options.nodes ?? [];
    if (nodes.length > 0 && options['management-url'] !== undefined)
      return 'nodes: rabbitmqctl only; the management API switches the node it is served by';
    // Refuses an URL that names another host than the broker (throws a UserError).
    managementUrl(options);
    return undefined;
  },
  async setup(options, ctx) {
    const { vhost } = tracedVhost(options);
    const nftBin = findBinary('nft');
    if (ctx.technique === 'firehose+nft' && options.traffic && nftBin) {
      const table = nftTableName(ctx.taskId, ctx.tracerId);
      await ctx.journal({
        kind: UNDO_NFT_TABLE,
        data: { table } satisfies NftTableData,
        description: `delete the nftables table inet ${table} (traffic counters)`,
      });
      await createTable(nftBin, table, options.port);
    }
    // The queue is exclusive (gone with the worker's connection); journaled anyway so that a
    // broker that kept it (a half-open connection) is cleaned by recover.
    await ctx.journal({
      kind: UNDO_TRACE_QUEUE,
      data: { vhost, queue: traceQueueName(ctx) } satisfies TraceQueueData,
      description: `delete the trace queue ${traceQueueName(ctx)} on vhost ${vhost}`,
    });
    // The firehose is switched per node: every node the services publish through. The switch
    // is shared by every tracer of the vhost on that node (of any scalpels node): a lease keyed
    // by the broker's own node name, so the first tracer to stop does not cut the others off.
    for (const node of switchNodes(options)) {
      const admin = brokerAdmin(options, node);
      const erlangNode = await admin.nodeName();
      await ctx.lease({
        resource: `rabbitmq:${erlangNode}/vhost:${vhost}/trace_on`,
        async change(journal, state) {
          if (await admin.tracing(vhost)) {
            // A tracer of another store shares no lease with this one: its stop would turn
            // tracing off under it. Tracing on without a mark is an operator's: left alone.
            const other = state.reapplying ? undefined : await admin.traceOwner(vhost, erlangNode);
            if (other !== undefined)
              throw new Error(
                `another scalpels tracer (${other}) traces vhost ${vhost} on ${erlangNode}, for another store: its stop would turn tracing off under this one; stop it first, or run scalpels recover on the store that started it if it died`,
              );
            return;
          }
          const owner = `${ctx.taskId}-${ctx.tracerId}`;
          await journal({
            kind: UNDO_TRACE_ON,
            data: {
              vhost,
              wasOn: false,
              ...(node ? { node } : {}),
              erlangNode,
              owner,
            } satisfies TraceOnData,
            description: `turn RabbitMQ tracing off again on vhost ${vhost} (${admin.describe()})`,
          });
          // Marked first: a crash in between leaves a mark without tracing, which nobody heeds.
          await admin.setTraceOwner(vhost, erlangNode, owner);
          await admin.setTracing(vhost, true);
        },
      });
    }
  },
  undo,
  worker(options, ctx) {
    return workerSpec(options, ctx, tools());
  },
  parser: createParser,
  schema,
  report: view,
});
