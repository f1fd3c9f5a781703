import type { JobParams } from '@app/contracts';
import type { GenerationParams } from '@app/engine';

/**
 * A job's wire parameters (libs/contracts, versioned) as the engine's GenerationParams. The one place that knows both
 * shapes: an engine that renames a field changes this mapping, not the jobs already stored in Redis.
 */
export function toEngineParams(params: JobParams): GenerationParams {
  return {
    maxNewTokens: params.maxNewTokens,
    doSample: params.doSample,
    temperature: params.temperature,
    topK: params.topK,
    topP: params.topP,
    repetitionPenalty: params.repetitionPenalty,
    stop: params.stop,
    numReturnSequences: params.numReturnSequences,
    returnFullText: params.returnFullText,
    ignoreEos: params.ignoreEos,
    truncate: params.truncate,
    ...(params.seed === undefined ? {} : { seed: params.seed }),
    ...(params.logprobs === undefined ? {} : { logprobs: params.logprobs }),
    ...(params.promptLogprobs ? { promptLogprobs: true } : {}),
  };
}
