import { createHash, randomBytes } from 'node:crypto';
import { HttpStatus, Inject, Injectable, Logger } from '@nestjs/common';
import { BATCH_ERRORS, jobOf } from '@app/contracts';
import type { BatchEndpoint, BatchError, BatchItemInput, BatchKind, BatchRecord, NewBatch, RedisStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import { STORE } from '../infra/infra.module';
import type { Principal } from '../auth/principal';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';

export const COMPLETION_WINDOWS: Record<string, number> = { '24h': 24 * 3600 * 1000 };

export interface BatchSubmission {
  kind: BatchKind;
  endpoint: BatchEndpoint;
  items: BatchItemInput[];
  /** A template batch's template (its items carry their rows): stored once. */
  template?: string;
  completionWindow: string;
  metadata: Record<string, string> | null;
  inputFileId: string | null;
  /** Seconds the batch and its output files are kept once final (output_expires_after); default: FALCONQ_BATCH_RETENTION_S. */
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

/** The fingerprint an Idempotency-Key remembers: a reused key with another request body is refused. */
export function requestFingerprint(body: unknown): string {
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

/** One items-page of a batch's jobs at a time: a 50k-line batch is never held as jobs all at once. */
const ENQUEUE_PAGE = 1000;

/**
 * Creation as one story: (1) the batch, its items, the in-flight check and the Idempotency-Key claim in one atomic
 * step; (2) every job enqueued (their workers hold them while the batch is `validating`); (3) in_progress. A crash
 * after (1) leaves a `validating` batch that a retry with the same key, or the recovery sweep, finishes by running
 * (2) and (3) again, idempotently; nothing of it runs before (3). If enqueueing fails the batch fails as a whole.
 */
@Injectable()
export class BatchSubmissionService {
  private readonly logger = new Logger('BatchSubmission');

  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
  ) {}

  async submit(principal: Principal, submission: BatchSubmission, idempotency: IdempotencyRequest | null): Promise<BatchRecord> {
    const fingerprint = idempotency ? requestFingerprint(idempotency.body) : '';
    const invalid = submission.invalidLines !== undefined && submission.invalidLines.length > 0;
    const batch = this.newBatch(principal, invalid ? { ...submission, items: [] } : submission);
    // A batch created failed never runs: it does not count against the in-flight limit.
    const limit = invalid ? 0 : this.config.limits.maxBatchesInFlight;
    const claim = idempotency
      ? { owner: principal.tenant, key: idempotency.key, fingerprint, ttlSeconds: this.config.retention.idempotencySeconds }
      : undefined;
    const outcome = await this.store.batches.create(batch, { maxInFlight: limit, idempotency: claim });
    if ('atInFlightLimit' in outcome) {
      throw new ApiError(HttpStatus.TOO_MANY_REQUESTS, 'rate_limit_error',
        `This tenant already has ${outcome.atInFlightLimit} unfinished batches (FALCONQ_MAX_BATCHES_IN_FLIGHT is ${limit}); wait for one to finish or cancel one.`,
        { code: 'too_many_batches_in_flight' });
    }
    if ('keyHeldBy' in outcome) {
      const replayed = await this.replay(outcome.keyHeldBy.batchId, outcome.keyHeldBy.fingerprint === fingerprint);
      if (replayed) return replayed;
      // The key outlived its batch (retention): forget it and create the batch afresh.
      await this.store.idempotency.release(principal.tenant, idempotency!.key, outcome.keyHeldBy);
      return this.submit(principal, submission, idempotency);
    }
    if (invalid) return (await this.store.batches.fail(batch.id, submission.invalidLines!))!;
    return this.finishCreation(outcome.created, submission.items);
  }

  /**
   * Steps (2) and (3) of a `validating` batch, from its stored items: safe to run again (job ids are stable, the
   * transition happens once). Returns the batch as it stands after.
   */
  async finishCreation(batch: BatchRecord, items?: BatchItemInput[]): Promise<BatchRecord> {
    try {
      if (items) await this.queue.enqueue(items.map((item) => jobOf(batch.id, batch.owner, item)));
      else await this.enqueueStored(batch);
    } catch (error) {
      this.logger.error(`enqueueing batch ${batch.id} failed: ${(error as Error).message}`);
      await this.store.batches.fail(batch.id, [{ code: 'enqueue_failed', message: BATCH_ERRORS.enqueue_failed }]);
      await this.queue.takeBackNotStarted(batch.id, range(batch.requestCounts.total)).catch(() => undefined);
      throw new ApiError(HttpStatus.SERVICE_UNAVAILABLE, 'server_error', `Batch ${batch.id} could not be queued and was marked failed; retry the request.`, { code: 'enqueue_failed' });
    }
    return (await this.store.batches.markInProgress(batch.id))!;
  }

  /** Enqueues every item of a stored batch, page by page from its item inputs. */
  private async enqueueStored(batch: BatchRecord): Promise<void> {
    const total = batch.requestCounts.total;
    for (let start = 0; start < total; start += ENQUEUE_PAGE) {
      const inputs = await this.store.batches.itemInputs(batch.id, range(Math.min(ENQUEUE_PAGE, total - start), start));
      const missing = inputs.findIndex((item) => item === null);
      if (missing >= 0) throw new Error(`batch ${batch.id}: item ${start + missing} has no stored input`);
      await this.queue.enqueue(inputs.map((item) => jobOf(batch.id, batch.owner, item!)));
    }
  }

  private newBatch(principal: Principal, submission: BatchSubmission): NewBatch {
    return {
      id: newBatchId(),
      kind: submission.kind,
      owner: principal.tenant,
      endpoint: submission.endpoint,
      model: this.model.id,
      completionWindow: submission.completionWindow,
      completionWindowMs: COMPLETION_WINDOWS[submission.completionWindow],
      metadata: submission.metadata,
      inputFileId: submission.inputFileId,
      items: submission.items,
      ...(submission.template !== undefined ? { template: submission.template } : {}),
      retentionSeconds: submission.retentionSeconds ?? this.config.retention.batchSeconds,
    };
  }

  /**
   * The batch an earlier request with this key created; a creation that request did not finish is finished now (never
   * answered as a success while its jobs are not all queued). Null when the batch is gone.
   */
  private async replay(batchId: string, sameRequest: boolean): Promise<BatchRecord | null> {
    if (!sameRequest) {
      throw new ApiError(HttpStatus.UNPROCESSABLE_ENTITY, 'invalid_request_error',
        'This Idempotency-Key was already used with a different request body; use a new key for a new batch.', { code: 'idempotency_key_reused' });
    }
    const existing = await this.store.batches.get(batchId);
    if (existing?.status === 'validating') return this.finishCreation(existing);
    return existing;
  }
}

export function range(count: number, start = 0): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}
