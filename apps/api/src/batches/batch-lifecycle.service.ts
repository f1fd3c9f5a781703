import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { ItemResult } from '@app/contracts';
import type { BatchRecord, ResultsStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { canSee, type Principal } from '../auth/principal';
import { RESULTS_STORE } from '../infra/infra.module';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import { jobsOf } from './batch-submission.service';

/** A batch still validating after this long lost its creator (an api crash between storing and enqueueing). */
const INTERRUPTED_CREATION_MS = 10 * 60_000;

const STOPPED_ERRORS = {
  cancelled: { code: 'batch_cancelled', message: 'This request was cancelled before it ran.' },
  expired: { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' },
} as const;

/** Reads a batch for a caller, cancels, retries failed items, and expires batches past their completion window. */
@Injectable()
export class BatchLifecycleService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('BatchLifecycle');
  private sweepTimer?: NodeJS.Timeout;
  private sweeping = false;

  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(RESULTS_STORE) private readonly store: ResultsStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
  ) {}

  onModuleInit(): void {
    this.sweepTimer = setInterval(() => void this.sweepExpired(), this.config.expirySweepMs);
    this.sweepTimer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.sweepTimer);
  }

  /** The batch if the caller may see it; 404 otherwise (others' batches are not revealed). */
  async visibleBatch(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.store.getBatch(batchId);
    if (!batch || batch.kind === 'online' || !canSee(principal, batch.owner)) throw ApiError.notFound('batch', batchId);
    return batch;
  }

  async cancel(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.visibleBatch(principal, batchId);
    if (batch.status === 'cancelled' || batch.status === 'cancelling') return batch;
    if (!['validating', 'in_progress', 'finalizing'].includes(batch.status)) {
      throw ApiError.conflict(`Batch ${batchId} is ${batch.status} and can no longer be cancelled.`, 'batch_not_cancellable');
    }
    await this.store.requestCancel(batchId);
    await this.stopNotStartedItems(batchId, 'cancelled');
    return (await this.store.getBatch(batchId))!;
  }

  /** Re-enqueues the failed items only; their new results land under the same indices and custom_ids. */
  async retryFailed(principal: Principal, batchId: string): Promise<BatchRecord> {
    const batch = await this.visibleBatch(principal, batchId);
    if (!['completed', 'in_progress', 'finalizing'].includes(batch.status)) {
      throw ApiError.conflict(`Batch ${batchId} is ${batch.status}; only completed or running batches can retry failed items.`, 'batch_not_retryable');
    }
    const indices = await this.store.reopenFailedItems(batchId);
    if (indices.length > 0) {
      const items = await this.store.getItemInputs(batchId, indices);
      await this.queue.requeue(jobsOf(batchId, batch.owner, items));
    }
    return (await this.store.getBatch(batchId))!;
  }

  /** Takes back the jobs no worker holds yet and records those items as cancelled/expired; workers stop the rest. */
  async stopNotStartedItems(batchId: string, reason: 'cancelled' | 'expired'): Promise<void> {
    const pending = await this.store.listPendingIndices(batchId);
    const stopped = await this.queue.takeBackNotStarted(batchId, pending);
    if (stopped.length === 0) return;
    const inputs = new Map((await this.store.getItemInputs(batchId, stopped)).map((item) => [item.index, item]));
    for (const index of stopped) {
      const result: ItemResult = {
        batchId, index, customId: inputs.get(index)?.customId ?? `item-${index}`, status: reason, attempts: 0,
        finishedAt: Date.now(), error: { ...STOPPED_ERRORS[reason] },
      };
      await this.store.recordResult(result);
    }
  }

  /**
   * Idempotent across api replicas: the store lets exactly one caller expire a batch. Also fails batches whose
   * creation was interrupted, taking back whatever part of them was enqueued (never half a batch running).
   */
  async sweepExpired(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      for (const batchId of await this.store.listStaleValidating(Date.now() - INTERRUPTED_CREATION_MS, 100)) {
        const batch = await this.store.markBatchFailed(batchId, [{ code: 'creation_interrupted', message: 'The api stopped while creating this batch; nothing of it runs. Submit it again.' }]);
        if (batch?.status === 'failed') {
          this.logger.warn(`batch ${batchId}: creation was interrupted; marked failed`);
          await this.queue.takeBackNotStarted(batchId, Array.from({ length: batch.requestCounts.total }, (_, i) => i));
        }
      }
      for (const batchId of await this.store.listBatchesDueForExpiry(Date.now(), 100)) {
        if (await this.store.expireBatch(batchId)) {
          this.logger.log(`batch ${batchId} expired`);
          await this.stopNotStartedItems(batchId, 'expired');
        }
      }
    } catch (error) {
      this.logger.warn(`expiry sweep failed (will retry): ${(error as Error).message}`);
    } finally {
      this.sweeping = false;
    }
  }
}
