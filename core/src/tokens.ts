/** Injection tokens of the core's container. Every constructor parameter names one with @inject. */
export const TOKENS = {
  Config: Symbol.for('scalpels.Config'),
  Logger: Symbol.for('scalpels.Logger'),
  Clock: Symbol.for('scalpels.Clock'),
  StoreProvider: Symbol.for('scalpels.StoreProvider'),
  PluginRegistry: Symbol.for('scalpels.PluginRegistry'),
  ProcessSpawner: Symbol.for('scalpels.ProcessSpawner'),
  TargetResolver: Symbol.for('scalpels.TargetResolver'),
  TaskService: Symbol.for('scalpels.TaskService'),
  /** Per tracer, in its child container: what to run (TracerSpec). */
  TracerSpec: Symbol.for('scalpels.TracerSpec'),
  TracerRun: Symbol.for('scalpels.TracerRun'),
} as const;
