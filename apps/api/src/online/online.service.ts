import { randomBytes } from 'node:crypto';
import { HttpStatus, Inject, Injectable } from '@nestjs/common';
import { BATCH_ERRORS, jobOf, type ItemResult } from '@app/contracts';
import type { BatchEndpoint, RedisStore, StreamMessage, Unsubscribe } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { STORE } from '../infra/infra.module';
import { JOB_QUEUE, type JobQueue } from '../infra/job-queue';
import type { Principal } from '../auth/principal';
import type { GenerationParams } from '@app/engine';
import type { PreparedPrompt } from '@app/requests';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';

const POLL_MS = 1000;
/** An answered online request is kept briefly (for debugging), not for the batch retention. */
const ONLINE_RETENTION_S = 600;

/** The client closed its connection before the result came: nothing to answer, nothing to log as an error. */
export class ClientGoneError extends Error {
  override readonly name = 'ClientGoneError';
}

export interface OnlineRun {
  requestId: string;
  /** Resolves with the item's result (succeeded or not); rejects with an ApiError on timeout. */
  result: Promise<ItemResult>;
  /** Stops waiting and takes the job back if no worker started it (client went away). */
  abandon(): Promise<void>;
}

/**
 * An online request is a one-item batch of kind "online" (not listed), run by the same queue and workers at a higher
 * priority. The result arrives as the batch's item event (with a poll as a safety net); streamed text deltas arrive
 * on the store's stream channel, published by the worker.
 */
@Injectable()
export class OnlineService {
  constructor(
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
  ) {}

  async start(principal: Principal, endpoint: BatchEndpoint, prompt: PreparedPrompt, params: GenerationParams, onDelta?: (message: StreamMessage) => void): Promise<OnlineRun> {
    const requestId = `online_${randomBytes(12).toString('hex')}`;
    const item = { index: 0, customId: requestId, prompt: prompt.prompt, params, ...(prompt.promptIds ? { promptIds: prompt.promptIds } : {}) };
    const created = await this.store.batches.create({
      id: requestId, kind: 'online', owner: principal.tenant, endpoint, model: this.model.id, completionWindow: 'online',
      completionWindowMs: this.config.onlineTimeoutMs, metadata: null, inputFileId: null, items: [item], retentionSeconds: ONLINE_RETENTION_S,
    });
    if (!('created' in created)) throw new Error(`online request ${requestId} could not be created: ${JSON.stringify(created)}`);
    const unsubscribers: Unsubscribe[] = [];
    if (onDelta) unsubscribers.push(await this.store.events.subscribeStream(requestId, onDelta));

    let settle: ((result: ItemResult) => void) | undefined;
    let fail: ((error: Error) => void) | undefined;
    const result = new Promise<ItemResult>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    let done = false;
    const check = async () => {
      if (done) return;
      const recorded = await this.store.results.get(requestId, 0).catch(() => null);
      if (recorded && !done) {
        done = true;
        settle!(recorded);
      }
    };
    unsubscribers.push(await this.store.events.subscribe(requestId, (event) => void (event.type === 'item' && check())));
    const poll = setInterval(() => void check(), POLL_MS);
    const timeout = setTimeout(() => {
      if (done) return;
      done = true;
      void this.giveUp(requestId);
      fail!(new ApiError(HttpStatus.GATEWAY_TIMEOUT, 'server_error', `No result within ${this.config.onlineTimeoutMs} ms (FALCONQ_ONLINE_TIMEOUT_MS); are workers running?`, { code: 'timeout' }));
    }, this.config.onlineTimeoutMs);
    const cleanup = async () => {
      clearInterval(poll);
      clearTimeout(timeout);
      await Promise.all(unsubscribers.map((u) => u().catch(() => undefined)));
    };
    void result.then(cleanup, cleanup);

    try {
      await this.queue.enqueue([jobOf(requestId, principal.tenant, item, 'online')]);
      await this.store.batches.markInProgress(requestId);
    } catch (error) {
      done = true;
      await cleanup();
      await this.store.batches.fail(requestId, [{ code: 'enqueue_failed', message: `${BATCH_ERRORS.enqueue_failed} (${(error as Error).message})` }]);
      throw new ApiError(HttpStatus.SERVICE_UNAVAILABLE, 'server_error', 'The request could not be queued; retry.', { code: 'enqueue_failed' });
    }
    return {
      requestId,
      result,
      abandon: async () => {
        if (done) return;
        done = true;
        fail!(new ClientGoneError(`client of ${requestId} disconnected`));
        await this.giveUp(requestId);
      },
    };
  }

  /** Cancels the request: a waiting job is taken back, a running one is stopped by its worker. */
  private async giveUp(requestId: string): Promise<void> {
    await this.store.batches.requestCancel(requestId).catch(() => undefined);
    await this.queue.takeBackNotStarted(requestId, [0]).catch(() => undefined);
  }
}
