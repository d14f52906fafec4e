import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from '@scalpels/core/testing';
import amqp from 'amqplib';
import {
  configuredVhosts,
  connectedVhosts,
  tracedVhost,
  transportUrls,
  vhostsFor,
} from '../src/vhosts.js';
import { amqpUrl, createVhost, deleteVhost } from './fixtures/oslo-peer.mjs';
import { brokerUp, rabbitmqctlWorks } from './helpers.js';

const live =
  capability('rabbitmq', await brokerUp(), 'no RabbitMQ listening on 127.0.0.1:5672') &&
  capability('rabbitmqctl', rabbitmqctlWorks(), 'rabbitmqctl missing or not allowed (run as root)');

// The [DEFAULT] lines as the OpenStack lab's up.sh (crudini) writes them into nova.conf and
// glance-api.conf, and as kolla / devstack write theirs.
const NOVA = `[DEFAULT]
# transport_url = rabbit://
transport_url = rabbit://openstack:osbox-secret@127.0.0.1:5672/openstack
my_ip = 127.0.0.1
`;

describe('transport_url vhosts', () => {
  it('reads the vhost of URLs that name this broker, never a commented one', () => {
    expect(transportUrls(NOVA)).toEqual([
      'rabbit://openstack:osbox-secret@127.0.0.1:5672/openstack',
    ]);
    expect(vhostsFor('rabbit://openstack:pw@127.0.0.1:5672/openstack', '127.0.0.1', 5672)).toEqual([
      'openstack',
    ]);
    // devstack: no vhost path is the default vhost
    expect(vhostsFor('rabbit://stackrabbit:pw@10.0.0.5:5672/', '10.0.0.5', 5672)).toEqual(['/']);
    // kolla: several brokers, URL-encoded vhost
    expect(
      vhostsFor('rabbit://a:b@10.0.0.1:5672,a:b@10.0.0.2:5672/%2Fnova?ssl=0', '10.0.0.2', 5672),
    ).toEqual(['/nova']);
    // another broker, another port
    expect(vhostsFor('rabbit://a:b@10.0.0.9:5672/x', '127.0.0.1', 5672)).toEqual([]);
    expect(vhostsFor('rabbit://a:b@127.0.0.1:5673/x', '127.0.0.1', 5672)).toEqual([]);
    // localhost is this machine
    expect(vhostsFor('rabbit://a:b@localhost:5672/x', '127.0.0.1', 5672)).toEqual(['x']);
    expect(vhostsFor('http://127.0.0.1:5672/x', '127.0.0.1', 5672)).toEqual([]);
  });

  const root = capability('root', process.getuid?.() === 0, 'only root can make root-owned files');
  const etc = mkdtempSync(join(tmpdir(), 'scalpels-etc-'));
  afterAll(() => rmSync(etc, { recursive: true, force: true }));

  it.runIf(root)('finds the vhost the services use in root-owned /etc/<project>/*.conf', () => {
    mkdirSync(join(etc, 'nova'));
    mkdirSync(join(etc, 'glance'));
    mkdirSync(join(etc, 'evil'));
    writeFileSync(join(etc, 'nova', 'nova.conf'), NOVA);
    chmodSync(join(etc, 'nova', 'nova.conf'), 0o640);
    writeFileSync(join(etc, 'glance', 'glance-api.conf'), NOVA);
    // a file others may write is not believed
    writeFileSync(
      join(etc, 'evil', 'evil.conf'),
      'transport_url = rabbit://x:y@127.0.0.1:5672/evil\n',
    );
    chmodSync(join(etc, 'evil', 'evil.conf'), 0o666);
    expect(configuredVhosts('127.0.0.1', 5672, etc)).toEqual([
      {
        vhost: 'openstack',
        files: [join(etc, 'glance', 'glance-api.conf'), join(etc, 'nova', 'nova.conf')],
      },
    ]);
  });

  it('the vhost option wins over what the services use', () => {
    expect(tracedVhost({ vhost: 'given', host: '127.0.0.1', port: 5672 })).toEqual({
      vhost: 'given',
      why: 'option vhost',
      others: [],
    });
  });

  it.runIf(live)('counts the client connections per vhost of the local broker', async () => {
    const vhost = `scalpels-test-vhosts-${process.pid}`;
    createVhost(vhost);
    const conns: Awaited<ReturnType<typeof amqp.connect>>[] = [];
    try {
      for (let i = 0; i < 2; i++) conns.push(await amqp.connect(amqpUrl(vhost)));
      // rabbitmqctl lists a connection once it is fully open: wait for it, with a bound
      let seen: number | undefined;
      for (let i = 0; i < 50 && seen !== 2; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 100));
        seen = connectedVhosts(0).find((v) => v.vhost === vhost)?.connections;
      }
      expect(seen).toBe(2);
    } finally {
      for (const c of conns) await c.close().catch(() => undefined);
      deleteVhost(vhost);
    }
  });
});
