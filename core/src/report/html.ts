import type { ReportTracer, ReportV1 } from '../report.js';
import { human, niceCeil, offset, sig } from './format.js';
import type { Chart, ReportTimeline, TopTable } from './timeline.js';

/**
 * The HTML report: one self-contained file (inline CSS and SVG drawn here, no script, no font,
 * no request), readable in a narrow window and printable.
 */

const esc = (s: unknown): string =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** Colour-blind-safe palette (Okabe-Ito) plus grey for "other". */
const COLORS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000'];
const OTHER = '#999999';

/** Titles for the event tables of the known tracers. */
const EVENT_TITLES: Record<string, string> = {
  'sql-queries': 'SQL profile',
  'rpc-calls': 'RPC methods',
  'python-calls': 'Python functions',
  'fs-io': 'Files',
  syscalls: 'System calls',
};

const W = 640;
const H = 210;
const ML = 62;
const MR = 14;
const MT = 18;
const MB = 24;

function chartSvg(c: Chart, tl: ReportTimeline): string {
  const span = tl.to - tl.from;
  const x = (t: number): number => ML + ((t - tl.from) / span) * (W - ML - MR);
  let lo = 0;
  let hi = 0;
  for (const l of c.lines)
    for (const [, v] of l.points) {
      if (v > hi) hi = v;
      if (v < lo) lo = v;
    }
  hi = niceCeil(hi, c.unit);
  lo = lo < 0 ? -niceCeil(-lo, c.unit) : 0;
  const y = (v: number): number => H - MB - ((v - lo) / (hi - lo)) * (H - MT - MB);
  const out: string[] = [
    `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(`${c.name} (${c.unit})`)}" xmlns="http://www.w3.org/2000/svg">`,
  ];
  // Grid and y labels.
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const yy = y(v).toFixed(1);
    out.push(
      `<line class="grid" x1="${ML}" x2="${W - MR}" y1="${yy}" y2="${yy}"/>`,
      `<text class="tick" x="${ML - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${esc(human(v, c.unit.replace(/\/s$/, '')))}</text>`,
    );
  }
  // Shared time axis: the task's span, the same on every chart.
  for (let i = 0; i <= 5; i++) {
    const t = tl.from + (span * i) / 5;
    out.push(
      `<text class="tick" x="${x(t).toFixed(1)}" y="${H - 6}" text-anchor="${i === 0 ? 'start' : i === 5 ? 'end' : 'middle'}">${offset(t - tl.from)}</text>`,
    );
  }
  for (const [i, m] of tl.markers.entries()) {
    if (m.ts < tl.from || m.ts > tl.to) continue;
    const xx = x(m.ts).toFixed(1);
    out.push(
      `<g class="marker"><title>${esc(`${new Date(m.ts).toISOString()} ${m.text}`)}</title>` +
        `<line x1="${xx}" x2="${xx}" y1="${MT - 6}" y2="${H - MB}"/>` +
        `<text x="${Number(xx) + 3}" y="${MT - 8 + (i % 2) * 10}">${esc(m.text.length > 28 ? `${m.text.slice(0, 27)}…` : m.text)}</text></g>`,
    );
  }
  c.lines.forEach((l, i) => {
    const color = l.label.startsWith('other (') ? OTHER : COLORS[i % COLORS.length]!;
    const title = `<title>${esc(l.label)}</title>`;
    if (l.points.length === 1) {
      const [t, v] = l.points[0]!;
      out.push(
        `<circle class="pt" cx="${x(t).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${color}">${title}</circle>`,
      );
    } else {
      const pts = l.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      out.push(
        `<polyline class="line" points="${pts}" stroke="${color}" data-points="${l.points.length}">${title}</polyline>`,
      );
    }
  });
  out.push(
    `<line class="axis" x1="${ML}" x2="${W - MR}" y1="${H - MB}" y2="${H - MB}"/>`,
    `<line class="axis" x1="${ML}" x2="${ML}" y1="${MT}" y2="${H - MB}"/>`,
    '</svg>',
  );
  return out.join('');
}

function chartFigure(c: Chart, tl: ReportTimeline): string {
  const counter = c.kind === 'counter';
  const legend = c.lines
    .map((l, i) => {
      const color = l.label.startsWith('other (') ? OTHER : COLORS[i % COLORS.length]!;
      const what = counter
        ? `total ${human(l.weight, c.unit.replace(/\/s$/, ''))}`
        : `peak ${human(l.weight, c.unit)}`;
      return `<li><span class="sw" style="background:${color}"></span>${esc(l.label)} <small>${esc(what)}</small></li>`;
    })
    .join('');
  const notes = [
    counter
      ? `rate per second over ${sig(c.stepMs / 1000)} s buckets`
      : `mean per ${sig(c.stepMs / 1000)} s bucket`,
    c.zero ? `${c.zero} all-zero series hidden` : '',
  ]
    .filter(Boolean)
    .join(' · ');
  return (
    `<figure class="card" data-series="${esc(c.name)}"><figcaption><b>${esc(c.name)}</b> <span class="unit">${esc(c.unit)}</span> <span class="kind">${c.kind}</span></figcaption>` +
    chartSvg(c, tl) +
    `<ul class="legend">${legend}</ul><p class="note">${esc(notes)}</p></figure>`
  );
}

