import type { ReportView } from '../api.js';
import type { PluginRegistry } from '../registry.js';
import type { ReportViews } from './summary.js';

/**
 * The report views of the plugins a report names, from their manifests. A plugin not installed
 * here (a report read on another machine), failing to load or declaring no view gets the
 * generic view: the report never fails for want of a view.
 */
export async function loadReportViews(
  registry: Pick<PluginRegistry, 'load'>,
  tracers: readonly string[],
): Promise<ReportViews> {
  const out: Record<string, ReportView | undefined> = {};
  await Promise.all(
    [...new Set(tracers)].map(async (name) => {
      try {
        const view = (await registry.load(name)).manifest.report;
        if (view && typeof view === 'object' && typeof view.title === 'string') out[name] = view;
      } catch {
        // Generic view.
      }
    }),
  );
  return out;
}
