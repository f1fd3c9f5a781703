import type { DefaultJobOptions } from 'bullmq';

/** How many times a prompt is tried before it is recorded as failed (a worker crash counts as a stall, not an attempt). */
export const DEFAULT_ATTEMPTS = 3;

/**
 * Options every generate job gets (BullMQ writes them into every job: only what is the job's own business).
 */
export function defaultGenerateJobOptions(attempts = DEFAULT_ATTEMPTS): DefaultJobOptions {
  return { attempts, backoff: { type: 'exponential', delay: 1000 } };
}

/**
 * Finished jobs are trimmed: results live in the store, not in BullMQ, so the queue keeps only a bounded tail for the
 * dashboard. Set on the consumer, which applies it to every job it finishes, rather than copied into every job.
 */
export const FINISHED_JOBS_KEPT = {
  removeOnComplete: { count: 1000, age: 3600 },
  removeOnFail: { count: 5000, age: 7 * 24 * 3600 },
} as const;
