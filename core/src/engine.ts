// @scalpels/core/engine: what front ends (the CLI, the agent) drive. Heavy dependencies
// (better-sqlite3, execa) are still loaded lazily, where they are used.
export * from './index.js';
export * from './plugins.js';
export { TargetResolver, collapseToRoots, type TargetRequest } from './targets.js';
export { serviceNames, type ServiceNames } from './service-names.js';
export { readStat, isSameProcess } from './procfs.js';
export { Workload, type WorkloadExit } from './workload.js';
export {
  checkContext,
  which,
  StderrLogger,
  StoreProvider,
  systemClock,
  type Config,
  type Clock,
  type Logger,
} from './services.js';
export { TOKENS } from './tokens.js';
export { createContainer, ROOT_TOKENS } from './container.js';
export {
  TaskService,
  TracerRun,
  RunningTask,
  undoJournal,
  type TracerRequest,
  type PreparedTracer,
  type TracerSpec,
} from './tasks.js';
export { openStore, defaultStoreUrl, sqlitePath } from './store/index.js';
export type * from './store/types.js';
export { SqliteStore, SQLITE_SCHEMA_VERSION } from './store/sqlite.js';
export {
  REPORT_FORMAT,
  buildReport,
  formatReportTable,
  formatReportText,
  formatReportCsv,
  type ReportV1,
  type ReportTracer,
  type ReportSeries,
} from './report.js';
export {
  buildTimeline,
  type ReportTimeline,
  type Chart,
  type TopTable,
  type Phase,
} from './report/timeline.js';
export { formatReportHtml } from './report/html.js';
export {
  summarize,
  formatSummaryText,
  quantile,
  type ReportSummary,
  type ReportViews,
  type SummaryFigure,
  type SummaryTable,
  type SummarySection,
} from './report/summary.js';
export { humanize } from './units.js';
export { loadReportViews } from './report/views.js';
export { formatReportOpenMetrics } from './report/openmetrics.js';
export { reportJsonl } from './report/jsonl.js';
export {
  compareTasks,
  formatCompareTable,
  COMPARE_FORMAT,
  type Comparison,
  type CompareSeriesRow,
  type CompareEventRow,
} from './report/compare.js';
export { formatCompareHtml } from './report/compare-html.js';
export { human, offset } from './report/format.js';
export { Progress } from './report/progress.js';
export { serveOpenMetrics, OPENMETRICS_CONTENT_TYPE } from './report/metrics-server.js';
export { AgentServer, type AgentOptions } from './agent/server.js';
export { AgentClient } from './agent/client.js';
export {
  defaultSocketPath,
  parseAgentUrl,
  parseHostPort,
  readTokenFile,
  tokenMatches,
  RPC_ERRORS,
  type StartParams,
  type StopParams,
  type TaskStatus,
  type TracerStatus,
  type AgentInfo,
} from './agent/protocol.js';
export { Cluster, type NodeInfo, type NodeState } from './cluster/cluster.js';
export {
  ClusterFrontEnd,
  markLostNodes,
  describeTarget,
  type ClusterStartRequest,
  type NodeStopResult,
} from './cluster/front-end.js';
export {
  ClusterKey,
  CLUSTER_MAX_SKEW_MS,
  clusterKeyFileOf,
  type SignedRequest,
  type SignedAnswer,
} from './cluster/signing.js';
export {
  escapeControl,
  escapeControlKeepLines,
  neutralizeCsvFormula,
  RefusalLog,
} from './text-safety.js';
export {
  privateBaseDir,
  privateDir,
  ensurePrivateDir,
  makeScratchDir,
  openExclusive,
} from './private-dir.js';
export {
  RedisStore,
  parseRedisUrl,
  readPasswordFile,
  urlHasPassword,
  redact,
  encodeBatch,
  decodeBatch,
  fieldMap,
} from './store/redis.js';
export { collect, type CollectOptions, type CollectResult } from './cluster/collector.js';
