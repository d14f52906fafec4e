/**
 * Exact per-port traffic from nftables counters: a table of our own with two named counters and
 * rules in the input and output hooks. Unlike socket sampling it also counts connections that
 * open and close between two samples. Needs root and nf_tables; no iptables involved.
 */
import { execFile } from 'node:child_process';

export interface NftCounters {
  toBroker: { packets: number; bytes: number };
  fromBroker: { packets: number; bytes: number };
}

/** nft table names: letters, digits and underscores keep it simple to quote nowhere. */
export function nftTableName(taskId: string, tracerId: number): string {
  return `scalpels_rpc_${taskId.replace(/[^A-Za-z0-9]/g, '_')}_${tracerId}`;
}

/**
 * The ruleset. A packet to the broker port is counted once: when it reaches a local broker (input)
 * or when it leaves for a remote one (output); likewise from the broker: when a local broker sends
 * it (output) or when it arrives from a remote one (input). Loopback traffic crosses both hooks,
 * hence the `fib ... type != local` guards.
 */
export function nftRuleset(table: string, port: number): string {
  return `table inet ${table} {
  counter to_broker {}
  counter from_broker {}
  chain input {
    type filter hook input priority raw; policy accept;
    tcp dport ${port} counter name "to_broker"
    tcp sport ${port} fib saddr type != local counter name "from_broker"
  }
  chain output {
    type filter hook output priority raw; policy accept;
    tcp sport ${port} counter name "from_broker"
    tcp dport ${port} fib daddr type != local counter name "to_broker"
  }
}
`;
}

/**
 * Runs nft, again after a short pause when the kernel answered busy or interrupted: netlink
 * transactions of several nft processes at once (several tracers starting) can collide.
 */
export async function nft(
  bin: string,
  args: readonly string[],
  stdin?: string,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  for (let attempt = 1; ; attempt++) {
    const r = await nftOnce(bin, args, stdin);
    if (r.exitCode === 0 || attempt >= 5 || !/busy|interrupted|try again/i.test(r.stderr)) return r;
    await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
  }
}

function nftOnce(
  bin: string,
  args: readonly string[],
  stdin?: string,
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      bin,
      [...args],
      { timeout: 10_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        resolve({
          exitCode: code,
          stdout: String(stdout),
          stderr: String(stderr || (err ? err.message : '')),
        });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

export async function createTable(bin: string, table: string, port: number): Promise<void> {
  const r = await nft(bin, ['-f', '-'], nftRuleset(table, port));
  if (r.exitCode !== 0)
    throw new Error(`nft: cannot create table inet ${table}: ${r.stderr.trim()}`);
}

export async function tableExists(bin: string, table: string): Promise<boolean> {
  return (await nft(bin, ['list', 'table', 'inet', table])).exitCode === 0;
}

/** Deletes the table; a table that is already gone is fine (undo must be idempotent). */
export async function deleteTable(bin: string, table: string): Promise<void> {
  if (!(await tableExists(bin, table))) return;
  const r = await nft(bin, ['delete', 'table', 'inet', table]);
  if (r.exitCode !== 0 && (await tableExists(bin, table)))
    throw new Error(`nft: cannot delete table inet ${table}: ${r.stderr.trim()}`);
}

/** Leaves the tracer's own AMQP connection (the firehose copies it receives) out of the counts. */
export async function excludePort(bin: string, table: string, localPort: number): Promise<void> {
  for (const chain of ['input', 'output'])
    for (const dir of ['sport', 'dport']) {
      const r = await nft(bin, [
        'insert',
        'rule',
        'inet',
        table,
        chain,
        'tcp',
        dir,
        String(localPort),
        'return',
      ]);
      if (r.exitCode !== 0)
        throw new Error(`nft: cannot exclude port ${localPort}: ${r.stderr.trim()}`);
    }
}

export function parseCounters(json: string): NftCounters {
  const doc = JSON.parse(json) as {
    nftables?: { counter?: { name: string; packets: number; bytes: number } }[];
  };
  const out: NftCounters = {
    toBroker: { packets: 0, bytes: 0 },
    fromBroker: { packets: 0, bytes: 0 },
  };
  for (const item of doc.nftables ?? []) {
    const c = item.counter;
    if (c?.name === 'to_broker') out.toBroker = { packets: c.packets, bytes: c.bytes };
    if (c?.name === 'from_broker') out.fromBroker = { packets: c.packets, bytes: c.bytes };
  }
  return out;
}

export async function readCounters(bin: string, table: string): Promise<NftCounters> {
  const r = await nft(bin, ['-j', 'list', 'counters', 'table', 'inet', table]);
  if (r.exitCode !== 0)
    throw new Error(`nft: cannot read counters of inet ${table}: ${r.stderr.trim()}`);
  return parseCounters(r.stdout);
}
