import { Logger } from '@nestjs/common';
import { GenerationEngine } from '@app/engine';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerEngine } from './ports';

/** Starts the engine (its own worker_thread, so this process's event loop stays free to renew job locks). */
export async function startWorkerEngine(config: WorkerConfig): Promise<WorkerEngine> {
  const logger = new Logger('Engine');
  const engine = await GenerationEngine.start({
    modelDir: config.modelDir,
    executionProvider: config.executionProvider,
    deviceId: config.deviceId,
    slots: config.slots,
    kvPlacement: config.kvPlacement,
    prefillChunkTokens: config.prefillChunkTokens,
    joinGroup: config.joinGroup,
    joinMaxWaitSteps: config.joinMaxWaitSteps,
    intraOpThreads: config.intraOpThreads,
    onWarning: (message) => logger.warn(message),
  });
  logger.log(`model ${config.modelDir} loaded on ${config.executionProvider}:${config.deviceId} with ${config.slots} slots`);
  return engine;
}
