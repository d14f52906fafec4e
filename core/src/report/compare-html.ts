import type { Comparison, CompareSeriesRow, CompareSide } from './compare.js';
import { ratioText } from './compare.js';
import { human, sig } from './format.js';
import {
  bucketCounts,
  CLIENT_LIB,
  esc,
  htmlPage,
  looksCumulative,
  sortedBuckets,
} from './html-page.js';
import type { ReportViews } from './summary.js';
import type { ReportTimeline } from './timeline.js';

/**
 * The comparison as one self-contained HTML page, built like the HTML report (html-page.ts):
 * the tables first, as HTML; then interactive uPlot charts from a JSON data block: A and B
 * overlaid on one axis of seconds from each task's start, and histogram buckets as A and B bars
 * side by side.
 */

/** A histogram's value is a bucket count, whatever unit its bounds are in. */
const unitOf = (s: { kind: string; unit: string }): string =>
  s.kind === 'histogram' ? 'count' : s.unit;

const A_COLOR = '#0072b2';
const B_COLOR = '#d55e00';

/** A counter's total rate over time (every line of its chart summed), seconds from the start. */
function totalLine(
  tl: ReportTimeline,
  tracer: string,
  name: string,
): { unit: string; points: [number, number][] } | undefined {
  const chart = tl.charts.find((c) => c.tracer === tracer && c.name === name);
  if (!chart?.lines.length) return undefined;
  const sums = new Map<number, number>();
  for (const l of chart.lines)
    for (const [t, v] of l.points) sums.set(t - tl.from, (sums.get(t - tl.from) ?? 0) + v);
  return { unit: chart.unit, points: [...sums.entries()].sort((a, b) => a[0] - b[0]) };
}

/** A and B on one x axis (the union of their times); a side without a point there gets null. */
function overlay(
  a: [number, number][],
  b: [number, number][],
): { x: number[]; a: (number | null)[]; b: (number | null)[] } {
  const xs = [...new Set([...a, ...b].map((p) => p[0]))].sort((x, y) => x - y);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = (pts: [number, number][]): (number | null)[] => {
    const y: (number | null)[] = xs.map(() => null);
    for (const [t, v] of pts) y[at.get(t)!] = v;
    return y;
  };
  return { x: xs.map((t) => t / 1000), a: ys(a), b: ys(b) };
}

/** Bar for a ratio on a log scale: 1x in the middle, 0.25x and 4x at the ends. */
function ratioBar(r: number | null): string {
  if (r === null || r <= 0) return '';
  const pos = Math.max(-1, Math.min(1, Math.log(r) / Math.log(4)));
  const left = pos < 0 ? 50 + pos * 50 : 50;
  return `<span class="rb"><span style="left:${left.toFixed(1)}%;width:${(Math.abs(pos) * 50).toFixed(1)}%;background:${pos < 0 ? A_COLOR : B_COLOR}"></span></span>`;
}

/**
 * The page script: A and B overlaid per series name (hover values in the legend, drag to zoom,
 * every timeline following; double-click zooms out; click A or B in a legend to hide it), and
 * histogram buckets as grouped bars. Data only: it writes no markup from it.
 */
const APP = String.raw`(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('scalpels-data').textContent);
${CLIENT_LIB}
  function clock(s) { return '+' + (Math.abs(s) < 100 ? sig(s) : Math.round(s)) + 's'; }
  function shown(y) { return y.filter(function (v) { return v != null; }).length; }
  data.charts.forEach(function (c, i) {
    var el = document.getElementById('chart-' + i);
    var line = function (label, color, y) {
      return {
        label: label,
        stroke: color,
        width: 1.8,
        spanGaps: true,
        points: { show: shown(y) < 3 },
        value: function (u, v) { return fmt(v, c.unit); },
      };
    };
    charts.push(new uPlot({
      width: width(el),
      height: 200,
      // The nearest point of each side: A and B were sampled at their own times.
      cursor: { sync: { key: 'scalpels-compare', setSeries: false }, drag: { x: true, y: false }, hover: { skip: [null] } },
      scales: { x: { time: false, min: 0, max: data.span }, y: { range: fromZero } },
      legend: { live: true },
      axes: [
        { values: function (u, vals) { return vals.map(clock); } },
        { size: axisSize, values: function (u, vals) { return vals.map(function (v) { return fmt(v, c.unit); }); } },
      ],
      series: [
        { label: 'from start', value: function (u, v) { return v == null ? '-' : clock(v); } },
        line('A', data.colors.a, c.a),
        line('B', data.colors.b, c.b),
      ],
      plugins: [syncZoom],
    }, [c.x, c.a, c.b], el));
  });
  data.histograms.forEach(function (h, i) {
    histogram(document.getElementById('hist-' + i), h, [
      { label: 'A', color: data.colors.a, fill: data.colors.a + 'b0', counts: h.a },
      { label: 'B', color: data.colors.b, fill: data.colors.b + 'b0', counts: h.b },
    ]);
  });
  window.scalpelsCharts = charts;
})();`;

