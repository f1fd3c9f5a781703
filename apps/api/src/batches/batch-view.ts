import { isFinalStatus } from '@app/contracts';
import type { BatchRecord } from '@app/store';

// A stored batch as OpenAI's Batch object (timestamps in seconds). Native batches get the same object.

const seconds = (ms: number | null): number | null => (ms === null ? null : Math.floor(ms / 1000));

export interface OpenAiBatch {
  id: string;
  object: 'batch';
  endpoint: string;
  model: string;
  errors: { object: 'list'; data: { code: string; message: string; param: string | null; line: number | null }[] } | null;
  input_file_id: string | null;
  completion_window: string;
  status: string;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  usage: {
    input_tokens: number; input_tokens_details: { cached_tokens: number };
    output_tokens: number; output_tokens_details: { reasoning_tokens: number }; total_tokens: number;
  };
  metadata: Record<string, string> | null;
}

/** The output file's id once the batch is final and something succeeded (OpenAI's behaviour), else null. */
export function outputFileIdOf(batch: BatchRecord): string | null {
  return isFinalStatus(batch.status) && batch.requestCounts.completed > 0 ? batch.outputFileId : null;
}

/** The error file's id once the batch is final and some request failed or never ran, else null. */
export function errorFileIdOf(batch: BatchRecord): string | null {
  const { total, completed, failed } = batch.requestCounts;
  return isFinalStatus(batch.status) && (failed > 0 || completed + failed < total) ? batch.errorFileId : null;
}

export function toOpenAiBatch(batch: BatchRecord): OpenAiBatch {
  return {
    id: batch.id,
    object: 'batch',
    endpoint: batch.endpoint,
    model: batch.model,
    errors: batch.errors
      ? { object: 'list', data: batch.errors.map((e) => ({ code: e.code, message: e.message, param: e.param ?? null, line: e.line ?? null })) }
      : null,
    input_file_id: batch.inputFileId,
    completion_window: batch.completionWindow,
    status: batch.status,
    // Output files appear once the batch is final (OpenAI's behaviour); native clients read results while it runs.
    output_file_id: outputFileIdOf(batch),
    error_file_id: errorFileIdOf(batch),
    created_at: seconds(batch.createdAt)!,
    in_progress_at: seconds(batch.inProgressAt),
    expires_at: seconds(batch.expiresAt)!,
    finalizing_at: seconds(batch.finalizingAt),
    completed_at: seconds(batch.completedAt),
    failed_at: seconds(batch.failedAt),
    expired_at: seconds(batch.expiredAt),
    cancelling_at: seconds(batch.cancellingAt),
    cancelled_at: seconds(batch.cancelledAt),
    request_counts: batch.requestCounts,
    // Tokens of the requests that succeeded; falconq has no prompt cache and no reasoning tokens.
    usage: {
      input_tokens: batch.promptTokens, input_tokens_details: { cached_tokens: 0 },
      output_tokens: batch.completionTokens, output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: batch.promptTokens + batch.completionTokens,
    },
    metadata: batch.metadata,
  };
}
