import type { Comparison } from './compare.js';
import { ratioText } from './compare.js';
import { human, niceCeil, offset, sig } from './format.js';
import type { ReportTimeline } from './timeline.js';

const esc = (s: unknown): string =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

const A_COLOR = '#0072b2';
const B_COLOR = '#d55e00';
const W = 640;
const H = 200;
const ML = 62;
const MR = 14;
const MT = 12;
const MB = 24;

/** Total rate of a counter over time (every line of its chart summed), offsets from the task start. */
function totalLine(tl: ReportTimeline, tracer: string, name: string): [number, number][] {
  const chart = tl.charts.find((c) => c.tracer === tracer && c.name === name);
  if (!chart) return [];
  const sums = new Map<number, number>();
  for (const l of chart.lines)
    for (const [t, v] of l.points) sums.set(t - tl.from, (sums.get(t - tl.from) ?? 0) + v);
  return [...sums.entries()].sort((a, b) => a[0] - b[0]);
}

function overlaySvg(
  a: [number, number][],
  b: [number, number][],
  span: number,
  unit: string,
): string {
  const hi = niceCeil(Math.max(0, ...a.map((p) => p[1]), ...b.map((p) => p[1])));
  const x = (t: number): number => ML + (t / span) * (W - ML - MR);
  const y = (v: number): number => H - MB - (v / hi) * (H - MT - MB);
  const out = [
    `<svg class="chart" viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" role="img">`,
  ];
  for (let i = 0; i <= 4; i++) {
    const yy = y((hi * i) / 4).toFixed(1);
    out.push(
      `<line class="grid" x1="${ML}" x2="${W - MR}" y1="${yy}" y2="${yy}"/>`,
      `<text class="tick" x="${ML - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${esc(human((hi * i) / 4, unit))}</text>`,
    );
  }
  for (let i = 0; i <= 5; i++)
    out.push(
      `<text class="tick" x="${x((span * i) / 5).toFixed(1)}" y="${H - 6}" text-anchor="${i === 0 ? 'start' : i === 5 ? 'end' : 'middle'}">${offset((span * i) / 5)}</text>`,
    );
  for (const [pts, color, name] of [
    [a, A_COLOR, 'A'],
    [b, B_COLOR, 'B'],
  ] as const) {
    if (pts.length === 1)
      out.push(
        `<circle class="pt" cx="${x(pts[0]![0]).toFixed(1)}" cy="${y(pts[0]![1]).toFixed(1)}" r="3.5" fill="${color}"><title>${name}</title></circle>`,
      );
    else if (pts.length > 1)
      out.push(
        `<polyline class="line" stroke="${color}" points="${pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"><title>${name}</title></polyline>`,
      );
  }
  out.push(`<line class="axis" x1="${ML}" x2="${W - MR}" y1="${H - MB}" y2="${H - MB}"/></svg>`);
  return out.join('');
}

/** Bar for a ratio on a log scale: 1x in the middle, 0.25x and 4x at the ends. */
function ratioBar(r: number | null): string {
  if (r === null || r <= 0) return '';
  const pos = Math.max(-1, Math.min(1, Math.log(r) / Math.log(4)));
  const left = pos < 0 ? 50 + pos * 50 : 50;
  return `<span class="rb"><span style="left:${left.toFixed(1)}%;width:${(Math.abs(pos) * 50).toFixed(1)}%;background:${pos < 0 ? A_COLOR : B_COLOR}"></span></span>`;
}

const CSS = `
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1b1f24}
main{max-width:1400px;margin:0 auto;padding:16px}h1{font-size:20px}h2{font-size:17px;margin-top:26px;border-bottom:2px solid #d8dde3}
small,.note{color:#5b6470}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #d8dde3;text-align:left;vertical-align:top}
th{background:#f7f9fb}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.key{overflow-wrap:anywhere}
tr.sig td{background:#fff6e0}.flag{font-weight:700;color:#b35900}
.rb{position:relative;display:inline-block;width:90px;height:10px;background:#eef1f4;vertical-align:middle}
.rb span{position:absolute;top:0;bottom:0}.rb:after{content:"";position:absolute;left:50%;top:-2px;bottom:-2px;border-left:1px solid #5b6470}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:12px}
.card{margin:0;padding:8px 10px;background:#f7f9fb;border:1px solid #d8dde3;border-radius:6px;break-inside:avoid}
svg.chart{width:100%;height:auto;display:block}svg .grid{stroke:#e3e7ec}svg .axis{stroke:#8a939d}svg .tick{font-size:10.5px;fill:#5b6470}
svg polyline.line{fill:none;stroke-width:1.8}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
@media print{.card{break-inside:avoid}}
`;

