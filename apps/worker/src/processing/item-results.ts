import type { GenerateJobData, ItemError, ItemResult } from '@app/contracts';
import type { GenerationResult } from '@app/engine';

// Builders of the one result each prompt gets, whatever way it ended.

export function succeededResult(data: GenerateJobData, result: GenerationResult, attempts: number, workerId: string): ItemResult {
  const completionTokens = result.sequences.reduce((sum, sequence) => sum + sequence.tokens.length, 0);
  return {
    batchId: data.batchId,
    index: data.index,
    customId: data.customId,
    status: 'succeeded',
    output: {
      sequences: result.sequences.map((sequence) => ({
        text: sequence.text, finishReason: sequence.finishReason, tokens: sequence.tokens.length,
        ...(sequence.logprobs ? { logprobs: sequence.logprobs } : {}),
      })),
      promptTokens: result.promptTokens,
      completionTokens,
      timeToFirstTokenMs: result.timeToFirstTokenMs,
      generationMs: result.totalMs,
    },
    attempts,
    workerId,
    finishedAt: Date.now(),
  };
}

export function unfinishedResult(
  data: GenerateJobData,
  status: 'failed' | 'cancelled' | 'expired',
  error: ItemError,
  attempts: number,
  workerId: string,
): ItemResult {
  return { batchId: data.batchId, index: data.index, customId: data.customId, status, error, attempts, workerId, finishedAt: Date.now() };
}

export const CANCELLED_ERROR: ItemError = { code: 'batch_cancelled', message: 'The batch was cancelled before this request finished.' };
export const EXPIRED_ERROR: ItemError = { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' };
