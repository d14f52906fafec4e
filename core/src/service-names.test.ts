import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capability } from './testing/index.js';
import { readRootOwnedIni as readRootOwnedFile, serviceNames } from './service-names.js';

// Command lines as /proc/PID/cmdline shows them on the OpenStack lab (Debian 12 packages, started
// by their /etc/init.d scripts) and on devstack, Ubuntu (mod_wsgi) and gunicorn deployments.
const KEYSTONE_INI = `[uwsgi]
master = true
plugins = python3
name = keystone-api
wsgi-file = /usr/bin/keystone-wsgi-public
`;
const inis: Record<string, string> = {
  '/etc/keystone/keystone-uwsgi.ini': KEYSTONE_INI,
  '/etc/nova/nova-api-uwsgi.ini': '[uwsgi]\nwsgi-file = /usr/bin/nova-api-wsgi\n',
};
const readIni = (p: string) => inis[p];

describe('serviceNames', () => {
  it('names a Debian uwsgi app from its ini: keystone, nova-api, placement-api', () => {
    const ks = serviceNames(
      [
        '/usr/bin/uwsgi_python311',
        '--http-socket',
        ':5000',
        '--ini',
        '/etc/keystone/keystone-uwsgi.ini',
      ],
      'uwsgi_python311',
      readIni,
    );
    expect(ks.primary).toBe('keystone');
    expect(ks.all).toEqual(['keystone', 'keystone-wsgi-public', 'uwsgi_python311']);
    const nova = serviceNames(
      [
        '/usr/bin/uwsgi_python311',
        '--http-socket',
        ':8774',
        '--ini',
        '/etc/nova/nova-api-uwsgi.ini',
      ],
      'uwsgi_python311',
      readIni,
    );
    expect(nova.primary).toBe('nova-api');
    expect(nova.all).toContain('nova-api-wsgi');
    expect(nova.all).toContain('nova');
    const placement = serviceNames(
      [
        '/usr/bin/uwsgi_python311',
        '--http-socket',
        ':8778',
        '--ini=/etc/placement/placement-api-uwsgi.ini',
      ],
      'uwsgi_python311',
      readIni,
    );
    expect(placement.primary).toBe('placement-api');
    expect(placement.all).toContain('placement');
  });

  it('names devstack uwsgi apps by their procname prefix', () => {
    const n = serviceNames(
      ['uwsgi', '--procname-prefix', 'nova-api', '--ini', '/etc/nova/nova-api-uwsgi.ini'],
      'uwsgi',
      () => undefined,
    );
    expect(n.primary).toBe('nova-api');
  });

  it('names Python console scripts: python3 /usr/bin/nova-conductor', () => {
    const n = serviceNames(
      ['/usr/bin/python3', '/usr/bin/nova-conductor', '--config-file=/etc/nova/nova.conf'],
      'nova-conductor',
    );
    expect(n.primary).toBe('nova-conductor');
    expect(n.all).toEqual(['nova-conductor', 'python3']);
    expect(serviceNames(['/usr/bin/python3', '-m', 'http.server'], 'python3').primary).toBe(
      undefined,
    );
  });

  it('names mod_wsgi daemons, gunicorn and self-set titles', () => {
    expect(serviceNames(['(wsgi:keystone-public)', '-k', 'start'], '(wsgi:keystone-').all).toEqual([
      'keystone-public',
      'keystone',
      '(wsgi:keystone-',
      '(wsgi:keystone-public)',
    ]);
    expect(serviceNames(['gunicorn: worker [glance-api]'], 'gunicorn').primary).toBe('glance-api');
    expect(
      serviceNames(
        ['/usr/bin/python3', '/usr/bin/gunicorn', '--name', 'keystone', 'keystone.wsgi:app'],
        'gunicorn',
      ).all,
    ).toEqual(['keystone', 'gunicorn', 'python3']);
    expect(
      serviceNames(
        ['neutron-server: api worker (/usr/bin/python3 /usr/bin/neutron-server)'],
        'neutron-server:',
      ).primary,
    ).toBe('neutron-server');
  });

  it('gives no service name to a plain binary', () => {
    const n = serviceNames(['/usr/sbin/mariadbd'], 'mariadbd');
    expect(n.primary).toBeUndefined();
    expect(n.all).toEqual(['mariadbd']);
  });
});

describe('readRootOwnedFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scalpels-ini-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it.runIf(
    capability('root', process.getuid?.() === 0, 'files owned by root are made by root only'),
  )('reads a root-owned ini, not one others may write', () => {
    const f = join(dir, 'x-uwsgi.ini');
    writeFileSync(f, KEYSTONE_INI);
    chmodSync(f, 0o644);
    expect(readRootOwnedFile(f)).toBe(KEYSTONE_INI);
    chmodSync(f, 0o666);
    expect(readRootOwnedFile(f)).toBeUndefined();
    expect(readRootOwnedFile(join(dir, 'missing.ini'))).toBeUndefined();
  });
});
