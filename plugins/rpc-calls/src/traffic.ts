/**
 * Per-port TCP traffic from `ss -tinH` (socket diagnostics over netlink: the kernel's per-socket
 * tcp_info counters). Needs no firewall rule and changes nothing on the host.
 */

export interface SocketCounters {
  local: string;
  peer: string;
  localPort: number;
  peerPort: number;
  bytesSent: number;
  bytesReceived: number;
  segsOut: number;
  segsIn: number;
}

/** Parses `ss -tinH` output: a socket line followed by an indented tcp_info line. */
export function parseSs(text: string): SocketCounters[] {
  const out: SocketCounters[] = [];
  let current: SocketCounters | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (/^\s/.test(line)) {
      if (!current) continue;
      const num = (k: string): number => {
        const m = new RegExp(`(?:^|\\s)${k}:(\\d+)`).exec(line);
        return m ? Number(m[1]) : 0;
      };
      current.bytesSent = num('bytes_sent');
      current.bytesReceived = num('bytes_received');
      current.segsOut = num('segs_out');
      current.segsIn = num('segs_in');
      continue;
    }
    const cols = line.trim().split(/\s+/);
    // State Recv-Q Send-Q Local Peer (the state column is left out when a state filter is given).
    const [local, peer] = cols.length >= 5 ? [cols[3], cols[4]] : [cols[2], cols[3]];
    if (!local || !peer) {
      current = undefined;
      continue;
    }
    current = {
      local,
      peer,
      localPort: portOf(local),
      peerPort: portOf(peer),
      bytesSent: 0,
      bytesReceived: 0,
      segsOut: 0,
      segsIn: 0,
    };
    out.push(current);
  }
  return out;
}

function portOf(endpoint: string): number {
  const i = endpoint.lastIndexOf(':');
  return i < 0 ? NaN : Number(endpoint.slice(i + 1));
}

export interface PortTraffic {
  port: number;
  bytesToBroker: number;
  bytesFromBroker: number;
  packetsToBroker: number;
  packetsFromBroker: number;
  connections: number;
}

/**
 * Turns successive socket snapshots into increases per broker port. A connection between a local
 * client and a local broker shows up twice (once per end); it is counted on the broker's end only.
 * Sockets seen in the first snapshot are the baseline; sockets that appear later count in full.
 */
export class TrafficMeter {
  private previous = new Map<string, SocketCounters>();
  private primed = false;

  constructor(
    private readonly ports: readonly number[],
    /** Local ports of our own connections (the tracer's AMQP consumer), left out. */
    private readonly ownPorts: () => readonly number[] = () => [],
  ) {}

  update(sockets: readonly SocketCounters[]): PortTraffic[] {
    const own = new Set(this.ownPorts());
    const brokerSide = new Set<string>();
    for (const s of sockets)
      if (this.ports.includes(s.localPort)) brokerSide.add(`${s.local}|${s.peer}`);
    const totals = new Map<number, PortTraffic>();
    for (const p of this.ports)
      totals.set(p, {
        port: p,
        bytesToBroker: 0,
        bytesFromBroker: 0,
        packetsToBroker: 0,
        packetsFromBroker: 0,
        connections: 0,
      });
    const next = new Map<string, SocketCounters>();
    for (const s of sockets) {
      const atBroker = this.ports.includes(s.localPort);
      const atClient = !atBroker && this.ports.includes(s.peerPort);
      if (!atBroker && !atClient) continue;
      if (own.has(atBroker ? s.peerPort : s.localPort)) continue;
      // The other end of this connection is a local broker socket: counted there.
      if (atClient && brokerSide.has(`${s.peer}|${s.local}`)) continue;
      const key = `${s.local}|${s.peer}`;
      next.set(key, s);
      const port = atBroker ? s.localPort : s.peerPort;
      const t = totals.get(port)!;
      t.connections++;
      if (!this.primed) continue;
      const before = this.previous.get(key);
      const d = (now: number, was: number | undefined): number => Math.max(0, now - (was ?? 0));
      const sent = d(s.bytesSent, before?.bytesSent);
      const received = d(s.bytesReceived, before?.bytesReceived);
      const out = d(s.segsOut, before?.segsOut);
      const inn = d(s.segsIn, before?.segsIn);
      if (atBroker) {
        t.bytesToBroker += received;
        t.bytesFromBroker += sent;
        t.packetsToBroker += inn;
        t.packetsFromBroker += out;
      } else {
        t.bytesToBroker += sent;
        t.bytesFromBroker += received;
        t.packetsToBroker += out;
        t.packetsFromBroker += inn;
      }
    }
    this.previous = next;
    this.primed = true;
    return [...totals.values()];
  }
}
