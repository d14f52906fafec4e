import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '@scalpels/core/engine';
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
  charts: { series: string; canvas: boolean; lines: number }[];
  headline: string[];
  tops: string[];
  scrollWidth: number;
  title: string;
  /** Image elements in the page (traced text must never become one). */
  imgs: number;
  text: string;
  /** Legend value of the first chart's first line after hovering its middle. */
  hovered: string;
  /** The x range of every chart before and after a drag across the first one. */
  before: [number, number][];
  after: [number, number][];
  /** Visible lines of the first multi-line chart after clicking its first legend entry. */
  toggled: { before: number; after: number } | null;
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
    page.on('dialog', (d) => {
      errors.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`file://${file}`, { waitUntil: 'load' });
    // Strings, evaluated in the page (the tests are typed without the DOM library).
    const facts = (await page.evaluate(`({
      charts: [...document.querySelectorAll('figure.card')].map((f) => ({
        series: f.getAttribute('data-series') || '',
        canvas: !!f.querySelector('canvas') && f.querySelector('canvas').width > 0,
        lines: f.querySelectorAll('.u-legend .u-series').length - 1,
      })),
      headline: [...document.querySelectorAll('.headline .fig .l')].map((e) => e.textContent || ''),
      tops: [...document.querySelectorAll('.top h4')].map((h) => h.textContent || ''),
      scrollWidth: document.documentElement.scrollWidth,
      title: document.title,
      imgs: document.querySelectorAll('img').length,
      text: document.body.innerText,
    })`)) as Omit<PageFacts, 'errors' | 'requests' | 'hovered' | 'before' | 'after' | 'toggled'>;
    const ranges = `window.scalpelsCharts.map((u) => [u.scales.x.min, u.scales.x.max])`;
    const before = (await page.evaluate(ranges)) as [number, number][];
    // Hover the middle of the first chart: its legend shows the value there.
    const over = page.locator('.u-over').first();
    await over.scrollIntoViewIfNeeded();
    const box = (await over.boundingBox())!;
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
    const hovered = (await page.evaluate(
      `document.querySelector('.u-legend .u-series:nth-child(2) .u-value').textContent`,
    )) as string;
    // Drag across the middle fifth: every chart zooms to the same range.
    await page.mouse.move(box.x + box.width * 0.4, box.y + box.height * 0.5);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5, { steps: 4 });
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.5, { steps: 4 });
    await page.mouse.up();
    const after = (await page.evaluate(ranges)) as [number, number][];
    // Toggle: a click on a legend entry hides its line.
    const visible = `(() => { const f = [...document.querySelectorAll('figure.card')].find((f) => f.querySelectorAll('.u-legend .u-series').length > 2); return f ? f.querySelectorAll('.u-legend .u-series:not(.u-off)').length - 1 : -1; })()`;
    const n0 = (await page.evaluate(visible)) as number;
    let toggled: PageFacts['toggled'] = null;
    if (n0 > 0) {
      const entry = page
        .locator('figure.card', { has: page.locator('.u-legend .u-series:nth-child(3)') })
        .first()
        .locator('.u-legend .u-series:nth-child(2)');
      await entry.scrollIntoViewIfNeeded();
      await entry.click();
      toggled = { before: n0, after: (await page.evaluate(visible)) as number };
    }
    mkdirSync(artifacts, { recursive: true });
    const height = (await page.evaluate('document.documentElement.scrollHeight')) as number;
    await page.screenshot({
      path: join(artifacts, shot),
      fullPage: true,
      clip: { x: 0, y: 0, width, height: Math.min(height, 2400) },
    });
    return { errors, requests, hovered, before, after, toggled, ...facts };
  } finally {
    await context.close();
  }
}

/**
 * Self-contained and safe: nothing to fetch, only the two inlined scripts (uPlot and the page's),
 * each admitted by its hash, and the traced data as a JSON block no text can end early.
 * Returns the data block's text.
 */
