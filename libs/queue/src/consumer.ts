import { DelayedError, Worker, UnrecoverableError, type Job } from 'bullmq';
import { GENERATE_QUEUE, type StoredJobData } from '@app/contracts';
import { queueConnectionFor, type QueueLocation } from './connection';
import { FINISHED_JOBS_KEPT } from './job-options';

export { DelayedError, UnrecoverableError };
/** A job as a worker finds it: any version still stored (readJobData tells them apart). */
export type GenerateJob = Job<StoredJobData>;

export interface ConsumerOptions extends QueueLocation {
  /** Jobs processed at once: the engine's slots, so every slot has a prompt to decode. */
  concurrency: number;
  /** How long a job's lock lasts without renewal; a worker that dies loses its jobs after this. */
  lockDurationMs: number;
  /** How often this worker looks for jobs whose lock expired (a dead worker's) and puts them back. */
  stalledIntervalMs: number;
  /** A job that stalls more often than this fails instead of being retried forever (a prompt that kills workers). */
  maxStalledCount: number;
  /** The worker name shown on the dashboard and in `getWorkers()`. */
  name: string;
}

export type GenerateProcessor = (job: GenerateJob, token: string | undefined, signal?: AbortSignal) => Promise<unknown>;

/**
 * The BullMQ worker of the `generate` queue; `autorun: false` so the caller wires its events before jobs flow.
 * Closing the worker also closes the connection made for it.
 */
export function createGenerateConsumer(options: ConsumerOptions, processor: GenerateProcessor): Worker<StoredJobData> {
  const owned = queueConnectionFor(options);
  const worker = new Worker<StoredJobData>(GENERATE_QUEUE, processor, {
    connection: owned.connection,
    prefix: options.prefix,
    name: options.name,
    concurrency: options.concurrency,
    lockDuration: options.lockDurationMs,
    stalledInterval: options.stalledIntervalMs,
    maxStalledCount: options.maxStalledCount,
    autorun: false,
    ...FINISHED_JOBS_KEPT,
  });
  worker.once('closed', () => void owned.close());
  return worker;
}
