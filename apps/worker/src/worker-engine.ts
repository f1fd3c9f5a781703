import { Logger } from '@nestjs/common';
import { decodeRunText, GenerationEngine, warmUpText } from '@app/engine';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerEngine } from './ports';
import { SimulatedEngine } from './simulated-engine';

/** Starts the engine (its own worker_thread, so this process's event loop stays free to renew job locks). */
export async function startWorkerEngine(config: WorkerConfig): Promise<WorkerEngine> {
  const logger = new Logger('Engine');
  if (config.simulatedStepMs !== undefined) {
    const tokensPerSecond = Math.round((config.slots * 1000) / config.simulatedStepMs);
    logger.warn(`SIMULATED engine (FALCONQ_SIMULATED_STEP_MS=${config.simulatedStepMs}): no model runs; up to ${tokensPerSecond} filler tokens/s with ${config.slots} slots`);
    return SimulatedEngine.start({ modelDir: config.modelDir, slots: config.slots, stepMs: config.simulatedStepMs });
  }
  const engine = await GenerationEngine.start({
    modelDir: config.modelDir,
    executionProvider: config.executionProvider,
    deviceId: config.deviceId,
    slots: config.slots,
    kvPlacement: config.kvPlacement,
    prefillChunkTokens: config.prefillChunkTokens,
    prefillRunCostTokens: config.prefillRunCostTokens,
    decodeChunkSteps: config.decodeChunkSteps,
    decodeChunkMinSteps: config.decodeChunkMinSteps,
    cudaFpaIntbGemm: config.cudaFpaIntbGemm,
    dequantizeWeights: config.dequantizeWeights,
    prefillWarmUp: config.prefillWarmUp,
    joinGroup: config.joinGroup,
    joinMaxWaitSteps: config.joinMaxWaitSteps,
    intraOpThreads: config.intraOpThreads,
    onWarning: (message) => logger.warn(message),
  });
  const { info } = engine;
  logger.log(`model ${config.modelDir} loaded on ${info.executionProvider}:${config.deviceId} (${info.executionProviderReason}) with ${config.slots} slots, ${[decodeRunText(info), info.cudaFpaIntbGemm ? 'fpA_intB GEMM' : '', info.dequantizedWeights ? 'weights dequantized at load' : '', warmUpText(info)].filter(Boolean).join(', ')}`);
  return engine;
}
