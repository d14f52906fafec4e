// @scalpels/core/plugins: finding, loading and checking plugins, without the engine (no DI
// container, no store), so that `scalpels plugins list` starts fast.
export {
  discoverPlugins,
  tracerNameOf,
  globalNodeModules,
  type DiscoveredPlugin,
} from './discovery.js';
export { PluginRegistry, importManifest, type LoadedPlugin } from './registry.js';
export { checkContext, which } from './check-context.js';
export { defaultOptions } from './options.js';
export { staticCheck, type StaticRequires, type StaticAlternative } from './static-check.js';
export {
  parseBundle,
  presetCatalog,
  findPreset,
  matchServices,
  expandPreset,
  type Preset,
  type PresetTracer,
  type PresetService,
  type PresetCatalog,
  type PresetRequest,
  type ExpandedPreset,
  type ServiceMatch,
} from './presets.js';
