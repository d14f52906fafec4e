import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * What the HTML pages (`report --format html`, `compare --format html`) share: one self-contained
 * file that works offline, charts drawn by uPlot (inlined) from a JSON data block, and a
 * Content-Security-Policy that fetches nothing and admits only the inlined scripts, by hash.
 * Traced text reaches a page as escaped HTML or escaped JSON data, never as code.
 */

export const esc = (s: unknown): string =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** uPlot (MIT), inlined so the file works offline; read once from the package. */
let uplotCache: { js: string; css: string; licence: string } | undefined;
function uplot(): { js: string; css: string; licence: string } {
  if (!uplotCache) {
    const require = createRequire(import.meta.url);
    const js = require.resolve('uplot/dist/uPlot.iife.min.js');
    const dir = dirname(dirname(js));
    uplotCache = {
      js: readFileSync(js, 'utf8'),
      css: readFileSync(join(dir, 'dist', 'uPlot.min.css'), 'utf8'),
      licence: readFileSync(join(dir, 'LICENSE'), 'utf8'),
    };
  }
  return uplotCache;
}

/** JSON that can sit in a script element: no `<`, `>` or `&` can end it or start markup. */
export const jsonForScript = (v: unknown): string =>
  JSON.stringify(v).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );

/** A script's CSP source: its SHA-256, so that only this exact text may run. */
const scriptHash = (text: string): string =>
  `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/** Histogram buckets (`le` → count) in bound order, `+Inf` last. */
export function sortedBuckets(b: ReadonlyMap<string, number>): [string, number][] {
  const bound = (le: string): number => (le === '+Inf' ? Infinity : Number(le));
  return [...b.entries()].sort((x, y) => bound(x[0]) - bound(y[0]));
}

/** Cumulative buckets (each counts everything up to its bound) never decrease with `le`. */
export const looksCumulative = (sorted: readonly [string, number][]): boolean =>
  sorted.every((e, i) => i === 0 || e[1] >= sorted[i - 1]![1]);

/** Each bucket's own count: cumulative buckets minus the one below. */
export const bucketCounts = (sorted: readonly [string, number][], cumulative: boolean): number[] =>
  sorted.map(([, n], i) => (cumulative && i ? Math.max(0, n - sorted[i - 1]![1]) : n));

/**
 * Page-script helpers both pages' scripts start with (inside their function): `sig` and `fmt`
 * (values with units, as `human()` writes them), `width`, `axisSize`, `fromZero`, the chart list
 * with its shared zoom (`zoom`, the `syncZoom` plugin; resized with the window) and `histogram`
 * (bucket counts as bars, one bar per set, side by side). They read data only and write no markup.
 */
export const CLIENT_LIB = String.raw`
  var SI = ['', 'k', 'M', 'G', 'T'];
  var BIN = ['', 'Ki', 'Mi', 'Gi', 'Ti'];
  var T = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000 };
  function sig(n) {
    var a = Math.abs(n);
    if (a === 0) return '0';
    if (a >= 100) return n.toFixed(0);
    if (a >= 10) return String(+n.toFixed(1));
    if (a >= 1) return String(+n.toFixed(2));
    return String(+n.toPrecision(3));
  }
  function fmt(v, unit) {
    if (v == null || !isFinite(v)) return '-';
    var per = /\/s$/.test(unit) ? '/s' : '';
    var u = per ? unit.slice(0, -2) : unit;
    if (T[u] !== undefined) {
      var ms = v * T[u], a = Math.abs(ms);
      if (a === 0) return '0';
      if (a >= 1000) return sig(ms / 1000) + ' s' + per;
      if (a >= 1) return sig(ms) + ' ms' + per;
      if (a >= 1e-3) return sig(ms * 1e3) + ' µs' + per;
      return sig(ms * 1e6) + ' ns' + per;
    }
    var bytes = u === 'bytes', step = bytes ? 1024 : 1000, names = bytes ? BIN : SI, i = 0;
    while (Math.abs(v) >= step && i < names.length - 1) { v /= step; i++; }
    if (bytes) return sig(v) + ' ' + names[i] + 'B' + per;
    return sig(v) + names[i] + (u && u !== 'count' ? ' ' + u : '') + per;
  }
  function width(el) { return Math.max(280, el.clientWidth - 4); }
  // A y axis as wide as its longest tick label ("5.86 KiB/s").
  function axisSize(u, vals) {
    var n = 0;
    (vals || []).forEach(function (v) { n = Math.max(n, String(v).length); });
    return Math.max(40, n * 7 + 16);
  }
  // From zero: bars, and rates whose levels A and B are compared by eye.
  function fromZero(u, min, max) {
    var lo = Math.min(0, min);
    return [lo, max > lo ? max + (max - lo) * 0.05 : lo + 1];
  }
  var charts = [];
  var syncing = false;
  function zoom(min, max) {
    syncing = true;
    charts.forEach(function (u) { u.setScale('x', { min: min, max: max }); });
    syncing = false;
  }
  window.addEventListener('resize', function () {
    charts.forEach(function (u) { u.setSize({ width: width(u.root.parentNode), height: 200 }); });
  });
  var syncZoom = {
    hooks: {
      setScale: [function (u, key) {
        if (key !== 'x' || syncing) return;
        zoom(u.scales.x.min, u.scales.x.max);
      }],
    },
  };
  function histogram(el, h, sets) {
    var x = h.bounds.map(function (_, j) { return j; });
    var label = function (j) {
      var b = h.bounds[j];
      return b === undefined ? '' : b === '+Inf' ? '> ' + fmt(+h.bounds[j - 1] || 0, h.unit) : '≤ ' + fmt(+b, h.unit);
    };
    var one = sets.length === 1;
    return new uPlot({
      width: width(el),
      height: 200,
      scales: { x: { time: false, range: function () { return [-0.5, h.bounds.length - 0.5]; } }, y: { range: fromZero } },
      axes: [
        // Whole buckets only, far enough apart for their labels.
        { space: 64, incrs: [1, 2, 3, 4, 5, 10, 20, 50], values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? label(v) : ''; }); } },
        { size: axisSize },
      ],
      series: [{ label: 'bucket', value: function (u, v) { return v == null ? '-' : label(v); } }].concat(
        sets.map(function (s, i) {
          return {
            label: s.label,
            fill: s.fill,
            stroke: s.color,
            paths: uPlot.paths.bars(one ? { size: [0.8, 60] } : { size: [0.8 / sets.length, 60 / sets.length], align: i === 0 ? -1 : 1 }),
            points: { show: false },
          };
        })
      ),
    }, [x].concat(sets.map(function (s) { return s.counts; })), el);
  }
`;

/**
 * One self-contained HTML document: `main` is the page's markup (escaped by the caller), `data`
 * becomes the JSON block `#scalpels-data`, and `app` the page script that draws from it, run
 * after uPlot. The policy admits those two scripts by hash and nothing else; nothing is fetched.
 */
export function htmlPage(p: {
  title: string;
  css: string;
  main: readonly string[];
  data: unknown;
  app: string;
}): string {
  const lib = uplot();
  const scripts = [lib.js, p.app];
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    // Nothing may be fetched, and only the two scripts inlined here may run.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src ${scripts.map(scriptHash).join(' ')}">`,
    `<title>${esc(p.title)}</title><style>${lib.css}${p.css}</style></head><body><main>`,
    ...p.main,
    '</main>',
    `<script type="application/json" id="scalpels-data">${jsonForScript(p.data)}</script>`,
    `<!-- uPlot licence:\n${lib.licence.replaceAll('--', '- -')}\n-->`,
    ...scripts.map((js) => `<script>${js}</script>`),
    '</body></html>',
  ].join('\n');
}