const CSS = `
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1f24}
main{max-width:1400px;margin:0 auto;padding:16px}h1{font-size:20px}h2{font-size:17px;margin-top:26px;border-bottom:2px solid #d8dde3}
small,.note{color:#5b6470}.note{font-size:12.5px}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #d8dde3;text-align:left;vertical-align:top}
th{background:#f7f9fb}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.key{overflow-wrap:anywhere}
tr.sig td{background:#fff6e0}.flag{font-weight:700;color:#b35900}
.rb{position:relative;display:inline-block;width:90px;height:10px;background:#eef1f4;vertical-align:middle}
.rb span{position:absolute;top:0;bottom:0}.rb:after{content:"";position:absolute;left:50%;top:-2px;bottom:-2px;border-left:1px solid #5b6470}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:12px}
.card{margin:0;padding:8px 10px;background:#f7f9fb;border:1px solid #d8dde3;border-radius:6px;break-inside:avoid}
figcaption{margin-bottom:4px;overflow-wrap:anywhere}.plot{min-height:200px;overflow:hidden}
.u-legend{font-size:11.5px;text-align:left}.u-legend .u-series th{font-weight:normal}
@media (max-width:600px){main{padding:8px}}
@media print{.card{break-inside:avoid}h2{break-after:avoid}}
`;

interface HistogramPair {
  title: string;
  tracer: string;
  /** Unit of the bucket bounds. */
  unit: string;
  bounds: string[];
  a: number[];
  b: number[];
}

/** Histograms: each side's bucket counts by bound, summed over every other label. */
function histogramPairs(c: Comparison, views: ReportViews): HistogramPair[] {
  const groups = new Map<
    string,
    { tracer: string; name: string; unit: string; a: Map<string, number>; b: Map<string, number> }
  >();
  for (const s of c.series) {
    if (s.kind !== 'histogram' || s.labels.le === undefined) continue;
    const k = `${s.tracer}\0${s.name}`;
    let g = groups.get(k);
    if (!g)
      groups.set(
        k,
        (g = { tracer: s.tracer, name: s.name, unit: s.unit, a: new Map(), b: new Map() }),
      );
    const le = s.labels.le;
    g.a.set(le, (g.a.get(le) ?? 0) + (s.a?.value ?? 0));
    g.b.set(le, (g.b.get(le) ?? 0) + (s.b?.value ?? 0));
  }
  const out: HistogramPair[] = [];
  for (const g of groups.values()) {
    const view = views[g.tracer]?.histograms?.[g.name];
    const a = sortedBuckets(g.a);
    const b = sortedBuckets(g.b);
    const cumulative = view?.cumulative ?? (looksCumulative(a) && looksCumulative(b));
    // With --ops, per operation: runs of different sizes compare like for like.
    const per = (n: number[], ops: number | undefined): number[] => n.map((x) => x / (ops ?? 1));
    out.push({
      title: g.name,
      tracer: g.tracer,
      unit: view?.boundUnit ?? (g.unit === 'count' ? '' : g.unit),
      bounds: a.map(([le]) => le),
      a: per(bucketCounts(a, cumulative), c.ops?.a),
      b: per(bucketCounts(b, cumulative), c.ops?.b),
    });
  }
  return out;
}

