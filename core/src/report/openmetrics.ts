import type { ReportV1 } from '../report.js';

/**
 * OpenMetrics text exposition of a report: one metric family per series name, counters as
 * `<name>_total` over the task, gauges at their last value, event keys as counts and seconds.
 * Units Prometheus knows are converted to base units (ms → seconds) and named in the family.
 */

const metricName = (s: string): string =>
  `scalpels_${s.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_+/g, '_')}`.replace(/_$/, '');
const labelName = (s: string): string => {
  const n = s.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[a-zA-Z_]/.test(n) ? n : `_${n}`;
};
const labelValue = (s: string): string =>
  s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');
const value = (n: number): string =>
  Number.isFinite(n)
    ? Number.isInteger(n)
      ? String(n)
      : String(n)
    : n > 0
      ? '+Inf'
      : n < 0
        ? '-Inf'
        : 'NaN';

/** Unit suffix and scale to base units. */
function unitOf(unit: string): { suffix: string; scale: number } {
  switch (unit) {
    case 'ms':
      return { suffix: 'seconds', scale: 1e-3 };
    case 'us':
    case 'µs':
      return { suffix: 'seconds', scale: 1e-6 };
    case 'ns':
      return { suffix: 'seconds', scale: 1e-9 };
    case 's':
    case 'seconds':
      return { suffix: 'seconds', scale: 1 };
    case 'bytes':
      return { suffix: 'bytes', scale: 1 };
    case 'percent':
      return { suffix: 'percent', scale: 1 };
    default:
      return { suffix: '', scale: 1 };
  }
}

function labelsText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${labelName(k)}="${labelValue(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

interface Family {
  type: 'counter' | 'gauge';
  unit: string;
  help: string;
  samples: string[];
}

export function formatReportOpenMetrics(reports: ReportV1 | ReportV1[]): string {
  const families = new Map<string, Family>();
  const family = (name: string, type: Family['type'], unit: string, help: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { type, unit, help, samples: [] }));
    return f;
  };
  for (const r of Array.isArray(reports) ? reports : [reports]) {
    for (const tr of r.tracers) {
      const base = { task: r.task.id, tracer: tr.tracer, node: tr.node };
      for (const s of tr.series) {
        const { suffix, scale } = unitOf(s.unit);
        let name = metricName(s.name);
        if (suffix && !name.endsWith(`_${suffix}`)) name += `_${suffix}`;
        const labels: Record<string, string> = { ...base };
        for (const [k, v] of Object.entries(s.labels))
          labels[s.kind === 'histogram' && k === 'le' ? 'bucket_le' : k in base ? `${k}_` : k] = v;
        if (s.kind === 'gauge') {
          family(name, 'gauge', suffix, `${s.name} (${s.unit}), last value`).samples.push(
            `${name}${labelsText(labels)} ${value(s.last * scale)}`,
          );
        } else {
          family(
            name,
            'counter',
            suffix,
            `${s.name} (${s.unit}), total over the task`,
          ).samples.push(`${name}_total${labelsText(labels)} ${value(s.sum * scale)}`);
        }
      }
      if (tr.events.top.length) {
        const count = family('scalpels_events', 'counter', '', 'events per normalized key');
        const time = family(
          'scalpels_event_duration_seconds',
          'counter',
          'seconds',
          'time of the events per normalized key',
        );
        for (const e of tr.events.top) {
          const l = labelsText({ ...base, key: e.key });
          count.samples.push(`scalpels_events_total${l} ${value(e.count)}`);
          time.samples.push(`scalpels_event_duration_seconds_total${l} ${value(e.totalMs / 1000)}`);
        }
      }
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) {
    out.push(`# TYPE ${name} ${f.type}`);
    if (f.unit) out.push(`# UNIT ${name} ${f.unit}`);
    out.push(`# HELP ${name} ${f.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`);
    out.push(...f.samples);
  }
  out.push('# EOF');
  return `${out.join('\n')}\n`;
}
