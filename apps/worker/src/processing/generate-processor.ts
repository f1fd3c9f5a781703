import { Logger } from '@nestjs/common';
import { ITEM_ERRORS, generateJobId, readJobData, runDecisionOf, type ItemReport, type JobItemRef } from '@app/contracts';
import { DelayedError, UnrecoverableError, type GenerateJob } from '@app/queue';
import { ItemStillRunsError } from '@app/store';
import type { TokenEvent } from '@app/engine';
import type { WorkerEngine, WorkerStore } from '../ports';
import { describeError, isEngineGone, isPromptError } from './error-kinds';
import type { InFlightRegistry, InFlightRequest, StopReason } from './in-flight';
import { failedReport, stoppedReport, succeededReport } from './item-results';
import { toEngineParams } from './job-params';
import { JobInputs } from './job-inputs';

export interface ProcessorOptions {
  workerId: string;
  /** Minimum time between two progress updates of one job (progress is one Redis write). */
  progressMs: number;
  /** How long a job of a batch still being created waits before it is looked at again. */
  holdMs?: number;
  /** Called once the engine is gone (closed or its thread died): the worker must stop taking jobs. */
  onEngineGone?: (error: Error) => void;
}

/** Logged when the store refused a second result for an item (the fault tests count these lines). */
export const DUPLICATE_RESULT_LOG = 'duplicate result ignored:';

/** What happened to a job; becomes the BullMQ job's return value (shown on the dashboard). */
export type JobOutcome = 'succeeded' | 'already-recorded' | 'stopped' | 'batch-missing';

const DEFAULT_HOLD_MS = 500;

/**
 * Runs one `generate` job: one prompt through the engine, one report to the store.
 *
 * Exactly one result per prompt: the store ignores a second result for an item, and a job whose result already
 * exists (a retry after the result was written, a stalled job whose first worker finished after all) completes at
 * once without touching the GPU. The worker never decides a batch's fate: it reports succeeded, failed with a code,
 * or stopped (its batch must no longer run), and the store settles the batch. Errors that are the prompt's fault fail
 * without retry; an engine that is gone hands the job back without spending an attempt; every other error is thrown
 * so BullMQ retries the prompt, and the last attempt reports the failure so the rest of the batch can complete.
 */
export class GenerateJobProcessor {
  private readonly logger = new Logger('GenerateJobProcessor');
  /** Prompts and parameter sets of version-2 jobs, read from the store (the parameter sets through a bounded cache). */
  readonly inputs: JobInputs;

  constructor(
    private readonly engine: WorkerEngine,
    private readonly store: WorkerStore,
    private readonly inFlight: InFlightRegistry,
    private readonly options: ProcessorOptions,
  ) {
    this.inputs = new JobInputs(store.batches);
  }

  async process(job: GenerateJob, token?: string): Promise<JobOutcome> {
    const data = readJobData(job.data);
    // The reads at once: one round trip of latency per job (the parameter set mostly comes from the cache).
    const [existing, batch, input] = await Promise.all([
      this.store.results.get(data.batchId, data.index), this.store.batches.get(data.batchId), this.inputs.resolve(data),
    ]);
    if (existing) {
      this.logger.log(`${data.batchId} #${data.index} already has a result: completing without generating`);
      return 'already-recorded';
    }
    if (!batch) return 'batch-missing';
    const decision = runDecisionOf(batch);
    if (decision === 'hold') return this.handBack(job, token, Date.now() + (this.options.holdMs ?? DEFAULT_HOLD_MS), 'its batch is still being created');
    if (decision === 'stop') return this.reportStopped(job, token, data);
    if (!input) throw new Error(`${data.batchId} #${data.index}: its batch holds no input for this item`);

    const entry = this.inFlight.add(generateJobId(data.batchId, data.index), data);
    try {
      const result = await this.engine.submit(
        { id: entry.requestId, prompt: input.prompt, promptIds: input.promptIds, params: toEngineParams(input.params), interactive: data.kind === 'online' },
        (event) => this.onToken(job, entry, event),
      );
      // A stop that came as the prompt finished by itself changes nothing: the result is complete.
      const cutShort = result.sequences.some((sequence) => sequence.finishReason === 'cancelled');
      if (entry.stopReason && cutShort) return await this.afterStop(job, token, entry.stopReason);
      await this.report(data, succeededReport(data, result, this.reporter(job)));
      return 'succeeded';
    } catch (error) {
      if (error instanceof DelayedError) throw error;
      if (entry.stopReason) return await this.afterStop(job, token, entry.stopReason);
      if (isEngineGone(error)) {
        this.options.onEngineGone?.(error);
        return await this.handBack(job, token, Date.now(), 'the engine of this worker is gone');
      }
      return await this.afterFailure(job, data, error);
    } finally {
      this.inFlight.remove(entry);
    }
  }

