import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { artifacts, ok, scratchDir } from './report-helpers.js';

// playwright-core drives Debian's chromium (no browser download).
const { chromium } = createRequire(import.meta.url)(
  'playwright-core',
) as typeof import('playwright-core');

const dir = scratchDir('scalpels-report-html-');
const store = `sqlite://${join(dir, 'store.db')}`;
const cliPath = new URL('../cli/dist/main.js', import.meta.url).pathname;

interface PageFacts {
  errors: string[];
  requests: string[];
  charts: { series: string; drawn: number; coords: number }[];
  markers: number;
  tops: string[];
  scrollWidth: number;
  title: string;
}

async function open(file: string, width: number, shot: string): Promise<PageFacts> {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(dir, 'chromium-')), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    offline: true,
    viewport: { width, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${file}`, { waitUntil: 'load' });
    // A string, evaluated in the page (the tests are typed without the DOM library).
    const facts = (await page.evaluate(`({
      charts: [...document.querySelectorAll('figure.card')].map((f) => {
        const svg = f.querySelector('svg.chart');
        const coords = [...svg.querySelectorAll('polyline')].reduce(
          (a, l) => a + (l.getAttribute('points') || '').trim().split(/\\s+/).filter(Boolean).length,
          0,
        );
        // Drawn: the element has a rendered box, not only markup.
        const drawn = [...svg.querySelectorAll('polyline, circle')].filter((e) => {
          const b = e.getBBox();
          return b.width > 0 || b.height > 0;
        }).length;
        return { series: f.getAttribute('data-series') || '', drawn, coords };
      }),
      markers: document.querySelectorAll('svg .marker').length,
      tops: [...document.querySelectorAll('.top h4')].map((h) => h.textContent || ''),
      scrollWidth: document.documentElement.scrollWidth,
      title: document.title,
    })`)) as Omit<PageFacts, 'errors' | 'requests'>;
    mkdirSync(artifacts, { recursive: true });
    const height = (await page.evaluate('document.documentElement.scrollHeight')) as number;
    await page.screenshot({
      path: join(artifacts, shot),
      fullPage: true,
      clip: { x: 0, y: 0, width, height: Math.min(height, 2400) },
    });
    return { errors, requests, ...facts };
  } finally {
    await context.close();
  }
}

describe('report --format html of a real task (proc + syscalls), in headless Chromium', () => {
  it('loads offline with no console error and no request, every chart drawn, markers shown', async () => {
    // A workload in two phases with a marker between them, marked from inside the traced tree.
    const script = join(dir, 'work.sh');
    writeFileSync(
      script,
      [
        '#!/bin/sh',
        `python3 -c "import os\nfor _ in range(30000): os.getppid()\nsum(i*i for i in range(3*10**6))"`,
        `"${process.execPath}" "${cliPath}" mark "second phase" --store ${store}`,
        `python3 -c "sum(i*i for i in range(3*10**6))"`,
        'sleep 1',
      ].join('\n'),
      { mode: 0o755 },
    );
    await ok([
      'run',
      '-t',
      'proc,syscalls',
      '--set',
      'proc.interval=250ms',
      '--set',
      'syscalls.interval=500ms',
      '--name',
      'html-report',
      '--store',
      store,
      '--format',
      'none',
      '--',
      script,
    ]);
    const file = join(dir, 'report.html');
    await ok(['report', '--last', '--format', 'html', '-o', file, '--store', store]);
    const html = readFileSync(file, 'utf8');
    // Self-contained: nothing to fetch, no script at all.
    expect(html).not.toMatch(/<script|<link|src=|@import|url\(/i);
    expect(html).toContain('second phase');

    const wide = await open(file, 1280, 'report-html.png');
    expect(wide.errors).toEqual([]);
    expect(wide.requests).toEqual([`file://${file}`]);
    expect(wide.title).toContain('html-report');
    expect(wide.charts.length).toBeGreaterThan(10);
    for (const c of wide.charts) {
      expect(c.drawn, `chart ${c.series} has nothing drawn`).toBeGreaterThan(0);
    }
    // The CPU chart of the traced process is a line through many buckets.
    const cpu = wide.charts.find((c) => c.series === 'proc.cpu.user');
    expect(cpu?.coords ?? 0).toBeGreaterThan(4);
    expect(wide.charts.some((c) => c.series === 'syscalls.calls')).toBe(true);
    // The marker is drawn on every chart whose axis covers it (all share the task's axis).
    expect(wide.markers).toBe(wide.charts.length);
    expect(wide.tops.some((t) => /^syscalls\.calls by syscall/.test(t))).toBe(true);

    // Readable in a narrow window: nothing wider than the viewport (wide tables scroll inside).
    const narrow = await open(file, 400, 'report-html-narrow.png');
    expect(narrow.errors).toEqual([]);
    expect(narrow.scrollWidth).toBeLessThanOrEqual(400);

    // compare --format html of this task and a second run: offline too, overlays drawn.
    await ok([
      'run',
      '-t',
      'proc,syscalls',
      '--set',
      'proc.interval=250ms',
      '--name',
      'html-report-2',
      '--store',
      store,
      '--format',
      'none',
      '--',
      script,
    ]);
    const cmp = join(dir, 'compare.html');
    await ok([
      'compare',
      'html-report',
      'html-report-2',
      '--format',
      'html',
      '-o',
      cmp,
      '--store',
      store,
    ]);
    const c = await open(cmp, 1280, 'compare-html.png');
    expect(c.errors).toEqual([]);
    expect(c.requests).toEqual([`file://${cmp}`]);
    expect(c.charts.length).toBeGreaterThan(0);
    for (const ch of c.charts) expect(ch.drawn, 'compare chart').toBeGreaterThan(0);
  });
});
