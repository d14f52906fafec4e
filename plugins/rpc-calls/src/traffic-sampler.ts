/**
 * Traffic to the broker port, measured in a worker thread (see worker-main.ts): nftables counters
 * of the table setup created, or socket counters sampled with `ss`.
 */
import { execFile } from 'node:child_process';
import { excludePort, readCounters, type NftCounters } from './nft.js';
import { parseSs, TrafficMeter } from './traffic.js';
import type { TrafficConfig, WireTraffic } from './wire.js';

export interface TrafficThreadData {
  traffic: TrafficConfig;
  /** Local ports of the tracer's own AMQP connection, left out of the counts. */
  ownPorts: number[];
}

export type TrafficThreadMessage =
  { kind: 'line'; line: WireTraffic } | { kind: 'error'; message: string } | { kind: 'sampled' };

function now(): number {
  return performance.timeOrigin + performance.now();
}

function ss(bin: string, port: number, warn: (m: string) => void): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      bin,
      ['-tinH', `( sport = :${port} or dport = :${port} )`],
      { timeout: 5000, maxBuffer: 64 << 20 },
      (err, out) => {
        if (err) warn(`ss failed: ${err.message}`);
        resolve(err ? undefined : out);
      },
    );
  });
}

/** Returns a function that emits one traffic line with the increases since its previous call. */
export async function trafficSampler(
  traffic: TrafficConfig,
  ownPorts: () => number[],
  emit: (line: WireTraffic) => void,
  warn: (message: string) => void,
): Promise<() => Promise<void>> {
  const meter = traffic.ss ? new TrafficMeter([traffic.port], ownPorts) : undefined;
  const connections = async (): Promise<number | undefined> => {
    if (!meter || !traffic.ss) return undefined;
    const out = await ss(traffic.ss, traffic.port, warn);
    return out === undefined ? undefined : meter.update(parseSs(out))[0]?.connections;
  };
  if (traffic.mode === 'ss')
    return async () => {
      const out = await ss(traffic.ss, traffic.port, warn);
      if (out === undefined || !meter) return;
      const ts = now();
      for (const t of meter.update(parseSs(out))) emit({ type: 'traffic', ts, ...t });
    };
  for (const port of ownPorts()) await excludePort(traffic.nft, traffic.table, port);
  let before: NftCounters | undefined;
  return async () => {
    let c: NftCounters;
    try {
      c = await readCounters(traffic.nft, traffic.table);
    } catch (e) {
      warn((e as Error).message);
      return;
    }
    const ts = now();
    const conns = await connections();
    if (before)
      emit({
        type: 'traffic',
        ts,
        port: traffic.port,
        bytesToBroker: c.toBroker.bytes - before.toBroker.bytes,
        bytesFromBroker: c.fromBroker.bytes - before.fromBroker.bytes,
        packetsToBroker: c.toBroker.packets - before.toBroker.packets,
        packetsFromBroker: c.fromBroker.packets - before.fromBroker.packets,
        ...(conns !== undefined ? { connections: conns } : {}),
      });
    before = c;
  };
}
