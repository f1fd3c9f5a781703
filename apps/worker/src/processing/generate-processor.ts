import { Logger } from '@nestjs/common';
import { generateJobId, type GenerateJobData, type ItemResult } from '@app/contracts';
import { DelayedError, UnrecoverableError, type GenerateJob } from '@app/queue';
import type { TokenEvent } from '@app/engine';
import type { WorkerEngine, WorkerStore } from '../ports';
import { describeError, isPromptError } from './error-kinds';
import type { InFlightRegistry, InFlightRequest, StopReason } from './in-flight';
import { CANCELLED_ERROR, EXPIRED_ERROR, succeededResult, unfinishedResult } from './item-results';

export interface ProcessorOptions {
  workerId: string;
  /** Minimum time between two progress updates of one job (progress is one Redis write). */
  progressMs: number;
}

/** Logged when the store refused a second result for an item (the fault tests count these lines). */
export const DUPLICATE_RESULT_LOG = 'duplicate result ignored:';

/** What happened to a job; becomes the BullMQ job's return value (shown on the dashboard). */
export type JobOutcome = 'succeeded' | 'already-recorded' | 'cancelled' | 'expired' | 'batch-missing';

/**
 * Runs one `generate` job: one prompt through the engine, one result in the store.
 *
 * Exactly one result per prompt: the store ignores a second result for an item, and a job whose result already
 * exists (a retry after the result was written, a stalled job whose first worker finished after all) completes at
 * once without touching the GPU. Errors that are the prompt's fault fail without retry; every other error is thrown
 * so BullMQ retries the prompt (on this or another worker), and the last attempt records the failure so the rest
 * of the batch can complete.
 */
export class GenerateJobProcessor {
  private readonly logger = new Logger('GenerateJobProcessor');

  constructor(
    private readonly engine: WorkerEngine,
    private readonly store: WorkerStore,
    private readonly inFlight: InFlightRegistry,
    private readonly options: ProcessorOptions,
  ) {}

  async process(job: GenerateJob, token?: string): Promise<JobOutcome> {
    const data = job.data;
    // Both reads at once: one round trip of latency per job instead of two.
    const [existing, batch] = await Promise.all([this.store.getResult(data.batchId, data.index), this.store.getBatch(data.batchId)]);
    if (existing) {
      this.logger.log(`${data.batchId} #${data.index} already has a result: completing without generating`);
      return 'already-recorded';
    }
    if (!batch) return 'batch-missing';
    const stop = stopReasonOf(batch);
    if (stop) {
      await this.recordStopped(data, stop, job);
      return stop;
    }

    const entry = this.inFlight.add(generateJobId(data.batchId, data.index), data);
    try {
      const result = await this.engine.submit(
        { id: entry.requestId, prompt: data.prompt, promptIds: data.promptIds, params: data.params },
        (event) => this.onToken(job, entry, event),
      );
      // A stop that came as the prompt finished by itself changes nothing: the result is complete.
      const cutShort = result.sequences.some((sequence) => sequence.finishReason === 'cancelled');
      if (entry.stopReason && cutShort) return await this.afterStop(job, token, entry.stopReason);
      await this.record(data, succeededResult(data, result, attemptsOf(job), this.options.workerId));
      return 'succeeded';
    } catch (error) {
      if (error instanceof DelayedError) throw error;
      if (entry.stopReason) return await this.afterStop(job, token, entry.stopReason);
      return await this.afterFailure(job, error);
    } finally {
      this.inFlight.remove(entry);
    }
  }

  /**
   * Records the failure of a job BullMQ gave up on without the processor's knowledge (a prompt whose workers kept
   * dying: the stalled limit). Called from the worker's `failed` event; harmless when the result already exists.
   */
  async recordGivenUp(job: GenerateJob, error: Error): Promise<void> {
    const final = job.finishedOn !== undefined || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    const data = job.data;
    // Failures the processor saw itself are recorded already; this is for the ones BullMQ decided alone.
    if (await this.store.getResult(data.batchId, data.index)) return;
    await this.record(data, unfinishedResult(data, 'failed', { code: 'worker_failed', message: error.message }, attemptsOf(job), this.options.workerId));
  }

  private async afterStop(job: GenerateJob, token: string | undefined, reason: StopReason): Promise<JobOutcome> {
    if (reason === 'shutdown') {
      // Hand the prompt back without spending one of its attempts: another worker (or this one, restarted) runs it.
      await job.moveToDelayed(Date.now(), token);
      throw new DelayedError('worker shutting down: prompt handed back to the queue');
    }
    await this.recordStopped(job.data, reason, job);
    return reason;
  }

  private async afterFailure(job: GenerateJob, error: unknown): Promise<never> {
    const data = job.data;
    const message = describeError(error);
    if (isPromptError(error)) {
      await this.record(data, unfinishedResult(data, 'failed', { code: 'invalid_request', message }, attemptsOf(job), this.options.workerId));
      throw new UnrecoverableError(message);
    }
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    this.logger.warn(`${job.id} attempt ${job.attemptsMade + 1}/${job.opts.attempts ?? 1} failed: ${message}`);
    if (lastAttempt) {
      await this.record(data, unfinishedResult(data, 'failed', { code: 'worker_failed', message }, attemptsOf(job), this.options.workerId));
    }
    throw error instanceof Error ? error : new Error(message);
  }

  private async recordStopped(data: GenerateJobData, reason: 'cancelled' | 'expired', job: GenerateJob): Promise<void> {
    const error = reason === 'cancelled' ? CANCELLED_ERROR : EXPIRED_ERROR;
    await this.record(data, unfinishedResult(data, reason, error, attemptsOf(job), this.options.workerId));
  }

  private async record(data: GenerateJobData, result: ItemResult): Promise<void> {
    const outcome = await this.store.recordResult(result);
    if (outcome === 'duplicate') {
      // The prompt already had a result (another worker finished it after a stall): this one is dropped.
      this.logger.warn(`${DUPLICATE_RESULT_LOG} ${data.batchId} #${data.index} (${result.status})`);
    }
    if (data.kind === 'online') {
      // After the result is stored, so a streaming client that reads the result on 'done' finds it.
      await this.store.publishStream(data.batchId, { type: 'done' }).catch(() => undefined);
    }
  }

  private onToken(job: GenerateJob, entry: InFlightRequest, event: TokenEvent): void {
    entry.generatedTokens += 1;
    if (entry.data.kind === 'online' && event.text) {
      // Fire and forget: deltas are best-effort (the final text is in the store), and the engine thread never waits.
      void this.store.publishStream(entry.data.batchId, { type: 'delta', attempt: entry.attempt, sequence: event.sequence, text: event.text }).catch(() => undefined);
    }
    const now = Date.now();
    if (now - entry.lastProgressAt >= this.options.progressMs) {
      entry.lastProgressAt = now;
      void job.updateProgress({ generatedTokens: entry.generatedTokens }).catch(() => undefined);
    }
  }
}

function attemptsOf(job: GenerateJob): number {
  return Math.max(1, job.attemptsStarted ?? job.attemptsMade + 1);
}

/** A batch the worker must not (or no longer) generate for. */
export function stopReasonOf(batch: { status: string; expiresAt: number }, now = Date.now()): 'cancelled' | 'expired' | null {
  if (batch.status === 'cancelling' || batch.status === 'cancelled') return 'cancelled';
  if (batch.status === 'expired' || batch.expiresAt <= now) return 'expired';
  return null;
}
