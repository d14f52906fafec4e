import type { SetupContext, UndoAction, WorkerContext } from '../api.js';

/**
 * A SetupContext for plugin tests, with the journal in memory. Every lease taken here is a
 * first holder (no other tracer shares it): its change() journals into the same list, so
 * undoing the list newest first restores everything, as the last holder would. Sharing between
 * tracers is the core's job, tested through it.
 */
export function memorySetupContext(base: WorkerContext, journal: UndoAction[]): SetupContext {
  const keep = async (a: UndoAction): Promise<void> => void journal.push(structuredClone(a));
  return {
    ...base,
    journal: keep,
    lease: async (req) => {
      if (!req.resource.trim()) throw new Error('lease without a resource');
      await req.change(keep, { reapplying: false });
      return { first: true, holders: 1 };
    },
  };
}