/** The comparison as one self-contained HTML page; overlays come from both tasks' timelines. */
export function formatCompareHtml(
  c: Comparison,
  tlA?: ReportTimeline,
  tlB?: ReportTimeline,
  opts: { charts?: number; rows?: number } = {},
): string {
  const rowsMax = opts.rows ?? 60;
  const out: string[] = [
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    `<title>${esc(`Scalpels compare: ${c.a.name} vs ${c.b.name}`)}</title><style>${CSS}</style></head><body><main>`,
    `<h1>Compare <span style="color:${A_COLOR}">A</span> and <span style="color:${B_COLOR}">B</span></h1>`,
    '<div class="scroll"><table><thead><tr><th></th><th>task</th><th>name</th><th>started (UTC)</th><th>duration</th><th>target</th></tr></thead><tbody>',
    ...(['a', 'b'] as const).map(
      (k) =>
        `<tr><td><b style="color:${k === 'a' ? A_COLOR : B_COLOR}">${k.toUpperCase()}</b></td><td>${esc(c[k].id)}</td><td>${esc(c[k].name)}</td><td>${esc(c[k].startedAt.replace('T', ' ').slice(0, 19))}</td><td class="n">${sig(c[k].durationS)} s</td><td>${esc(c[k].target ?? '-')}</td></tr>`,
    ),
    '</tbody></table></div>',
    '<p class="note">Counters compare their totals over the task, gauges their mean level. Processes are matched by name, not pid. <span class="flag">!</span> marks a change beyond 3 standard deviations of the noise estimated from the per-interval samples of both runs, and beyond 5%.</p>',
  ];
  if (tlA && tlB) {
    // Charts for the series names that changed most: |ΣB − ΣA| / (ΣA + ΣB) over their series.
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
    const figs: string[] = [];
    for (const s of candidates) {
      const a = totalLine(tlA, s.tracer, s.name);
      const b = totalLine(tlB, s.tracer, s.name);
      if (!a.length && !b.length) continue;
      const span = Math.max(tlA.to - tlA.from, tlB.to - tlB.from);
      const unit = `${s.unit}/s`;
      figs.push(
        `<figure class="card" data-series="${esc(s.name)}"><figcaption><b>${esc(s.name)}</b> <small>${esc(s.tracer)} · ${esc(unit)}, all series summed · totals A ${esc(human(s.a, s.unit))}, B ${esc(human(s.b, s.unit))}, ${ratioText(s.a ? s.b / s.a : null)}</small>` +
          `<span class="sw" style="background:${A_COLOR}"></span>A<span class="sw" style="background:${B_COLOR}"></span>B</figcaption>` +
          `${overlaySvg(a, b, span, unit)}</figure>`,
      );
      if (figs.length >= (opts.charts ?? 12)) break;
    }
    if (figs.length)
      out.push(
        '<h2>Timelines (from each task’s start)</h2>',
        `<div class="grid">${figs.join('')}</div>`,
      );
  }
  for (const tracer of [...new Set(c.series.map((s) => s.tracer))]) {
    const rows = c.series.filter((s) => s.tracer === tracer);
    out.push(
      `<h2>${esc(tracer)} <small>${rows.length} series${rows.length > rowsMax ? `, first ${rowsMax}` : ''}</small></h2>`,
      '<div class="scroll"><table><thead><tr><th></th><th>series</th><th>labels</th><th>kind</th><th>A</th><th>B</th><th>delta</th><th>B/A</th><th></th><th>noise σ</th></tr></thead><tbody>',
      ...rows.slice(0, rowsMax).map(
        (s) =>
          `<tr class="${s.significant ? 'sig' : ''}"><td class="flag">${s.significant ? '!' : ''}</td><td>${esc(s.name)}</td><td class="key">${esc(
            Object.entries(s.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(' '),
          )}</td><td>${s.kind}</td><td class="n">${s.a ? esc(human(s.a.value, s.unit)) : '-'}</td><td class="n">${s.b ? esc(human(s.b.value, s.unit)) : '-'}</td>` +
          `<td class="n">${s.delta === null ? '-' : esc(`${s.delta > 0 ? '+' : ''}${human(s.delta, s.unit)}`)}</td><td class="n">${s.a && s.b ? ratioText(s.ratio) : s.a ? 'gone' : 'new'}</td><td>${ratioBar(s.ratio)}</td><td class="n">${s.noise === null ? '-' : esc(human(s.noise, s.unit))}</td></tr>`,
      ),
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
  out.push(
    `<p class="note">${esc(c.format)} · generated by Scalpels · self-contained, works offline</p></main></body></html>`,
  );
  return out.join('\n');
}
