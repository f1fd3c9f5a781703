import type { WorkerHeartbeat } from '@app/store';
import { CONTEXT_LENGTH_EXCEEDED } from '@app/requests';
import type { LineProblem } from '@app/requests';

// A dry run's answer: what a batch would be, checked line by line, with a time estimate from the throughput the
// workers report in their heartbeats. Nothing of it is stored or enqueued.

/** Errors listed in a dry run's answer and in a failed batch's errors.data (the count is always given in full). */
export const MAX_LISTED_ERRORS = 1000;

export interface DryRunInput {
  endpoint: string;
  totalLines: number;
  validLines: number;
  problems: LineProblem[];
  promptTokens: number;
  maxCompletionTokens: number;
  workers: WorkerHeartbeat[];
}

export interface DryRunAnswer {
  object: 'batch.dry_run';
  endpoint: string;
  valid: boolean;
  request_counts: { total: number; valid: number; invalid: number };
  errors: { object: 'list'; data: LineProblem[]; total: number };
  lines_over_context: number[];
  usage: { input_tokens: number; max_output_tokens: number };
  estimate: { workers: number; tokens_per_second: number | null; max_seconds: number | null; basis: string };
}

export function dryRunAnswer(input: DryRunInput): DryRunAnswer {
  const tokensPerSecond = input.workers.reduce((sum, worker) => sum + (worker.tokensPerSecond ?? 0), 0);
  const measured = tokensPerSecond > 0;
  return {
    object: 'batch.dry_run',
    endpoint: input.endpoint,
    valid: input.problems.length === 0,
    request_counts: { total: input.totalLines, valid: input.validLines, invalid: input.totalLines - input.validLines },
    errors: { object: 'list', data: input.problems.slice(0, MAX_LISTED_ERRORS), total: input.problems.length },
    lines_over_context: input.problems.filter((p) => p.code === CONTEXT_LENGTH_EXCEEDED).map((p) => p.line),
    usage: { input_tokens: input.promptTokens, max_output_tokens: input.maxCompletionTokens },
    estimate: {
      workers: input.workers.length,
      tokens_per_second: measured ? tokensPerSecond : null,
      max_seconds: measured ? input.maxCompletionTokens / tokensPerSecond : null,
      basis: measured
        ? 'every valid request generating its max_tokens (x n) at the generation throughput the live workers last reported; requests that stop early take less'
        : 'no live worker has reported a throughput yet',
    },
  };
}