function checkSelfContained(html: string): string {
  expect(html).not.toMatch(/@import|url\(/i);
  // Tags only, their quoted attribute values left out: escaped traced text may well read "src=".
  const tags = html
    .replace(/<script[^>]*>[\s\S]*?<\/script>/g, '<script>')
    .replace(/="[^"]*"/g, '=""');
  expect(tags).not.toMatch(/<(link|img|iframe|object|embed)\b|<[^>]*\ssrc=/i);
  const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)![1]!;
  expect(csp).toMatch(/default-src 'none'/);
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
  expect(scripts.length).toBe(2);
  for (const js of scripts)
    expect(csp).toContain(`'sha256-${createHash('sha256').update(js).digest('base64')}'`);
  expect(csp).not.toMatch(/unsafe-eval|script-src[^;]*unsafe-inline/);
  const data = /<script type="application\/json" id="scalpels-data">([\s\S]*?)<\/script>/.exec(
    html,
  )![1]!;
  expect(data).not.toMatch(/[<>]/);
  return data;
}

/** Hover shows a value; a drag zooms every time chart to one narrower range; a legend click hides a line. */
function checkInteractive(p: PageFacts): void {
  expect(p.hovered).toMatch(/\d/);
  const [b0, b1] = p.before[0]!;
  const [a0, a1] = p.after[0]!;
  expect(a1 - a0).toBeLessThan((b1 - b0) * 0.5);
  expect(a0).toBeGreaterThan(b0);
  for (const r of p.after) expect(r).toEqual(p.after[0]);
  expect(p.toggled).not.toBeNull();
  expect(p.toggled!.after).toBe(p.toggled!.before - 1);
}

describe('report --format html of a real task (proc + syscalls), in headless Chromium', () => {
  it('opens with the headline, loads offline with no console error and no request, charts drawn; hover, zoom and toggle work', async () => {
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
      // Latency histograms: drawn as bar charts.
      '--set',
      'syscalls.latency=true',
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
    await ok(['report', '--last', '--ops', '10', '--format', 'html', '-o', file, '--store', store]);
    const html = readFileSync(file, 'utf8');
    // Self-contained: nothing to fetch; only inlined scripts, each admitted by its hash.
    const data = checkSelfContained(html);
    expect(JSON.stringify(JSON.parse(data))).toContain('second phase');
    // The headline and top tables come before the charts.
    expect(html.indexOf('What the workload cost')).toBeLessThan(html.indexOf('<h2>Charts</h2>'));

    const wide = await open(file, 1280, 'report-html.png');
    expect(wide.errors).toEqual([]);
    expect(wide.requests).toEqual([`file://${file}`]);
    expect(wide.title).toContain('html-report');
    expect(wide.headline).toEqual(expect.arrayContaining(['duration', 'CPU time', 'syscalls']));
    expect(wide.tops.some((t) => /^System calls/.test(t))).toBe(true);
    expect(wide.tops.some((t) => /^Traced process trees/.test(t))).toBe(true);
    expect(wide.charts.length).toBeGreaterThan(10);
    for (const c of wide.charts) expect(c.canvas, `chart ${c.series} not drawn`).toBe(true);
    expect(wide.charts.some((c) => c.series === 'proc.cpu.user')).toBe(true);
    // The syscall latency histogram, and the per-operation headline of --ops 10.
    expect(wide.charts.some((c) => c.series === 'syscalls.latency' && c.canvas)).toBe(true);
    expect(html).toMatch(/per operation<\/b> \(10 operations\): [^<]*\d[^<]* syscalls/);
    expect(wide.charts.some((c) => c.series === 'syscalls.calls' && c.lines > 1)).toBe(true);
    checkInteractive(wide);

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
    // compare draws with the same machinery: tables first, then uPlot charts from the data block.
    const cmpHtml = readFileSync(cmp, 'utf8');
    const cmpData = JSON.parse(checkSelfContained(cmpHtml)) as {
      charts: { title: string; a: (number | null)[]; b: (number | null)[] }[];
    };
    expect(cmpHtml).not.toMatch(/<svg|<polyline/);
    expect(cmpHtml.indexOf('syscall=getppid')).toBeGreaterThan(0);
    expect(cmpHtml.indexOf('syscall=getppid')).toBeLessThan(cmpHtml.indexOf('<h2 id="timelines">'));
    const both = (c: (typeof cmpData.charts)[number]): boolean =>
      c.a.some((v) => v !== null && v > 0) && c.b.some((v) => v !== null && v > 0);
    expect(cmpData.charts.filter(both).length).toBeGreaterThan(0);
    const c = await open(cmp, 1280, 'compare-html.png');
    expect(c.errors).toEqual([]);
    expect(c.requests).toEqual([`file://${cmp}`]);
    expect(c.title).toBe('Scalpels compare: html-report vs html-report-2');
    expect(c.charts.length).toBeGreaterThan(1);
    for (const ch of c.charts) expect(ch.canvas, `compare chart ${ch.series} not drawn`).toBe(true);
    // Each timeline and histogram: A and B.
    for (const ch of c.charts) expect(ch.lines, `A and B in ${ch.series}`).toBe(2);
    checkInteractive(c);
    const cNarrow = await open(cmp, 400, 'compare-html-narrow.png');
    expect(cNarrow.errors).toEqual([]);
    expect(cNarrow.scrollWidth).toBeLessThanOrEqual(400);
  }, 300_000);
});