  /**
   * Reports the failure of a job BullMQ gave up on without the processor's knowledge (a prompt whose workers kept
   * dying: the stalled limit). Called from the worker's `failed` event; harmless when the result already exists.
   */
  async reportGivenUp(job: GenerateJob, error: Error): Promise<void> {
    const final = job.finishedOn !== undefined || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    const data = readJobData(job.data);
    // Failures the processor saw itself are reported already; this is for the ones BullMQ decided alone.
    if (await this.store.results.get(data.batchId, data.index)) return;
    await this.report(data, failedReport(data, { code: 'worker_failed', message: error.message }, this.reporter(job)));
  }

  /** Puts the job back in the queue without spending one of its attempts; it runs again at `runAt`. */
  private async handBack(job: GenerateJob, token: string | undefined, runAt: number, why: string): Promise<never> {
    await job.moveToDelayed(runAt, token);
    throw new DelayedError(`prompt handed back to the queue: ${why}`);
  }

  private async afterStop(job: GenerateJob, token: string | undefined, reason: StopReason): Promise<JobOutcome> {
    // Another worker (or this one, restarted) runs it.
    if (reason === 'shutdown') return this.handBack(job, token, Date.now(), 'worker shutting down');
    return this.reportStopped(job, token, readJobData(job.data));
  }

  private async reportStopped(job: GenerateJob, token: string | undefined, data: JobItemRef): Promise<JobOutcome> {
    try {
      await this.report(data, stoppedReport(data, this.reporter(job)));
      return 'stopped';
    } catch (error) {
      // The batch runs again (retry-failed reopened it between our read and the report): run the prompt later.
      if (error instanceof ItemStillRunsError) return this.handBack(job, token, Date.now(), error.message);
      throw error;
    }
  }

  private async afterFailure(job: GenerateJob, data: JobItemRef, error: unknown): Promise<never> {
    const message = describeError(error);
    if (isPromptError(error)) {
      await this.report(data, failedReport(data, { code: 'invalid_request', message }, this.reporter(job)));
      throw new UnrecoverableError(message);
    }
    const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    this.logger.warn(`${job.id} attempt ${job.attemptsMade + 1}/${job.opts.attempts ?? 1} failed: ${message}`);
    if (lastAttempt) {
      await this.report(data, failedReport(data, { code: 'worker_failed', message: message || ITEM_ERRORS.worker_failed }, this.reporter(job)));
    }
    throw error instanceof Error ? error : new Error(message);
  }

  /**
   * Tries of this prompt so far, this one included: failed attempts and runs lost with a dead worker (stalls). Hand-backs
   * (a batch still being created, a shutdown, an engine gone) are not tries, though BullMQ counts them as starts.
   */
  private reporter(job: GenerateJob) {
    return { attempts: job.attemptsMade + (job.stalledCounter ?? 0) + 1, workerId: this.options.workerId };
  }

  private async report(data: JobItemRef, report: ItemReport): Promise<void> {
    const outcome = await this.store.results.record(report);
    if (outcome === 'duplicate') {
      // The prompt already had a result (another worker finished it after a stall): this one is dropped.
      this.logger.warn(`${DUPLICATE_RESULT_LOG} ${data.batchId} #${data.index} (${report.outcome})`);
    }
    if (data.kind === 'online') {
      // After the result is stored, so a streaming client that reads the result on 'done' finds it.
      await this.store.events.publishStream(data.batchId, { type: 'done' }).catch(() => undefined);
    }
  }

  private onToken(job: GenerateJob, entry: InFlightRequest, event: TokenEvent): void {
    entry.generatedTokens += 1;
    if (entry.data.kind === 'online' && event.text) {
      // Fire and forget: deltas are best-effort (the final text is in the store), and the engine thread never waits.
      void this.store.events.publishStream(entry.data.batchId, { type: 'delta', attempt: entry.attempt, sequence: event.sequence, text: event.text }).catch(() => undefined);
    }
    const now = Date.now();
    if (now - entry.lastProgressAt >= this.options.progressMs) {
      entry.lastProgressAt = now;
      void job.updateProgress({ generatedTokens: entry.generatedTokens }).catch(() => undefined);
    }
  }
}
