// The public surface of @scalpels/core. Heavy dependencies (better-sqlite3, execa) are loaded
// lazily inside the modules that need them, so importing this stays cheap.
export * from './api.js';
export { UserError, isUserError, errorMessage } from './errors.js';
export { validateOptions, parseSetting } from './options.js';
export { parseDuration, parseSize, formatDuration } from './units.js';
export { LineSplitter, TailBuffer } from './lines.js';
export { WorkerRunner, type RecordSink, type RunnerStats, type TracerOutcome, type RunnerOptions } from './runner.js';
export { ExecaSpawner, killGroup, type ProcessSpawner, type WorkerProcess } from './spawner.js';
