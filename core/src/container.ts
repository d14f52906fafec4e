// tsyringe needs the Reflect metadata polyfill before any decorated class is evaluated.
import 'reflect-metadata';
import { container as globalContainer, Lifecycle, type DependencyContainer } from 'tsyringe';
import { PluginRegistry } from './registry.js';
import { StderrLogger, StoreProvider, systemClock, type Config } from './services.js';
import { ExecaSpawner } from './spawner.js';
import { TargetResolver } from './targets.js';
import { TOKENS } from './tokens.js';
import { TaskService } from './tasks.js';

export { TOKENS };

/**
 * The root container: config, logger, clock, store, plugin registry, process spawner and target
 * resolver. Each tracer gets a child container (see TaskService) holding its own spec.
 */
export function createContainer(config: Config): DependencyContainer {
  const c = globalContainer.createChildContainer();
  c.register(TOKENS.Config, { useValue: config });
  c.register(TOKENS.Logger, { useValue: new StderrLogger(config.env.SCALPELS_LOG) });
  c.register(TOKENS.Clock, { useValue: systemClock });
  c.register(TOKENS.StoreProvider, { useValue: new StoreProvider(config.storeUrl) });
  c.register(TOKENS.PluginRegistry, {
    useValue: new PluginRegistry(config.pluginSearchFrom, config.env),
  });
  c.register(
    TOKENS.ProcessSpawner,
    { useClass: ExecaSpawner },
    { lifecycle: Lifecycle.ContainerScoped },
  );
  c.register(
    TOKENS.TargetResolver,
    { useClass: TargetResolver },
    { lifecycle: Lifecycle.ContainerScoped },
  );
  c.register(
    TOKENS.TaskService,
    { useClass: TaskService },
    { lifecycle: Lifecycle.ContainerScoped },
  );
  return c;
}

/** Every token the root container must resolve (a test resolves each one). */
export const ROOT_TOKENS = [
  TOKENS.Config,
  TOKENS.Logger,
  TOKENS.Clock,
  TOKENS.StoreProvider,
  TOKENS.PluginRegistry,
  TOKENS.ProcessSpawner,
  TOKENS.TargetResolver,
  TOKENS.TaskService,
] as const;
