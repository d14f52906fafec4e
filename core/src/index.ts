// @scalpels/core: the plugin API and the small utilities plugins use. Kept light on purpose:
// every plugin imports it, and `scalpels plugins list` imports every plugin. The engine (DI
// container, tasks, stores, reports) is `@scalpels/core/engine`.
export * from './api.js';
export { UserError, isUserError, errorMessage } from './errors.js';
export { validateOptions, parseSetting } from './options.js';
export {
  trustedFile,
  trustProblem,
  readTrustedFile,
  readRootOwnedFile,
  nodeConfig,
  nodeSettings,
  nodeConfigPath,
  configuredProgram,
  NODE_CONFIG_DIR,
  NODE_CONFIG_FILE,
  NODE_CONFIG_ENV,
  type NodeConfig,
} from './trust.js';
export { parseDuration, parseSize, formatDuration } from './units.js';
export { LineSplitter, TailBuffer } from './lines.js';
export {
  pythonFunctionKey,
  pythonKeyOfFile,
  pythonModuleOfFile,
  pythonSysPath,
} from './python-key.js';
export {
  WorkerRunner,
  type RecordSink,
  type RunnerStats,
  type TracerOutcome,
  type RunnerOptions,
} from './runner.js';
export { ExecaSpawner, killGroup, type ProcessSpawner, type WorkerProcess } from './spawner.js';
export { table } from './table.js';
