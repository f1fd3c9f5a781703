import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { BATCH_ERRORS, isRetryable, jobOf } from '@app/contracts';
import type { BatchRecord, RedisStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { canSee, type Principal } from '../auth/principal';
import { STORE } from '../infra/infra.module';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import { BatchSubmissionService, range } from './batch-submission.service';

/** A batch still validating after this long lost its creator (an api crash between storing and going in_progress). */
export const INTERRUPTED_CREATION_MS = 2 * 60_000;

/**
 * The api's side of the lifecycle, kept thin: reads a batch for a caller, asks the store for cancel and retry, and
 * sweeps (expiry, interrupted creations). Which transitions are allowed and how a batch settles is the lifecycle's
 * (libs/contracts), applied by the store.
 */
@Injectable()
export class BatchLifecycleService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('BatchLifecycle');
  private sweepTimer?: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
    private readonly submissions: BatchSubmissionService,
  ) {}

  onModuleInit(): void {
    this.sweepTimer = setInterval(() => void this.sweep(), this.config.expirySweepMs);
    this.sweepTimer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.sweepTimer);
  }

  /** The batch if the caller may see it; 404 otherwise (others' batches are not revealed). */
  async visibleBatch(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.store.batches.get(batchId);
    if (!batch || batch.kind === 'online' || !canSee(principal, batch.owner)) throw ApiError.notFound('batch', batchId);
    return batch;
  }

  async cancel(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.visibleBatch(principal, batchId);
    if (batch.status === 'cancelled' || batch.status === 'cancelling') return batch;
    const after = await this.store.batches.requestCancel(batchId);
    if (after?.status !== 'cancelling') {
      throw ApiError.conflict(`Batch ${batchId} is ${after?.status ?? batch.status} and can no longer be cancelled.`, 'batch_not_cancellable');
    }
    await this.stopNotStartedItems(batchId);
    return (await this.store.batches.get(batchId))!;
  }

  /** Re-enqueues the failed items only; their new results land under the same indices and custom_ids. */
  async retryFailed(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.visibleBatch(principal, batchId);
    if (!isRetryable(batch.status)) {
      throw ApiError.conflict(`Batch ${batchId} is ${batch.status}; only completed or running batches can retry failed items.`, 'batch_not_retryable');
    }
    const indices = await this.store.batches.reopenFailedItems(batchId);
    if (indices.length > 0) {
      const items = await this.store.batches.itemInputs(batchId, indices);
      await this.queue.requeue(items.flatMap((item) => (item ? [jobOf(batchId, batch.owner, item)] : [])));
    }
    return (await this.store.batches.get(batchId))!;
  }

  /** Takes back the jobs no worker holds yet and reports those items stopped; workers stop the rest. */
  async stopNotStartedItems(batchId: string): Promise<void> {
    const pending = await this.store.results.pendingIndices(batchId);
    const stopped = await this.queue.takeBackNotStarted(batchId, pending);
    if (stopped.length === 0) return;
    const inputs = await this.store.batches.storedItems(batchId, stopped);
    for (const [i, index] of stopped.entries()) {
      await this.store.results.record({
        batchId, index, customId: inputs[i]?.customId ?? `item-${index}`, outcome: 'stopped', attempts: 0, finishedAt: Date.now(),
      });
    }
  }

  /**
   * Idempotent across api replicas: the store lets exactly one caller expire a batch, and finishing an interrupted
   * creation twice changes nothing. Every interrupted creation is found, however many batches came before it.
   */
  async sweep(now = Date.now()): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      for (const batchId of await this.store.batches.creationsStartedBefore(now - INTERRUPTED_CREATION_MS)) {
        await this.recoverCreation(batchId);
      }
      for (const batchId of await this.store.batches.dueForExpiry(now, 1000)) {
        if (await this.store.batches.expire(batchId)) {
          this.logger.log(`batch ${batchId} expired`);
          await this.stopNotStartedItems(batchId);
        }
      }
    } catch (error) {
      this.logger.warn(`sweep failed (will retry): ${(error as Error).message}`);
    } finally {
      this.sweeping = false;
    }
  }

  /** Finishes enqueueing a batch whose creator died, or fails it as a whole when that is impossible. */
  private async recoverCreation(batchId: string): Promise<void> {
    const batch = await this.store.batches.get(batchId);
    if (batch?.status !== 'validating') return;
    try {
      const after = await this.submissions.finishCreation(batch);
      this.logger.warn(`batch ${batchId}: creation was interrupted; finished it (${after.status})`);
    } catch {
      // finishCreation failed the batch and took its jobs back: nothing of it runs.
      const failed = await this.store.batches.fail(batchId, [{ code: 'creation_interrupted', message: BATCH_ERRORS.creation_interrupted }]);
      this.logger.warn(`batch ${batchId}: creation was interrupted and could not be finished; ${failed?.status}`);
      await this.queue.takeBackNotStarted(batchId, range(batch.requestCounts.total));
    }
  }
}
