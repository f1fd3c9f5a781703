import type { JobItemRef, ItemError, ItemReport } from '@app/contracts';
import type { GenerationResult } from '@app/engine';

// The reports a worker makes about one prompt: it succeeded, it failed with a code, or it was stopped because its
// batch must no longer run (the store decides what that stop means for the item and the batch).

type Reporter = { attempts: number; workerId: string };

function about(data: JobItemRef, by: Reporter) {
  return { batchId: data.batchId, index: data.index, customId: data.customId, attempts: by.attempts, workerId: by.workerId, finishedAt: Date.now() };
}

export function succeededReport(data: JobItemRef, result: GenerationResult, by: Reporter): ItemReport {
  const completionTokens = result.sequences.reduce((sum, sequence) => sum + sequence.tokens.length, 0);
  return {
    ...about(data, by),
    outcome: 'succeeded',
    output: {
      sequences: result.sequences.map((sequence) => ({
        text: sequence.text, finishReason: sequence.finishReason, tokens: sequence.tokens.length,
        ...(sequence.logprobs ? { logprobs: sequence.logprobs } : {}),
        ...(sequence.promptLogprobs ? { promptLogprobs: sequence.promptLogprobs } : {}),
      })),
      promptTokens: result.promptTokens,
      completionTokens,
      timeToFirstTokenMs: result.timeToFirstTokenMs,
      generationMs: result.totalMs,
    },
  };
}

export function failedReport(data: JobItemRef, error: ItemError, by: Reporter): ItemReport {
  return { ...about(data, by), outcome: 'failed', error };
}

export function stoppedReport(data: JobItemRef, by: Reporter): ItemReport {
  return { ...about(data, by), outcome: 'stopped' };
}