describe('report --format html of a task on two nodes (store written as the collector does)', () => {
  it('draws the nodes side by side: one chart per series name with a line per node', async () => {
    const db = join(dir, 'two-nodes.db');
    const store = new SqliteStore(db);
    const t0 = 1_700_000_000_000;
    try {
      const task = await store.createTask({
        name: 'two-nodes',
        labels: {},
        nodes: ['node-a', 'node-b'],
        ownerPid: null,
        ownerStart: null,
        target: null,
        startedAt: t0,
      });
      for (const [node, level] of [
        ['node-a', 10],
        ['node-b', 30],
      ] as const) {
        const tr = await store.createTracer({
          taskId: task.id,
          tracer: 'widgets',
          pluginPackage: 'scalpels-plugin-widgets',
          pluginVersion: '1.0.0',
          node,
          options: { interval: 1000 },
          technique: null,
        });
        store
          .recordSink(tr, {
            series: { 'widgets.made': { kind: 'counter', unit: 'count', description: '' } },
          })
          .write(
            Array.from({ length: 20 }, (_, i) => ({
              kind: 'sample' as const,
              series: 'widgets.made',
              value: level + (i % 3),
              ts: t0 + i * 1000,
            })),
          );
        await store.updateTracer(tr.id, {
          status: 'stopped',
          startedAt: t0,
          stoppedAt: t0 + 20_000,
        });
      }
      await store.updateTask(task.id, { status: 'stopped', stoppedAt: t0 + 20_000 });
    } finally {
      await store.close();
    }
    const file = join(dir, 'two-nodes.html');
    await ok(['report', '--last', '--format', 'html', '-o', file, '--store', `sqlite://${db}`]);
    expect(readFileSync(file, 'utf8')).toContain('<h3>Nodes side by side</h3>');
    const page = await open(file, 1280, 'report-html-nodes.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([`file://${file}`]);
    // Per node one chart, then the combined one with a line per node.
    const made = page.charts.filter((c) => c.series === 'widgets.made');
    expect(made).toHaveLength(3);
    expect(made.every((c) => c.canvas)).toBe(true);
    expect(made[2]!.lines).toBe(2);
    // The headline of a view-less tracer is the generic one, combined over the nodes.
    expect(page.tops.some((t) => /^Counters/.test(t))).toBe(true);
  }, 120_000);
});

describe('compare --format html of traced strings carrying markup (store written as the collector does)', () => {
  it('shows them as text, runs nothing of them and fetches nothing; both tasks overlaid, buckets side by side', async () => {
    const EVIL = '</script><img src=x onerror=alert(1)>';
    const db = join(dir, 'evil.db');
    const store = new SqliteStore(db);
    const ids: string[] = [];
    try {
      for (const [side, level, t0] of [
        ['a', 10, 1_700_000_000_000],
        ['b', 30, 1_700_000_100_000],
      ] as const) {
        const task = await store.createTask({
          name: `evil-${side} ${EVIL}`,
          labels: {},
          nodes: ['n'],
          ownerPid: null,
          ownerStart: null,
          target: null,
          startedAt: t0,
        });
        ids.push(task.id);
        const tr = await store.createTracer({
          taskId: task.id,
          tracer: 'widgets',
          pluginPackage: 'scalpels-plugin-widgets',
          pluginVersion: '1.0.0',
          node: 'n',
          options: { interval: 1000 },
          technique: null,
        });
        const at = (i: number) => t0 + i * 1000;
        store
          .recordSink(tr, {
            series: {
              'widgets.made': { kind: 'counter', unit: 'count', description: '' },
              [`widgets.${EVIL}`]: { kind: 'counter', unit: 'bytes', description: '' },
              'widgets.latency': { kind: 'histogram', unit: 'ns', description: '' },
            },
          })
          .write(
            Array.from({ length: 20 }, (_, i) => [
              {
                kind: 'sample' as const,
                series: 'widgets.made',
                value: level + (i % 3),
                labels: { comm: EVIL },
                ts: at(i),
              },
              {
                kind: 'sample' as const,
                series: `widgets.${EVIL}`,
                value: level * 100,
                ts: at(i),
              },
              ...(['1000', '10000', '+Inf'] as const).map((le, j) => ({
                kind: 'sample' as const,
                series: 'widgets.latency',
                value: level * (j + 1) + (i % 2),
                labels: { comm: EVIL, le },
                ts: at(i),
              })),
            ]).flat(),
          );
        await store.updateTracer(tr.id, { status: 'stopped', startedAt: t0, stoppedAt: at(20) });
        await store.updateTask(task.id, { status: 'stopped', stoppedAt: at(20) });
      }
    } finally {
      await store.close();
    }
    const file = join(dir, 'evil-compare.html');
    await ok(['compare', ...ids, '--format', 'html', '-o', file, '--store', `sqlite://${db}`]);
    const html = readFileSync(file, 'utf8');
    // Escaped in the markup, escaped in the data block, and the data still carries it whole.
    const data = checkSelfContained(html);
    expect(html).not.toMatch(/<img|onerror=alert\(1\)>/i);
    const parsed = JSON.parse(data) as {
      charts: { title: string }[];
      histograms: { title: string; bounds: string[]; a: number[]; b: number[] }[];
    };
    expect(parsed.charts.map((c) => c.title)).toContain(`widgets.${EVIL}`);
    // Per-bucket counts of both tasks, in bound order.
    expect(parsed.histograms).toHaveLength(1);
    expect(parsed.histograms[0]!.bounds).toEqual(['1000', '10000', '+Inf']);
    expect(parsed.histograms[0]!.a[1]).toBeLessThan(parsed.histograms[0]!.b[1]!);

    const page = await open(file, 1280, 'compare-html-evil.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([`file://${file}`]);
    expect(page.imgs).toBe(0);
    expect(page.title).toBe(`Scalpels compare: evil-a ${EVIL} vs evil-b ${EVIL}`);
    expect(page.text).toContain(`comm=${EVIL}`);
    expect(page.charts.map((c) => c.series)).toEqual([
      `widgets.${EVIL}`,
      'widgets.made',
      'widgets.latency',
    ]);
    for (const c of page.charts) expect(c.canvas, `chart ${c.series} not drawn`).toBe(true);
    for (const c of page.charts) expect(c.lines, `A and B in ${c.series}`).toBe(2);
    checkInteractive(page);
  }, 120_000);
});