/** The comparison as one self-contained HTML page; the overlays come from both tasks' timelines. */
export function formatCompareHtml(
  c: Comparison,
  tlA?: ReportTimeline,
  tlB?: ReportTimeline,
  opts: { charts?: number; rows?: number; views?: ReportViews } = {},
): string {
  const rowsMax = opts.rows ?? 60;
  const ops = c.ops;
  const out: string[] = [
    `<h1>Compare <span style="color:${A_COLOR}">A</span> and <span style="color:${B_COLOR}">B</span></h1>`,
    `<div class="scroll"><table><thead><tr><th></th><th>task</th><th>name</th><th>started (UTC)</th><th>duration</th>${ops ? '<th>operations</th>' : ''}<th>target</th></tr></thead><tbody>`,
    ...(['a', 'b'] as const).map(
      (k) =>
        `<tr><td><b style="color:${k === 'a' ? A_COLOR : B_COLOR}">${k.toUpperCase()}</b></td><td>${esc(c[k].id)}</td><td>${esc(c[k].name)}</td><td>${esc(c[k].startedAt.replace('T', ' ').slice(0, 19))}</td><td class="n">${sig(c[k].durationS)} s</td>${ops ? `<td class="n">${ops[k]}</td>` : ''}<td>${esc(c[k].target ?? '-')}</td></tr>`,
    ),
    '</tbody></table></div>',
    '<p class="note">Counters compare their totals over the task, gauges their mean level, histograms their bucket counts. Processes are matched by name, not pid. ' +
      '<span class="flag">!</span> marks a change beyond 3 standard deviations of the noise estimated from the per-interval samples of both runs, and beyond 5%; <span class="flag">~</span> a change within the noise; no mark: fewer than 3 points to estimate it from.' +
      (ops
        ? ` Counters and histogram buckets per operation (A ${ops.a}, B ${ops.b} operations); the noise is that of the totals.`
        : '') +
      '</p>',
  ];
  const navAt = out.length;
  // Tables first: per tracer every series side by side, then the top event keys.
  const perOp = (s: CompareSeriesRow): boolean => ops !== undefined && s.kind !== 'gauge';
  const val = (s: CompareSeriesRow, x: CompareSide | null): string =>
    x ? esc(human(perOp(s) ? (x.perOp ?? null) : x.value, unitOf(s))) : '-';
  for (const tracer of [...new Set(c.series.map((s) => s.tracer))]) {
    const rows = c.series.filter((s) => s.tracer === tracer);
    out.push(
      `<h2>${esc(tracer)} <small>${rows.length} series${rows.length > rowsMax ? `, first ${rowsMax}` : ''}</small></h2>`,
      `<div class="scroll"><table><thead><tr><th></th><th>series</th><th>labels</th><th>kind</th><th>${ops ? 'A (/op)' : 'A'}</th><th>${ops ? 'B (/op)' : 'B'}</th><th>delta</th><th>B/A</th><th></th><th>noise σ</th></tr></thead><tbody>`,
      ...rows.slice(0, rowsMax).map((s) => {
        const d = perOp(s) ? (s.deltaPerOp ?? null) : s.delta;
        const ratio = perOp(s) && s.a?.perOp && s.b ? s.b.perOp! / s.a.perOp : s.ratio;
        return (
          `<tr class="${s.significant ? 'sig' : ''}"><td class="flag">${s.significant === true ? '!' : s.significant === false ? '~' : ''}</td><td>${esc(s.name)}</td><td class="key">${esc(
            Object.entries(s.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(' '),
          )}</td><td>${s.kind}</td><td class="n">${val(s, s.a)}</td><td class="n">${val(s, s.b)}</td>` +
          `<td class="n">${d === null ? '-' : esc(`${d > 0 ? '+' : ''}${human(d, unitOf(s))}`)}</td><td class="n">${s.a && s.b ? ratioText(ratio) : s.a ? 'gone' : 'new'}</td><td>${s.a && s.b ? ratioBar(ratio) : ''}</td><td class="n">${s.noise === null ? '-' : esc(human(s.noise, unitOf(s)))}</td></tr>`
        );
      }),
      '</tbody></table></div>',
    );
  }
  for (const tracer of [...new Set(c.events.map((e) => e.tracer))]) {
    const rows = c.events.filter((e) => e.tracer === tracer).slice(0, rowsMax);
    out.push(
      `<h2>${esc(tracer)} events</h2><div class="scroll"><table><thead><tr><th>count A</th><th>count B</th><th>B/A</th><th>total ms A</th><th>total ms B</th><th>B/A</th><th>p95 ms A</th><th>p95 ms B</th><th>key</th></tr></thead><tbody>`,
      ...rows.map(
        (e) =>
          `<tr><td class="n">${e.a?.count ?? '-'}</td><td class="n">${e.b?.count ?? '-'}</td><td class="n">${e.a && e.b ? ratioText(e.countRatio) : e.a ? 'gone' : 'new'}</td>` +
          `<td class="n">${e.a ? sig(e.a.totalMs) : '-'}</td><td class="n">${e.b ? sig(e.b.totalMs) : '-'}</td><td class="n">${e.a && e.b ? ratioText(e.totalMsRatio) : '-'}</td>` +
          `<td class="n">${e.a ? sig(e.a.p95Ms) : '-'}</td><td class="n">${e.b ? sig(e.b.p95Ms) : '-'}</td><td class="key"><code>${esc(e.key)}</code></td></tr>`,
      ),
      '</tbody></table></div>',
    );
  }

  // Charts: the counter names that changed most, |ΣB − ΣA| / (ΣA + ΣB) over their series.
  const charts: ({ title: string; tracer: string; unit: string } & ReturnType<typeof overlay>)[] =
    [];
  const figs: string[] = [];
  let span = 0;
  if (tlA && tlB) {
    span = Math.max(tlA.to - tlA.from, tlB.to - tlB.from) / 1000;
    const groups = new Map<
      string,
      { tracer: string; name: string; unit: string; a: number; b: number; sig: boolean }
    >();
    for (const s of c.series) {
      if (s.kind !== 'counter') continue;
      const k = `${s.tracer}\0${s.name}`;
      const g = groups.get(k) ?? {
        tracer: s.tracer,
        name: s.name,
        unit: s.unit,
        a: 0,
        b: 0,
        sig: false,
      };
      g.a += s.a?.value ?? 0;
      g.b += s.b?.value ?? 0;
      g.sig ||= s.significant === true;
      groups.set(k, g);
    }
    // Relative change, damped for tiny totals (0 → 1 major fault is not the headline).
    const change = (g: { a: number; b: number }): number => {
      const total = Math.abs(g.a) + Math.abs(g.b);
      return total > 0 ? (Math.abs(g.b - g.a) / total) * Math.min(1, Math.log10(1 + total) / 3) : 0;
    };
    const candidates = [...groups.values()]
      .filter((g) => g.a !== 0 || g.b !== 0)
      .sort((x, y) => Number(y.sig) - Number(x.sig) || change(y) - change(x));
    for (const s of candidates) {
      const a = totalLine(tlA, s.tracer, s.name);
      const b = totalLine(tlB, s.tracer, s.name);
      if (!a && !b) continue;
      const unit = (a ?? b)!.unit;
      figs.push(
        `<figure class="card" data-series="${esc(s.name)}"><figcaption><b>${esc(s.name)}</b> <small>${esc(s.tracer)} · ${esc(unit)}, all series summed · totals A ${esc(human(s.a, s.unit))}, B ${esc(human(s.b, s.unit))}, ${ratioText(s.a ? s.b / s.a : null)}</small></figcaption>` +
          `<div class="plot" id="chart-${charts.length}"></div></figure>`,
      );
      charts.push({
        title: s.name,
        tracer: s.tracer,
        unit,
        ...overlay(a?.points ?? [], b?.points ?? []),
      });
      if (charts.length >= (opts.charts ?? 12)) break;
    }
  }
  const hists = histogramPairs(c, opts.views ?? {});
  if (figs.length)
    out.push(
      '<h2 id="timelines">Timelines <small>seconds from each task’s start</small></h2>',
      '<p class="note">The series names that changed most, A and B overlaid. Hover for both values; drag across a chart to zoom (every timeline follows), double-click to zoom out; click A or B in a legend to hide it.</p>',
      `<div class="grid">${figs.join('')}</div>`,
    );
  if (hists.length)
    out.push(
      `<h2 id="histograms">Histograms <small>bucket counts${ops ? ' per operation' : ''}, A and B side by side</small></h2><div class="grid">`,
      ...hists.map(
        (h, i) =>
          `<figure class="card hist" data-series="${esc(h.title)}"><figcaption><b>${esc(h.title)}</b> <small>${esc(h.tracer)} · bounds in ${esc(h.unit || 'the series unit')} · A ${esc(human(h.a.reduce((x, n) => x + n, 0)))}, B ${esc(human(h.b.reduce((x, n) => x + n, 0)))} in all</small></figcaption>` +
          `<div class="plot" id="hist-${i}"></div></figure>`,
      ),
      '</div>',
    );
  // The charts follow the tables, which may be long: links down to them.
  const nav = [
    figs.length ? '<a href="#timelines">timelines</a>' : '',
    hists.length ? '<a href="#histograms">histograms</a>' : '',
  ].filter(Boolean);
  if (nav.length)
    out.splice(navAt, 0, `<p class="note">Charts below the tables: ${nav.join(' · ')}.</p>`);
  out.push(
    `<p class="note">${esc(c.format)} · generated by Scalpels · self-contained, works offline · charts drawn by uPlot (MIT licence, in the source)</p>`,
  );
  return htmlPage({
    title: `Scalpels compare: ${c.a.name} vs ${c.b.name}`,
    css: CSS,
    main: out,
    data: { span, colors: { a: A_COLOR, b: B_COLOR }, charts, histograms: hists },
    app: APP,
  });
}
