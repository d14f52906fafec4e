import type { ReportTracer, ReportV1 } from '../report.js';
import { humanize } from '../units.js';
import { human, offset, sig } from './format.js';
import {
  bucketCounts,
  CLIENT_LIB,
  esc,
  htmlPage,
  looksCumulative,
  sortedBuckets,
} from './html-page.js';
import {
  summarize,
  tableCells,
  type ReportSummary,
  type ReportViews,
  type SummaryTable,
} from './summary.js';
import type { Chart, ReportTimeline } from './timeline.js';

/**
 * The HTML report: one self-contained file that works offline. The headline and top tables come
 * first, as HTML; the interactive charts after, drawn by uPlot (inlined) from a JSON data block.
 * The Content-Security-Policy admits only the two inlined scripts, by hash, and fetches nothing;
 * traced text reaches the page as escaped JSON data or escaped HTML, never as code.
 */

/** Colour-blind-safe palette (Okabe-Ito) plus grey for "other". */
const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000'];
const OTHER = '#999999';

/** A chart as the page script draws it: x in seconds since the epoch, one y array per line. */
interface ChartData {
  title: string;
  tracer: string;
  unit: string;
  kind: string;
  note: string;
  x: number[];
  lines: { label: string; color: string; y: (number | null)[] }[];
}

interface HistogramData {
  title: string;
  tracer: string;
  /** Unit of the bucket bounds. */
  unit: string;
  bounds: string[];
  counts: number[];
}