function topTableHtml(t: TopTable): string {
  const rows = t.rows
    .map(
      (r, i) =>
        `<tr><td class="n">${i + 1}</td><td class="key">${esc(r.key)}</td><td class="n">${esc(human(r.sum, t.unit))}</td><td class="n">${esc(human(r.rate, `${t.unit}/s`))}</td>` +
        `<td class="bar"><span style="width:${(r.share * 100).toFixed(1)}%"></span>${(r.share * 100).toFixed(1)}%</td></tr>`,
    )
    .join('');
  return (
    `<div class="top"><h4>${esc(t.name)} by ${esc(t.by.join(', '))} <small>total ${esc(human(t.total, t.unit))}${t.more ? `, ${t.more} more` : ''}</small></h4>` +
    `<div class="scroll"><table><thead><tr><th>#</th><th>${esc(t.by.join(' '))}</th><th>total</th><th>rate</th><th>share</th></tr></thead><tbody>${rows}</tbody></table></div></div>`
  );
}

function eventsHtml(tr: ReportTracer): string {
  if (tr.events.count === 0) return '';
  const total = tr.events.top.reduce((a, e) => a + e.totalMs, 0);
  const rows = tr.events.top
    .map(
      (e, i) =>
        `<tr><td class="n">${i + 1}</td><td class="n">${e.count}</td><td class="n">${sig(e.totalMs)}</td><td class="n">${sig(e.meanMs)}</td><td class="n">${sig(e.p95Ms)}</td>` +
        `<td class="bar"><span style="width:${total ? ((e.totalMs / total) * 100).toFixed(1) : 0}%"></span></td><td class="key"><code>${esc(e.key)}</code></td></tr>`,
    )
    .join('');
  const title = EVENT_TITLES[tr.tracer] ?? 'Top events';
  return (
    `<div class="top"><h4>${esc(title)} <small>${tr.events.count} events, top ${tr.events.top.length} by total time</small></h4>` +
    `<div class="scroll"><table><thead><tr><th>#</th><th>count</th><th>total ms</th><th>mean ms</th><th>p95 ms</th><th>share</th><th>key</th></tr></thead><tbody>${rows}</tbody></table></div></div>`
  );
}

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
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e3e7ec;stroke-width:1}svg .axis{stroke:#8a939d;stroke-width:1}
svg .tick{font-size:10.5px;fill:#5b6470}
svg polyline.line{fill:none;stroke-width:1.8;stroke-linejoin:round}
svg .marker line{stroke:#7a3e9d;stroke-width:1.2;stroke-dasharray:4 3}svg .marker text{font-size:10px;fill:#7a3e9d}
.legend{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px}
.legend li{overflow-wrap:anywhere}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
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
@media (max-width:600px){main{padding:8px}.meta{grid-template-columns:1fr}.meta dt{margin-top:4px}}
@media print{main{max-width:none;padding:0}.grid{grid-template-columns:1fr 1fr}h2{break-after:avoid}.card,.top{break-inside:avoid}details>summary{display:none}}
`;

/** Renders the report and its timeline into one HTML document. */
export function formatReportHtml(r: ReportV1, tl: ReportTimeline): string {
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
  const labels = Object.entries(t.labels);
  if (labels.length) meta.push(['labels', labels.map(([k, v]) => `${k}=${v}`).join(' ')]);
  const out: string[] = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    // Nothing may be fetched: no script, no font, no image, no connection.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    `<title>${esc(`Scalpels report: ${t.name}`)}</title><style>${CSS}</style></head><body><main>`,
    `<header><h1>${esc(t.name)}</h1><dl class="meta">${meta.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></header>`,
  ];
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
  // Per tracer: charts, breakdowns, events, all series.
  for (const tr of r.tracers) {
    const charts = tl.charts.filter((c) => c.tracerId === tr.id && c.lines.length > 0);
    const tops = tl.tops.filter((x) => x.tracer === tr.tracer);
    out.push(`<h2>${esc(tr.tracer)} <small>${esc(tr.node)}</small></h2>`);
    if (charts.length)
      out.push(`<div class="grid">${charts.map((c) => chartFigure(c, tl)).join('')}</div>`);
    const quiet = tl.charts.filter((c) => c.tracerId === tr.id && c.lines.length === 0);
    if (quiet.length)
      out.push(`<p class="note">No activity in: ${esc(quiet.map((c) => c.name).join(', '))}.</p>`);
    if (!tr.series.length && !tr.events.count)
      out.push('<p class="note">No records from this tracer.</p>');
    else if (tr.series.length && !charts.length && !quiet.length)
      out.push('<p class="note">No timelines: this store cannot group points by time.</p>');
    out.push(eventsHtml(tr));
    if (tops.length) out.push(`<h3>Top keys</h3>${tops.map(topTableHtml).join('')}`);
    if (tr.series.length) out.push(seriesTableHtml(tr));
  }
  out.push(...phases);
  out.push(
    `<footer>${esc(r.format)} · generated by Scalpels on ${esc(new Date().toISOString().slice(0, 19).replace('T', ' '))} UTC · self-contained, works offline</footer>`,
    '</main></body></html>',
  );
  return out.join('\n');
}
