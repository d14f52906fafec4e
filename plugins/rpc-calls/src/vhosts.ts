import { execFileSync } from 'node:child_process';
import { rabbitmqctlPath } from './broker.js';
import { readdirSync } from 'node:fs';
import { readRootOwnedFile } from '@scalpels/core';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Options } from './options.js';

/**
 * The RabbitMQ vhosts the OpenStack services of this node publish on, read from their
 * `transport_url` (`rabbit://nova:secret@127.0.0.1:5672/openstack`) in `/etc/<project>/*.conf`.
 * Deployments give OpenStack its own vhost (`/nova`, `openstack`): tracing `/` by default would
 * count nothing. Only root-owned files no one else may write are believed: what they say decides
 * which vhost is switched to tracing. Passwords in the URLs are never kept.
 */
export interface FoundVhost {
  vhost: string;
  /** Files that name it. */
  files: string[];
}

const MAX_CONF_BYTES = 4 << 20;
const LOCAL = new Set(['127.0.0.1', 'localhost', '::1', '[::1]', '0.0.0.0']);

/** Vhosts named by transport URLs that point at `host:port`, most used first. */
export function configuredVhosts(host: string, port: number, etc = '/etc'): FoundVhost[] {
  const found = new Map<string, Set<string>>();
  let dirs: string[];
  try {
    dirs = readdirSync(etc, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return [];
  }
  for (const dir of dirs) {
    let files: string[];
    try {
      files = readdirSync(join(etc, dir)).filter((f) => f.endsWith('.conf'));
    } catch {
      continue;
    }
    for (const f of files) {
      const path = join(etc, dir, f);
      const text = readRootOwnedFile(path, MAX_CONF_BYTES);
      if (!text || !text.includes('transport_url')) continue;
      for (const url of transportUrls(text))
        for (const vhost of vhostsFor(url, host, port)) {
          if (!found.has(vhost)) found.set(vhost, new Set());
          found.get(vhost)!.add(path);
        }
    }
  }
  return [...found.entries()]
    .map(([vhost, files]) => ({ vhost, files: [...files].sort() }))
    .sort((a, b) => b.files.length - a.files.length || a.vhost.localeCompare(b.vhost));
}

/** `transport_url = …` values, comments and blank values left out. */
export function transportUrls(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*transport_url\s*=\s*(\S+)\s*$/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

/**
 * The vhost of a `rabbit://` URL when one of its hosts is the broker traced (`host:port`, or this
 * machine when the broker is local). oslo.messaging: no path or `/` is the default vhost `/`.
 */
export function vhostsFor(url: string, host: string, port: number): string[] {
  const m = /^(?:rabbit|amqp|kombu)(?:\+\w+)?:\/\/([^/?#]*)(\/[^?#]*)?/.exec(url);
  if (!m) return [];
  const hosts = m[1]!.split(',').map((h) => {
    const at = h.lastIndexOf('@');
    const hp = at >= 0 ? h.slice(at + 1) : h;
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hp);
    if (v6) return { host: `[${v6[1]}]`, port: Number(v6[2] ?? 5672) };
    const [name, p] = hp.split(':');
    return { host: name ?? '', port: Number(p ?? 5672) };
  });
  const local = LOCAL.has(host) || host === hostname();
  const matches = hosts.some(
    (h) =>
      h.port === port &&
      (h.host === host || (local && (LOCAL.has(h.host) || h.host === hostname()))),
  );
  if (!matches) return [];
  const path = m[2] ?? '';
  let vhost: string;
  try {
    vhost = decodeURIComponent(path.slice(1));
  } catch {
    return [];
  }
  return [vhost === '' ? '/' : vhost];
}

let connectedCache: { at: number; value: { vhost: string; connections: number }[] } | undefined;

/**
 * Client connections per vhost of the local broker, most first (`rabbitmqctl list_connections`;
 * the binary from the system folders, never from an option). Empty when it cannot be asked.
 */
export function connectedVhosts(maxAgeMs = 10_000): { vhost: string; connections: number }[] {
  // check, setup and the worker spec each ask within a second: rabbitmqctl once.
  if (connectedCache && Date.now() - connectedCache.at < maxAgeMs) return connectedCache.value;
  let ctl: string | undefined;
  try {
    ctl = rabbitmqctlPath();
  } catch {
    ctl = undefined; // not a trusted program: not asked
  }
  let value: { vhost: string; connections: number }[] = [];
  if (ctl)
    try {
      const out = execFileSync(ctl, ['-q', 'list_connections', 'vhost'], {
        encoding: 'utf8',
        timeout: 15_000,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const counts = new Map<string, number>();
      const lines = out.split('\n');
      // RabbitMQ 3.8+ prints the column header (`vhost`) even with -q.
      if (lines[0]?.trim() === 'vhost') lines.shift();
      for (const line of lines) {
        const v = line.trim();
        if (v) counts.set(v, (counts.get(v) ?? 0) + 1);
      }
      value = [...counts.entries()]
        .map(([vhost, connections]) => ({ vhost, connections }))
        .sort((a, b) => b.connections - a.connections || a.vhost.localeCompare(b.vhost));
    } catch {
      value = [];
    }
  connectedCache = { at: Date.now(), value };
  return value;
}

/** The vhost traced: the option when given, else the one the services use, else `/`. */
export function tracedVhost(options: Pick<Options, 'vhost' | 'host' | 'port'>): {
  vhost: string;
  /** How it was chosen, for the check's detail and the tracer's note. */
  why: string;
  others: FoundVhost[];
} {
  if (options.vhost !== undefined && options.vhost !== '')
    return { vhost: options.vhost, why: 'option vhost', others: [] };
  const { host, port } = options;
  const found = configuredVhosts(host, port);
  if (found.length === 0) {
    // No configuration here names the broker (a broker-only node): the vhost its clients are
    // connected to, when the broker is local and rabbitmqctl answers.
    const busiest = LOCAL.has(host) ? connectedVhosts()[0] : undefined;
    if (busiest && busiest.connections > 0)
      return {
        vhost: busiest.vhost,
        why: `no transport_url here names this broker; ${busiest.connections} client connection(s) on it (rabbitmqctl list_connections)`,
        others: [],
      };
    return { vhost: '/', why: 'no transport_url in /etc/*/*.conf names this broker', others: [] };
  }
  const [first, ...others] = found;
  return {
    vhost: first!.vhost,
    why: `transport_url of ${first!.files.join(', ')}`,
    others,
  };
}