/** Lines on one x axis: the union of their times; a line without a point there gets null. */
function aligned(
  lines: { label: string; color: string; points: [number, number][] }[],
  zeroFill: boolean,
): { x: number[]; lines: ChartData['lines'] } {
  const xs = [...new Set(lines.flatMap((l) => l.points.map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  return {
    x: xs.map((t) => t / 1000),
    lines: lines.map((l) => {
      const y: (number | null)[] = xs.map(() => (zeroFill ? 0 : null));
      for (const [t, v] of l.points) y[at.get(t)!] = v;
      return { label: l.label, color: l.color, y };
    }),
  };
}

function chartData(c: Chart, node: string | undefined): ChartData {
  const counter = c.kind === 'counter';
  const lines = c.lines.map((l, i) => ({
    label: l.label,
    color: l.label.startsWith('other (') ? OTHER : COLORS[i % COLORS.length]!,
    points: l.points,
  }));
  return {
    title: c.name,
    tracer: node ? `${c.tracer} on ${node}` : c.tracer,
    unit: c.unit,
    kind: c.kind,
    note: [
      counter
        ? `rate per second over ${sig(c.stepMs / 1000)} s buckets`
        : `mean per ${sig(c.stepMs / 1000)} s bucket`,
      c.folded && counter ? `${c.folded} smaller series summed as other` : '',
      c.zero ? `${c.zero} all-zero series hidden` : '',
    ]
      .filter(Boolean)
      .join(' · '),
    ...aligned(lines, counter),
  };
}

/** A task on several nodes: per tracer and series, one line per node (its lines summed). */
function combinedCharts(r: ReportV1, tl: ReportTimeline): ChartData[] {
  const nodeOf = new Map(r.tracers.map((t) => [t.id, t.node]));
  if (new Set(nodeOf.values()).size < 2) return [];
  const groups = new Map<string, Chart[]>();
  for (const c of tl.charts) {
    if (!c.lines.length) continue;
    const k = `${c.tracer}\0${c.name}`;
    groups.set(k, [...(groups.get(k) ?? []), c]);
  }
  const out: ChartData[] = [];
  for (const charts of groups.values()) {
    if (charts.length < 2) continue;
    const first = charts[0]!;
    const lines = charts.map((c, i) => {
      const sums = new Map<number, number>();
      for (const l of c.lines) for (const [t, v] of l.points) sums.set(t, (sums.get(t) ?? 0) + v);
      return {
        label: nodeOf.get(c.tracerId) ?? String(c.tracerId),
        color: COLORS[i % COLORS.length]!,
        points: [...sums.entries()].sort((a, b) => a[0] - b[0]),
      };
    });
    out.push({
      title: first.name,
      tracer: `${first.tracer} on ${charts.length} nodes`,
      unit: first.unit,
      kind: first.kind,
      note: 'one line per node: every series of the node summed',
      ...aligned(lines, first.kind === 'counter'),
    });
  }
  return out;
}

/** Histograms over the task: bucket counts by bound, summed over every other label. */
function histograms(r: ReportV1, views: ReportViews): HistogramData[] {
  const out: HistogramData[] = [];
  const groups = new Map<
    string,
    { tracer: string; name: string; unit: string; b: Map<string, number> }
  >();
  for (const tr of r.tracers)
    for (const s of tr.series) {
      if (s.kind !== 'histogram' || s.labels.le === undefined) continue;
      const k = `${tr.tracer}\0${s.name}`;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { tracer: tr.tracer, name: s.name, unit: s.unit, b: new Map() }));
      g.b.set(s.labels.le, (g.b.get(s.labels.le) ?? 0) + s.sum);
    }
  for (const g of groups.values()) {
    const view = views[g.tracer]?.histograms?.[g.name];
    const sorted = sortedBuckets(g.b);
    const counts = bucketCounts(sorted, view?.cumulative ?? looksCumulative(sorted));
    if (!counts.some((n) => n > 0)) continue;
    out.push({
      title: g.name,
      tracer: g.tracer,
      unit: view?.boundUnit ?? (g.unit === 'count' ? '' : g.unit),
      bounds: sorted.map(([le]) => le),
      counts,
    });
  }
  return out;
}

function headlineHtml(s: ReportSummary): string {
  const figs = [
    { label: 'duration', value: humanize(s.durationS, 's'), perOp: '', tracer: '' },
    ...s.headline.map((f) => ({
      label: f.label,
      value: humanize(f.value, f.unit),
      perOp: f.perOp === null ? '' : `${humanize(f.perOp, f.unit)} per op`,
      tracer: f.tracer,
    })),
  ];
  const perOp =
    s.ops !== null && s.headline.some((f) => f.perOp !== null)
      ? `<p class="perop"><b>per operation</b> (${s.ops} operations): ${s.headline
          .filter((f) => f.perOp !== null)
          .map((f) => `${esc(humanize(f.perOp, f.unit))} ${esc(f.label)}`)
          .join(', ')}</p>`
      : '';
  return (
    `<section class="headline"><h2>What the workload cost</h2>${perOp}<div class="figs">` +
    figs
      .map(
        (f) =>
          `<div class="fig"><div class="v">${esc(f.value)}</div><div class="l">${esc(f.label)}</div>` +
          `${f.perOp ? `<div class="po">${esc(f.perOp)}</div>` : ''}${f.tracer ? `<div class="t">${esc(f.tracer)}</div>` : ''}</div>`,
      )
      .join('') +
    '</div></section>'
  );
}

function summaryTableHtml(t: SummaryTable, ops: number | null): string {
  const { header, rows, keys } = tableCells(t, ops, humanize);
  const rank = t.rankedBy;
  const total = t.rows.reduce((a, r) => a + Math.abs(r.values[rank] ?? 0), 0);
  const body = rows
    .map((cells, i) => {
      const row = t.rows[i]!;
      const v = row.values[rank] ?? 0;
      const share = total ? (Math.abs(v) / total) * 100 : 0;
      // Keys whole here (the text report cuts long ones).
      return (
        '<tr>' +
        row.key
          .map((k) => `<td class="key"><code>${esc(k === '' ? '(none)' : k)}</code></td>`)
          .join('') +
        cells
          .slice(keys)
          .map((c) => `<td class="n">${esc(c)}</td>`)
          .join('') +
        `<td class="bar"><span style="width:${share.toFixed(1)}%"></span></td></tr>`
      );
    })
    .join('');
  return (
    `<div class="top"><h4>${esc(t.title)}${t.more ? ` <small>top ${t.rows.length} of ${t.rows.length + t.more}</small>` : ''}</h4>` +
    `<div class="scroll"><table><thead><tr>${header.map((h, j) => `<th${j >= keys ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}<th></th></tr></thead><tbody>${body}</tbody></table></div></div>`
  );
}

function sectionsHtml(s: ReportSummary): string {
  return s.sections
    .map(
      (sec) =>
        `<section class="tracer"><h3>${esc(sec.title)} <small>${esc(sec.tracer)} on ${esc(sec.nodes.join(', '))} · ${esc(sec.status)}${sec.technique ? ` [${esc(sec.technique)}]` : ''} · ${sec.records} records${sec.dropped ? ` · <b class="failed">${sec.dropped} dropped</b>` : ''}</small></h3>` +
        (sec.error ? `<p class="failed">${esc(sec.error)}</p>` : '') +
        (sec.tables.length
          ? sec.tables.map((t) => summaryTableHtml(t, s.ops)).join('')
          : '<p class="note">No activity recorded.</p>') +
        '</section>',
    )
    .join('');
}

/**
 * The page script: draws every chart with uPlot from the JSON data block (hover values in the
 * legend, drag to zoom, zoom to a phase or around a marker, click a legend entry to hide a
 * series), cursors and zoom shared by every time chart. Data only: it writes no markup from it.
 */
const APP = String.raw`(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('scalpels-data').textContent);
${CLIENT_LIB}
  function clock(t) {
    var s = t - data.from / 1000;
    return '+' + (Math.abs(s) < 100 ? sig(s) : Math.round(s)) + 's';
  }
  var markerPlugin = {
    hooks: {
      draw: [function (u) {
        var ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = '#7a3e9d';
        ctx.fillStyle = '#7a3e9d';
        ctx.setLineDash([4, 3]);
        ctx.font = Math.round(10 * devicePixelRatio) + 'px sans-serif';
        data.markers.forEach(function (m) {
          var x = u.valToPos(m.ts / 1000, 'x', true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillText(m.text.length > 28 ? m.text.slice(0, 27) + '…' : m.text, x + 3, u.bbox.top + 10 * devicePixelRatio);
        });
        ctx.restore();
      }],
    },
  };
  data.charts.forEach(function (c, i) {
    var el = document.getElementById('chart-' + i);
    var opts = {
      width: width(el),
      height: 200,
      cursor: { sync: { key: 'scalpels', setSeries: false }, drag: { x: true, y: false } },
      scales: { x: { time: false, min: data.from / 1000, max: data.to / 1000 } },
      legend: { live: true },
      axes: [
        { values: function (u, vals) { return vals.map(clock); } },
        { size: axisSize, values: function (u, vals) { return vals.map(function (v) { return fmt(v, c.unit); }); } },
      ],
      series: [{ label: 'time', value: function (u, v) { return v == null ? '-' : clock(v); } }].concat(
        c.lines.map(function (l) {
          return {
            label: l.label,
            stroke: l.color,
            width: 1.6,
            spanGaps: true,
            points: { show: c.x.length < 3 },
            value: function (u, v) { return fmt(v, c.unit); },
          };
        })
      ),
      plugins: [syncZoom, markerPlugin],
    };
    charts.push(new uPlot(opts, [c.x].concat(c.lines.map(function (l) { return l.y; })), el));
  });
  data.histograms.forEach(function (h, i) {
    histogram(document.getElementById('hist-' + i), h, [{ label: 'count', color: '#0072b2', fill: 'rgba(0,114,178,0.6)', counts: h.counts }]);
  });
  // Zoom buttons: the whole task, each phase between markers, a window around each marker.
  document.querySelectorAll('button[data-from]').forEach(function (b) {
    b.addEventListener('click', function () {
      zoom(Number(b.getAttribute('data-from')) / 1000, Number(b.getAttribute('data-to')) / 1000);
    });
  });
  window.scalpelsCharts = charts;
})();`;

/** Rows of the collapsed all-series table; the rest are in `--format csv|json`. */
const SERIES_ROWS = 400;

function seriesTableHtml(tr: ReportTracer): string {
  const more = tr.series.length - SERIES_ROWS;
  const rows = tr.series
    .slice(0, SERIES_ROWS)
    .map(
      (s) =>
        `<tr><td>${esc(s.name)}</td><td class="key">${esc(
          Object.entries(s.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        )}</td><td>${esc(s.unit)}</td><td>${s.kind}</td><td class="n">${s.points}</td>` +
        `<td class="n">${s.kind === 'gauge' ? '-' : esc(human(s.sum, s.unit))}</td><td class="n">${s.rate === null ? '-' : esc(human(s.rate, `${s.unit}/s`))}</td>` +
        `<td class="n">${esc(human(s.min, s.unit))}</td><td class="n">${esc(human(s.mean, s.unit))}</td><td class="n">${esc(human(s.max, s.unit))}</td></tr>`,
    )
    .join('');
  return (
    `<details><summary>All ${tr.series.length} series of ${esc(tr.tracer)}</summary><div class="scroll"><table>` +
    `<thead><tr><th>series</th><th>labels</th><th>unit</th><th>kind</th><th>points</th><th>sum</th><th>rate</th><th>min</th><th>mean</th><th>max</th></tr></thead><tbody>${rows}</tbody></table></div>${more > 0 ? `<p class="note">${more} more series: see <code>--format csv</code> or <code>json</code>.</p>` : ''}</details>`
  );
}

const CSS = `
:root{--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--bg:#fff;--card:#f7f9fb;--accent:#0072b2}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1400px;margin:0 auto;padding:16px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}h4{font-size:14px;margin:12px 0 4px}
small,.note,.unit,.kind{color:var(--muted)}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0}
.meta dt{color:var(--muted)}.meta dd{margin:0;overflow-wrap:anywhere}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:12px}
.card{margin:0;padding:8px 10px;background:var(--card);border:1px solid var(--line);border-radius:6px;break-inside:avoid}
figcaption{margin-bottom:4px;overflow-wrap:anywhere}
.note{font-size:11.5px;margin:2px 0 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;width:auto;min-width:min(100%,640px)}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--card);font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.key{overflow-wrap:anywhere;word-break:break-word;min-width:12ch}
td.bar{min-width:90px;white-space:nowrap;font-size:11px;color:var(--muted)}
td.bar span{display:inline-block;height:9px;background:var(--accent);opacity:.75;margin-right:4px;vertical-align:middle;max-width:70px}
.failed{color:#b00020}
code{font:12px ui-monospace,"DejaVu Sans Mono",monospace}
details{margin:10px 0}summary{cursor:pointer;color:var(--accent)}
footer{margin:32px 0 8px;color:var(--muted);font-size:12px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px}
.fig{padding:8px 10px;background:var(--card);border:1px solid var(--line);border-radius:6px}
.fig .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}.fig .l{color:var(--fg)}
.fig .po{color:var(--accent);font-size:12px}.fig .t{color:var(--muted);font-size:11px}
.perop{margin:4px 0 10px}
section.tracer{margin:6px 0 14px}
th.n{text-align:right}
.zoom{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 10px}
.zoom button{font:inherit;font-size:12px;padding:2px 8px;border:1px solid var(--line);border-radius:4px;background:var(--card);cursor:pointer}
.plot{min-height:200px;overflow:hidden}
.u-legend{font-size:11.5px;text-align:left}.u-legend .u-series th{font-weight:normal}
@media (max-width:600px){main{padding:8px}.meta{grid-template-columns:1fr}.meta dt{margin-top:4px}}
@media print{main{max-width:none;padding:0}.grid{grid-template-columns:1fr 1fr}h2{break-after:avoid}.card,.top{break-inside:avoid}details>summary{display:none}}
`;

/** Renders the report and its timeline into one HTML document. */
export function formatReportHtml(
  r: ReportV1,
  tl: ReportTimeline,
  opts: { views?: ReportViews } = {},
): string {
  const views = opts.views ?? {};
  const summary = r.summary ?? summarize(r, views);
  const t = r.task;
  const duration = (tl.to - tl.from) / 1000;
  const meta: [string, string][] = [
    ['task', t.id],
    ['status', t.status],
    ['target', t.target ?? '-'],
    ['started', `${t.startedAt.replace('T', ' ').replace('Z', ' UTC')}`],
    ['stopped', t.stoppedAt ? t.stoppedAt.replace('T', ' ').replace('Z', ' UTC') : 'running'],
    ['duration', `${sig(duration)} s`],
    ['nodes', t.nodes.join(', ') || '-'],
  ];
  if (t.ops) meta.push(['operations', String(t.ops)]);
  const labels = Object.entries(t.labels);
  if (labels.length) meta.push(['labels', labels.map(([k, v]) => `${k}=${v}`).join(' ')]);

  // Chart data: per tracer (and node) its time charts, then the nodes side by side, histograms.
  const multiNode = new Set(r.tracers.map((x) => x.node)).size > 1;
  const charts: ChartData[] = [];
  const chartHtml: string[] = [];
  const figure = (c: ChartData, id: string): string =>
    `<figure class="card" data-series="${esc(c.title)}"><figcaption><b>${esc(c.title)}</b> <span class="unit">${esc(c.unit)}</span> <span class="kind">${esc(c.kind)}</span></figcaption>` +
    `<div class="plot" id="${id}"></div><p class="note">${esc(c.note)}</p></figure>`;
  for (const tr of r.tracers) {
    const mine = tl.charts.filter((c) => c.tracerId === tr.id && c.lines.length > 0);
    const quiet = tl.charts.filter((c) => c.tracerId === tr.id && c.lines.length === 0);
    if (!mine.length && !quiet.length) continue;
    chartHtml.push(`<h3>${esc(tr.tracer)} <small>${esc(tr.node)}</small></h3><div class="grid">`);
    for (const c of mine) {
      const d = chartData(c, multiNode ? tr.node : undefined);
      chartHtml.push(figure(d, `chart-${charts.length}`));
      charts.push(d);
    }
    chartHtml.push('</div>');
    if (quiet.length)
      chartHtml.push(
        `<p class="note">No activity in: ${esc(quiet.map((c) => c.name).join(', '))}.</p>`,
      );
  }
  const combined = combinedCharts(r, tl);
  if (combined.length) {
    chartHtml.push('<h3>Nodes side by side</h3><div class="grid">');
    for (const c of combined) {
      chartHtml.push(figure(c, `chart-${charts.length}`));
      charts.push(c);
    }
    chartHtml.push('</div>');
  }
  const hists = histograms(r, views);
  if (hists.length) {
    chartHtml.push(
      '<h3>Histograms <small>bucket counts over the task</small></h3><div class="grid">',
    );
    hists.forEach((h, i) =>
      chartHtml.push(
        `<figure class="card hist" data-series="${esc(h.title)}"><figcaption><b>${esc(h.title)}</b> <span class="unit">${esc(h.tracer)}</span> <span class="kind">histogram</span></figcaption>` +
          `<div class="plot" id="hist-${i}"></div><p class="note">${esc(`${h.counts.reduce((a, n) => a + n, 0)} in all; bars are bucket counts, bounds in ${h.unit || 'the series unit'}`)}</p></figure>`,
      ),
    );
    chartHtml.push('</div>');
  }
  // Zoom targets: the task, each phase between markers, ±5% of the task around each marker.
  const zooms: { label: string; from: number; to: number }[] = [
    { label: 'whole task', from: tl.from, to: tl.to },
  ];
  if (tl.phases.length > 1)
    for (const p of tl.phases) zooms.push({ label: `phase: ${p.label}`, from: p.from, to: p.to });
  const around = Math.max(1000, (tl.to - tl.from) * 0.05);
  for (const m of tl.markers)
    zooms.push({ label: `around: ${m.text}`, from: m.ts - around, to: m.ts + around });

  const data = {
    from: tl.from,
    to: tl.to,
    markers: tl.markers.map((m) => ({ ts: m.ts, text: m.text })),
    charts,
    histograms: hists,
  };
  const out: string[] = [
    `<header><h1>${esc(t.name)}</h1><dl class="meta">${meta.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></header>`,
    headlineHtml(summary),
    `<h2>Top rows</h2>${sectionsHtml(summary)}`,
  ];
  if (chartHtml.length)
    out.push(
      '<h2>Charts</h2><p class="note">Hover for values; drag across a chart to zoom (every chart follows), double-click to zoom out; click a legend entry to hide or show its line.</p>',
      `<div class="zoom">${zooms.map((z) => `<button type="button" data-from="${z.from}" data-to="${z.to}">${esc(z.label)}</button>`).join('')}</div>`,
      ...chartHtml,
    );
  // Tracers.
  out.push(
    '<h2>Tracers</h2><div class="scroll"><table><thead><tr><th>tracer</th><th>plugin</th><th>node</th><th>status</th><th>technique</th><th>records</th><th>parse errors</th><th>dropped</th><th>note</th></tr></thead><tbody>',
    ...r.tracers.map(
      (tr) =>
        `<tr><td>${esc(tr.tracer)}</td><td>${esc(`${tr.plugin.package}@${tr.plugin.version}`)}</td><td>${esc(tr.node)}</td>` +
        `<td class="${tr.status === 'failed' ? 'failed' : ''}">${esc(tr.status)}${tr.status === 'failed' && tr.exitCode !== null ? ` (exit ${tr.exitCode})` : ''}</td>` +
        `<td>${esc(tr.technique ?? '-')}</td><td class="n">${tr.records}</td><td class="n">${tr.parseErrors}</td><td class="n">${tr.dropped}</td><td class="key">${esc(tr.error ?? '')}</td></tr>`,
    ),
    '</tbody></table></div>',
  );
  // Markers and phases.
  if (tl.markers.length) {
    out.push(
      '<h2>Markers</h2><div class="scroll"><table><thead><tr><th>time (UTC)</th><th>offset</th><th>marker</th><th>node</th></tr></thead><tbody>',
      ...tl.markers.map(
        (m) =>
          `<tr><td>${esc(new Date(m.ts).toISOString().slice(11, 23))}</td><td class="n">${offset(m.ts - tl.from)}</td><td>${esc(m.text)}</td><td>${esc(m.node ?? '')}</td></tr>`,
      ),
      '</tbody></table></div>',
    );
  }
  const phases: string[] = [];
  if (tl.phases.length > 1) {
    const keys = new Map<string, { tracer: string; name: string; unit: string; total: number }>();
    for (const p of tl.phases)
      for (const x of p.totals) {
        const k = `${x.tracer}\0${x.name}`;
        const e = keys.get(k) ?? { tracer: x.tracer, name: x.name, unit: x.unit, total: 0 };
        e.total += Math.abs(x.sum);
        keys.set(k, e);
      }
    const rows = [...keys.values()]
      .filter((k) => k.total > 0)
      .sort((a, b) => a.tracer.localeCompare(b.tracer) || a.name.localeCompare(b.name));
    if (rows.length) {
      phases.push(
        '<h2>Phases between markers</h2><p class="note">Counter totals and rates per phase (from one marker to the next).</p><div class="scroll"><table><thead><tr><th>tracer</th><th>series</th>',
        ...tl.phases.map(
          (p) =>
            `<th>${esc(p.label)}<br><small>${offset(p.from - tl.from)} · ${sig((p.to - p.from) / 1000)} s</small></th>`,
        ),
        '</tr></thead><tbody>',
        ...rows.map(
          (k) =>
            `<tr><td>${esc(k.tracer)}</td><td>${esc(k.name)}</td>` +
            tl.phases
              .map((p) => {
                const x = p.totals.find((y) => y.tracer === k.tracer && y.name === k.name);
                const secs = Math.max(0.001, (p.to - p.from) / 1000);
                return `<td class="n">${x ? `${esc(human(x.sum, k.unit))}<br><small>${esc(human(x.sum / secs, `${k.unit}/s`))}</small>` : '-'}</td>`;
              })
              .join('') +
            '</tr>',
        ),
        '</tbody></table></div>',
      );
    }
  }
  // Every series, collapsed.
  const all = r.tracers.filter((tr) => tr.series.length);
  if (all.length) out.push(`<h2>All series</h2>${all.map(seriesTableHtml).join('')}`);
  out.push(...phases);
  out.push(
    `<footer>${esc(r.format)} · generated by Scalpels on ${esc(new Date().toISOString().slice(0, 19).replace('T', ' '))} UTC · self-contained, works offline · charts drawn by uPlot (MIT licence, below)</footer>`,
  );
  return htmlPage({ title: `Scalpels report: ${t.name}`, css: CSS, main: out, data, app: APP });
}
