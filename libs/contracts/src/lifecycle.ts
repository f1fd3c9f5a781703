// The lifecycle of a batch, written once: its statuses, which status may follow which, how a batch settles when its
// last item is in, and the codes and messages of items that did not succeed. Framework-free data: the store's Lua
// scripts apply it atomically (libs/store), the api and the workers only ask for transitions and report outcomes.

export const BATCH_STATUSES = ['validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** Statuses after which a batch never changes again (except `retry-failed` reopening a completed batch). */
export const FINAL_BATCH_STATUSES = ['failed', 'completed', 'expired', 'cancelled'] as const satisfies readonly BatchStatus[];
export type FinalBatchStatus = (typeof FINAL_BATCH_STATUSES)[number];

export function isFinalStatus(status: BatchStatus): status is FinalBatchStatus {
  return (FINAL_BATCH_STATUSES as readonly BatchStatus[]).includes(status);
}

/** Which statuses a batch may move to from each status; the store refuses every other change. */
export const BATCH_TRANSITIONS: Readonly<Record<BatchStatus, readonly BatchStatus[]>> = {
  // Creation ends in in_progress once every job is enqueued, or in failed when it cannot be finished.
  validating: ['in_progress', 'cancelling', 'failed', 'expired'],
  in_progress: ['finalizing', 'completed', 'expired', 'cancelling', 'failed'],
  finalizing: ['completed', 'expired', 'cancelling', 'failed'],
  cancelling: ['cancelled', 'failed'],
  // retry-failed reopens a completed batch.
  completed: ['in_progress'],
  failed: [],
  expired: [],
  cancelled: [],
};

/**
 * How a batch settles once every item has a result (the store decides it in the same atomic step as the last
 * result). A batch that would complete after its expires_at ends `expired` instead: it did not finish in its window.
 */
export const SETTLEMENT = {
  whenAllItemsDone: { validating: 'completed', in_progress: 'completed', finalizing: 'completed', cancelling: 'cancelled' },
  pastExpiry: { completed: 'expired' },
} as const satisfies {
  whenAllItemsDone: Partial<Record<BatchStatus, FinalBatchStatus>>;
  pastExpiry: Partial<Record<FinalBatchStatus, FinalBatchStatus>>;
};

/** Statuses in which `retry-failed` may reopen a batch's failed items (a completed batch goes back to in_progress). */
export const RETRYABLE_STATUSES = ['completed', 'in_progress', 'finalizing'] as const satisfies readonly BatchStatus[];

export function isRetryable(status: BatchStatus): boolean {
  return (RETRYABLE_STATUSES as readonly BatchStatus[]).includes(status);
}

/** What a worker does with a job of a batch in this state: generate, wait until creation ends, or stop. */
export type RunDecision = 'run' | 'hold' | 'stop';

/**
 * Jobs run only while their batch is in_progress (or finalizing) and inside its completion window. While the batch
 * is still `validating` its creation may yet fail as a whole, so its jobs wait: never half a batch running.
 */
export function runDecisionOf(batch: { status: BatchStatus; expiresAt: number }, now = Date.now()): RunDecision {
  if (batch.status === 'validating') return 'hold';
  if ((batch.status === 'in_progress' || batch.status === 'finalizing') && now < batch.expiresAt) return 'run';
  return 'stop';
}

// ---------------------------------------------------------------------------------------------- item outcomes

export type ItemStatus = 'succeeded' | 'failed' | 'expired' | 'cancelled';

/** The code and message of every item that did not succeed. */
export const ITEM_ERRORS = {
  /** The prompt or its parameters are invalid (retrying cannot help); the message names the field. */
  invalid_request: 'The request is invalid.',
  /** Every attempt failed on the workers; the message is the last attempt's error. */
  worker_failed: 'The request failed on the workers.',
  batch_cancelled: 'This request was cancelled before it finished.',
  batch_expired: 'This request could not be executed before the completion window expired.',
  batch_failed: 'This request was not executed because its batch failed.',
} as const;
export type ItemErrorCode = keyof typeof ITEM_ERRORS;

/**
 * A worker reports `stopped` for an item it did not finish because its batch must no longer run; the store turns
 * it into the item status and error that match the batch's state at that moment (past its window: expired).
 */
export const STOPPED_ITEM = {
  byBatchStatus: {
    cancelling: { status: 'cancelled', code: 'batch_cancelled' },
    cancelled: { status: 'cancelled', code: 'batch_cancelled' },
    expired: { status: 'expired', code: 'batch_expired' },
    failed: { status: 'failed', code: 'batch_failed' },
  },
  pastExpiry: { status: 'expired', code: 'batch_expired' },
} as const satisfies {
  byBatchStatus: Partial<Record<BatchStatus, { status: ItemStatus; code: ItemErrorCode }>>;
  pastExpiry: { status: ItemStatus; code: ItemErrorCode };
};

/** The error of an item a finished batch never ran (it has no result): why, from the batch's final status. */
export function missingItemError(status: BatchStatus): { code: ItemErrorCode; message: string } {
  const stopped = (STOPPED_ITEM.byBatchStatus as Partial<Record<BatchStatus, { code: ItemErrorCode }>>)[status];
  const code = stopped?.code ?? 'batch_failed';
  return { code, message: ITEM_ERRORS[code] };
}

// ---------------------------------------------------------------------------------------------- batch errors

/** Why a whole batch failed (its `errors.data`). */
export const BATCH_ERRORS = {
  enqueue_failed: 'The batch could not be queued; nothing of it ran. Retry the request.',
  creation_interrupted: 'The api stopped while creating this batch and its jobs could not be queued; nothing of it ran. Submit it again.',
} as const;
export type BatchErrorCode = keyof typeof BATCH_ERRORS;
