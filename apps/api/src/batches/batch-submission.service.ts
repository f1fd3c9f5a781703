import { createHash, randomBytes } from 'node:crypto';
import { HttpStatus, Inject, Injectable, Logger } from '@nestjs/common';
import type { GenerateJobData } from '@app/contracts';
import type { BatchEndpoint, BatchError, BatchItemInput, BatchKind, BatchRecord, ResultsStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import { RESULTS_STORE } from '../infra/infra.module';
import type { Principal } from '../auth/principal';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';

export const COMPLETION_WINDOWS: Record<string, number> = { '24h': 24 * 3600 * 1000 };

export interface BatchSubmission {
  kind: BatchKind;
  endpoint: BatchEndpoint;
  items: BatchItemInput[];
  completionWindow: string;
  metadata: Record<string, string> | null;
  inputFileId: string | null;
  /** Seconds the batch and its output files are kept once final (output_expires_after); default: the store's. */
  retentionSeconds?: number;
  /**
   * Lines that cannot run: the batch is created `failed` with them as its errors (OpenAI's behaviour for an input
   * file that fails validation), and nothing is enqueued.
   */
  invalidLines?: BatchError[];
}

export interface IdempotencyRequest {
  key: string;
  /** Canonical form of the request, so a reused key with a different request is refused. */
  body: unknown;
}

export const newBatchId = (): string => `batch_${randomBytes(12).toString('hex')}`;

export function jobsOf(batchId: string, owner: string, items: BatchItemInput[], kind: GenerateJobData['kind'] = 'batch'): GenerateJobData[] {
  const enqueuedAt = Date.now();
  return items.map((item) => ({
    kind, batchId, index: item.index, customId: item.customId, prompt: item.prompt, params: item.params, owner, enqueuedAt,
    ...(item.promptIds ? { promptIds: item.promptIds } : {}),
  }));
}

/**
 * Creates a batch from items that were fully validated already: checks the tenant's limits and the idempotency key,
 * stores the batch, enqueues all its jobs, and marks it in_progress. If enqueueing fails the batch is marked failed
 * and its enqueued jobs are taken back, so no half batch runs.
 */
@Injectable()
export class BatchSubmissionService {
  private readonly logger = new Logger('BatchSubmission');

  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(RESULTS_STORE) private readonly store: ResultsStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
  ) {}

  async submit(principal: Principal, submission: BatchSubmission, idempotency: IdempotencyRequest | null): Promise<BatchRecord> {
    const batchId = newBatchId();
    if (idempotency) {
      const fingerprint = createHash('sha256').update(JSON.stringify(idempotency.body)).digest('hex');
      const claim = await this.store.claimIdempotencyKey(principal.tenant, idempotency.key, batchId, fingerprint);
      if (!claim.claimed) return this.replay(claim.batchId, claim.fingerprint === fingerprint);
    }
    try {
      if (submission.invalidLines && submission.invalidLines.length > 0) return await this.createFailed(principal, batchId, submission, submission.invalidLines);
      await this.checkBatchesInFlight(principal);
      return await this.createAndEnqueue(principal, batchId, submission);
    } catch (error) {
      if (idempotency) await this.store.releaseIdempotencyKey(principal.tenant, idempotency.key, batchId);
      throw error;
    }
  }

  private async replay(batchId: string, sameRequest: boolean): Promise<BatchRecord> {
    if (!sameRequest) {
      throw new ApiError(HttpStatus.UNPROCESSABLE_ENTITY, 'invalid_request_error',
        'This Idempotency-Key was already used with a different request body; use a new key for a new batch.', { code: 'idempotency_key_reused' });
    }
    const existing = await this.store.getBatch(batchId);
    if (!existing) throw ApiError.conflict('A request with this Idempotency-Key is still being processed; retry shortly.', 'idempotency_in_progress');
    return existing;
  }

  private async checkBatchesInFlight(principal: Principal): Promise<void> {
    const limit = this.config.limits.maxBatchesInFlight;
    if (limit === 0) return;
    const active = await this.store.countActiveBatches(principal.tenant);
    if (active >= limit) {
      throw new ApiError(HttpStatus.TOO_MANY_REQUESTS, 'rate_limit_error',
        `This tenant already has ${active} unfinished batches (FALCONQ_MAX_BATCHES_IN_FLIGHT is ${limit}); wait for one to finish or cancel one.`,
        { code: 'too_many_batches_in_flight' });
    }
  }

  /** A batch whose input failed validation: stored with no items and moved straight to `failed` with the errors. */
  private async createFailed(principal: Principal, batchId: string, submission: BatchSubmission, errors: BatchError[]): Promise<BatchRecord> {
    await this.store.createBatch(this.newBatch(principal, batchId, { ...submission, items: [] }));
    return (await this.store.markBatchFailed(batchId, errors))!;
  }

  private newBatch(principal: Principal, batchId: string, submission: BatchSubmission) {
    return {
      id: batchId,
      kind: submission.kind,
      owner: principal.tenant,
      endpoint: submission.endpoint,
      model: this.model.id,
      completionWindow: submission.completionWindow,
      completionWindowMs: COMPLETION_WINDOWS[submission.completionWindow],
      metadata: submission.metadata,
      inputFileId: submission.inputFileId,
      items: submission.items,
      ...(submission.retentionSeconds !== undefined ? { retentionSeconds: submission.retentionSeconds } : {}),
    };
  }

  private async createAndEnqueue(principal: Principal, batchId: string, submission: BatchSubmission): Promise<BatchRecord> {
    await this.store.createBatch(this.newBatch(principal, batchId, submission));
    try {
      await this.queue.enqueue(jobsOf(batchId, principal.tenant, submission.items));
    } catch (error) {
      this.logger.error(`enqueueing batch ${batchId} failed: ${(error as Error).message}`);
      await this.queue.takeBackNotStarted(batchId, submission.items.map((i) => i.index)).catch(() => undefined);
      await this.store.markBatchFailed(batchId, [{ code: 'enqueue_failed', message: 'The batch could not be queued; nothing of it runs. Retry the request.' }]);
      throw new ApiError(HttpStatus.SERVICE_UNAVAILABLE, 'server_error', `Batch ${batchId} could not be queued and was marked failed; retry the request.`, { code: 'enqueue_failed' });
    }
    const started = await this.store.markBatchInProgress(batchId);
    return started!;
  }
}
