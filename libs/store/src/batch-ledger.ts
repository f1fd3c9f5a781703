import { contentIdOf, paramsIdOf, renderTemplate, type BatchStatus, type JobParams } from '@app/contracts';
import type { RedisClient } from '@app/redis';
import { IdempotencyKeys, type IdempotencyClaim, type IdempotencyHolder } from './idempotency-keys';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';
import { matchesBatchQuery, type BatchError, type BatchItemInput, type BatchPage, type BatchRecord, type ListBatchesQuery, type NewBatch, type StoredItem } from './types';

export interface BatchLedgerOptions {
  prefix: string;
  /** Events kept per batch for late subscribers (online requests keep none: nothing reads them). */
  historySize?: number;
}

export interface CreateBatchOptions {
  /** Refuse the batch when its owner already has this many unfinished batches (0 = no limit); online ones don't count. */
  maxInFlight?: number;
  /** Claim this Idempotency-Key with the batch, in the same atomic step. */
  idempotency?: IdempotencyClaim;
}

/** What creating a batch did: created it, or found the key already held, or the owner at its in-flight limit. */
export type CreateBatchOutcome =
  | { created: BatchRecord }
  | { keyHeldBy: IdempotencyHolder }
  | { atInFlightLimit: number };

/** Item inputs are written in chunks before the batch exists, so no single command blocks Redis for long. */
const STAGE_CHUNK = 1000;
/** Staged items of a creation that never happened expire on their own. */
const STAGED_TTL_S = 24 * 3600;
const PAGE = 500;
/**
 * A batch's parameter sets share its items hash (its retention, its staging and its atomic creation) under fields of
 * their own: `params:<paramsIdOf>` beside the items' numeric indices.
 */
const paramsField = (paramsId: string): string => `params:${paramsId}`;
/** A template batch's template, likewise: `template:<contentIdOf>`. */
const templateField = (templateId: string): string => `template:${templateId}`;
/** What naming the template costs an item's record (`"templateId":"<16 hex>",` and the row's key). */
const ROW_OVERHEAD = 40;

const num = (v: string | undefined): number | null => (v === undefined || v === '' ? null : Number(v));

function toBatchRecord(h: Record<string, string>): BatchRecord | null {
  if (!h.id) return null;
  return {
    id: h.id,
    kind: h.kind as BatchRecord['kind'],
    owner: h.owner,
    endpoint: h.endpoint as BatchRecord['endpoint'],
    model: h.model,
    status: h.status as BatchStatus,
    completionWindow: h.completion_window,
    metadata: h.metadata ? (JSON.parse(h.metadata) as Record<string, string>) : null,
    inputFileId: h.input_file_id || null,
    outputFileId: h.output_file_id,
    errorFileId: h.error_file_id,
    createdAt: Number(h.created_at),
    inProgressAt: num(h.in_progress_at),
    finalizingAt: num(h.finalizing_at),
    completedAt: num(h.completed_at),
    failedAt: num(h.failed_at),
    expiredAt: num(h.expired_at),
    cancellingAt: num(h.cancelling_at),
    cancelledAt: num(h.cancelled_at),
    expiresAt: Number(h.expires_at),
    requestCounts: { total: Number(h.total), completed: Number(h.completed), failed: Number(h.failed) },
    promptTokens: Number(h.prompt_tokens ?? 0),
    completionTokens: Number(h.completion_tokens ?? 0),
    errors: h.errors ? (JSON.parse(h.errors) as BatchError[]) : null,
    retentionSeconds: Number(h.retention_s ?? 0),
  };
}

/**
 * The batches: creation, reads, and every status change, each one atomic step that the lifecycle allows
 * (BATCH_TRANSITIONS in libs/contracts). Results and the settling of a batch are ItemResults'.
 */
export class BatchLedger {
  readonly keys: StoreKeys;
  private readonly idempotency: IdempotencyKeys;
  private readonly historySize: number;

  constructor(private readonly redis: RedisClient, options: BatchLedgerOptions) {
    this.keys = new StoreKeys(options.prefix);
    this.idempotency = new IdempotencyKeys(redis, options.prefix);
    this.historySize = options.historySize ?? 200;
  }

  /**
   * Creates the batch (status `validating`) with its item inputs, the in-flight check and the Idempotency-Key claim
   * in one atomic step: a crash before it leaves nothing (staged items expire), after it a whole batch.
   */
  async create(batch: NewBatch, options: CreateBatchOptions = {}): Promise<CreateBatchOutcome> {
    const k = this.keys;
    await this.stageItems(batch);
    const createdAt = batch.createdAt ?? Date.now();
    const expiresAt = createdAt + batch.completionWindowMs;
    const fields = {
      id: batch.id, kind: batch.kind, owner: batch.owner, endpoint: batch.endpoint, model: batch.model, status: 'validating',
      completion_window: batch.completionWindow, window_ms: batch.completionWindowMs,
      metadata: batch.metadata ? JSON.stringify(batch.metadata) : '', input_file_id: batch.inputFileId ?? '',
      output_file_id: `file-${batch.id}-output`, error_file_id: `file-${batch.id}-errors`, created_at: createdAt,
      expires_at: expiresAt, total: batch.items.length, completed: 0, failed: 0, completion_tokens: 0,
      retention_s: batch.retentionSeconds, history_max: batch.kind === 'online' ? 0 : this.historySize,
    };
    const claim = options.idempotency;
    const reply = (await withStoreCommands(this.redis).falconqCreateBatch(
      k.batch(batch.id), k.items(batch.id), k.customIds(batch.id), k.stagedItems(batch.id), k.stagedCustomIds(batch.id),
      k.deadlines(), k.creating(), k.active(batch.owner), k.allBatches(), k.ownerBatches(batch.owner),
      claim ? this.idempotency.redisKey(claim.owner, claim.key) : k.idempotency(batch.owner, 'none'),
      JSON.stringify(Object.fromEntries(Object.entries(fields).map(([key, value]) => [key, String(value)]))), createdAt, expiresAt, batch.kind === 'online' ? 0 : 1, options.maxInFlight ?? 0,
      claim ? IdempotencyKeys.value({ batchId: batch.id, fingerprint: claim.fingerprint }) : '', claim?.ttlSeconds ?? 0,
    )) as [string, string?];
    if (reply[0] !== 'created') await this.redis.del(k.stagedItems(batch.id), k.stagedCustomIds(batch.id));
    if (reply[0] === 'key-taken') return { keyHeldBy: JSON.parse(reply[1]!) as IdempotencyHolder };
    if (reply[0] === 'limit') return { atInFlightLimit: Number(reply[1]) };
    if (reply[0] === 'exists') throw new Error(`batch ${batch.id} exists already`);
    const created = await this.get(batch.id);
    if (!created) throw new Error(`batch ${batch.id} vanished right after it was created`);
    return { created };
  }

  /**
   * Each item without its parameters, and each distinct parameter set once, in chunks of items; a template batch's
   * items with their row instead of their prompt, and its template once.
   */
  private async stageItems(batch: NewBatch): Promise<void> {
    if (batch.items.length === 0) return;
    const k = this.keys;
    const staged = new Set<string>();
    const templateId = batch.template === undefined ? undefined : contentIdOf(batch.template);
    for (let start = 0; start < batch.items.length; start += STAGE_CHUNK) {
      const items: Record<string, string> = {};
      const customIds: Record<string, string> = {};
      for (const { params, prompt, row, ...own } of batch.items.slice(start, start + STAGE_CHUNK)) {
        const paramsId = paramsIdOf(params);
        if (!staged.has(paramsId)) {
          staged.add(paramsId);
          items[paramsField(paramsId)] = JSON.stringify(params);
        }
        // The row where it is the smaller record (a template longer than its fields), else the rendered prompt.
        const byRow = templateId !== undefined && row !== undefined && JSON.stringify(row).length + ROW_OVERHEAD < prompt.length;
        if (byRow && !staged.has(templateField(templateId))) {
          staged.add(templateField(templateId));
          items[templateField(templateId)] = batch.template!;
        }
        const stored: StoredItem = byRow ? { ...own, row: row!, templateId: templateId!, paramsId } : { ...own, prompt, paramsId };
        items[own.index] = JSON.stringify(stored);
        customIds[own.customId] = String(own.index);
      }
      const tx = this.redis.multi();
      tx.hset(k.stagedItems(batch.id), items);
      tx.hset(k.stagedCustomIds(batch.id), customIds);
      tx.expire(k.stagedItems(batch.id), STAGED_TTL_S);
      tx.expire(k.stagedCustomIds(batch.id), STAGED_TTL_S);
      await tx.exec();
    }
  }

  async get(batchId: string): Promise<BatchRecord | null> {
    return toBatchRecord(await this.redis.hgetall(this.keys.batch(batchId)));
  }

  /** Newest first, filtered (a scan of the owner's batches); online requests are not listed. */
  async list(query: ListBatchesQuery): Promise<BatchPage> {
    const index = query.owner === undefined ? this.keys.allBatches() : this.keys.ownerBatches(query.owner);
    let start = 0;
    if (query.after) {
      const rank = await this.redis.zrevrank(index, query.after);
      if (rank === null) return { data: [], hasMore: false };
      start = rank + 1;
    }
    const data: BatchRecord[] = [];
    // Ids whose keys reached their retention are dropped from the index as we meet them.
    for (;;) {
      const ids = await this.redis.zrevrange(index, start, start + query.limit - data.length);
      if (ids.length === 0) return { data, hasMore: false };
      for (const id of ids) {
        if (data.length === query.limit) return { data, hasMore: true };
        const batch = await this.get(id);
        if (!batch) await this.redis.zrem(index, id);
        else if (matchesBatchQuery(batch, query)) data.push(batch);
        start++;
      }
    }
  }

  /** Unfinished batches of an owner (online requests not counted). */
  async countActive(owner: string): Promise<number> {
    return this.redis.scard(this.keys.active(owner));
  }

  /** The inputs of these items (their parameters included), in the order asked; null where the batch has no such item. */
  async itemInputs(batchId: string, indices: number[]): Promise<(BatchItemInput | null)[]> {
    const stored = await this.storedItems(batchId, indices);
    const ids = [...new Set(stored.flatMap((item) => (item?.paramsId === undefined ? [] : [item.paramsId])))];
    const sets = new Map<string, JobParams | null>();
    if (ids.length > 0) {
      const raw = await this.redis.hmget(this.keys.items(batchId), ...ids.map(paramsField));
      ids.forEach((id, i) => sets.set(id, raw[i] === null ? null : (JSON.parse(raw[i]!) as JobParams)));
    }
    const templateIds = [...new Set(stored.flatMap((item) => (item?.templateId === undefined ? [] : [item.templateId])))];
    const templates = new Map<string, string | null>();
    if (templateIds.length > 0) {
      const raw = await this.redis.hmget(this.keys.items(batchId), ...templateIds.map(templateField));
      templateIds.forEach((id, i) => templates.set(id, raw[i]));
    }
    return stored.map((item) => {
      if (item === null) return null;
      const { paramsId, templateId, row, prompt, params: inline, ...own } = item;
      const params = inline ?? sets.get(paramsId!);
      if (!params) throw new Error(`batch ${batchId}: item ${item.index} names parameter set ${paramsId}, which is not stored`);
      if (templateId === undefined) return { ...own, prompt: prompt!, params };
      const template = templates.get(templateId);
      if (template == null) throw new Error(`batch ${batchId}: item ${item.index} names template ${templateId}, which is not stored`);
      return { ...own, prompt: renderTemplate(template, row!), params, row: row! };
    });
  }

  /** These items as stored (their parameter set by id), in the order asked; null where the batch has no such item. */
  async storedItems(batchId: string, indices: number[]): Promise<(StoredItem | null)[]> {
    if (indices.length === 0) return [];
    const raw = await this.redis.hmget(this.keys.items(batchId), ...indices.map(String));
    return raw.map((r) => (r === null ? null : (JSON.parse(r) as StoredItem)));
  }

  /** The batch's template by its id (contentIdOf); null when the batch has no such template (or is gone). */
  async batchTemplate(batchId: string, templateId: string): Promise<string | null> {
    return this.redis.hget(this.keys.items(batchId), templateField(templateId));
  }

  /** One of the batch's parameter sets by its id (paramsIdOf); null when the batch has no such set (or is gone). */
  async batchParams(batchId: string, paramsId: string): Promise<JobParams | null> {
    const raw = await this.redis.hget(this.keys.items(batchId), paramsField(paramsId));
    return raw === null ? null : (JSON.parse(raw) as JobParams);
  }

  /** validating -> in_progress once every job is enqueued. */
  async markInProgress(batchId: string): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'in_progress');
    return this.get(batchId);
  }

  /** -> failed, with the errors that explain why; only from the statuses the lifecycle allows it from. */
  async fail(batchId: string, errors: BatchError[]): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'failed', errors);
    return this.get(batchId);
  }

  /** -> cancelling; the batch settles as cancelled once every item has a result. Returns it, null if unknown. */
  async requestCancel(batchId: string): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'cancelling');
    return this.get(batchId);
  }

  /** -> expired; true for exactly one caller. */
  async expire(batchId: string): Promise<boolean> {
    return this.changeStatus(batchId, 'expired');
  }

  /** Ids of active batches whose expires_at has passed. */
  async dueForExpiry(now: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.deadlines(), 0, now, 'LIMIT', 0, limit);
  }

  /**
   * Every batch still `validating` that was created before the given time (its creation was interrupted), however
   * many there are; ids whose batch is gone are dropped from the index on the way.
   */
  async creationsStartedBefore(createdBefore: number): Promise<string[]> {
    const alive: string[] = [];
    for (let offset = 0; ; offset += PAGE) {
      const ids = await this.redis.zrangebyscore(this.keys.creating(), 0, createdBefore, 'LIMIT', offset, PAGE);
      for (const id of ids) {
        const status = await this.redis.hget(this.keys.batch(id), 'status');
        if (status === 'validating') alive.push(id);
        else if (status === null) await this.redis.zrem(this.keys.creating(), id);
      }
      if (ids.length < PAGE) return alive;
    }
  }

  /** Removes the results of failed items (not cancelled/expired ones) and reopens the batch; returns their indices. */
  async reopenFailedItems(batchId: string): Promise<number[]> {
    const k = this.keys;
    const reopened = (await withStoreCommands(this.redis).falconqReopenFailed(
      k.batch(batchId), k.results(batchId), k.history(batchId), k.items(batchId), k.customIds(batchId), k.deadlines(), k.finished(batchId),
      Date.now(), k.eventsChannel(batchId), k.activePrefix(),
    )) as number[];
    return reopened.map(Number).sort((a, b) => a - b);
  }

  /** Returns whether the status changed (false also when the batch does not exist or the lifecycle refuses it). */
  private async changeStatus(batchId: string, to: BatchStatus, errors?: BatchError[]): Promise<boolean> {
    const k = this.keys;
    const result = (await withStoreCommands(this.redis).falconqChangeStatus(
      k.batch(batchId), k.results(batchId), k.history(batchId), k.items(batchId), k.customIds(batchId), k.deadlines(), k.creating(),
      k.finished(batchId), k.webhooksEnabled(), k.webhookEvents(), k.webhookDue(),
      to, Date.now(), k.eventsChannel(batchId), k.activePrefix(), errors ? JSON.stringify(errors) : '',
    )) as [number, string] | null;
    return result !== null && Number(result[0]) === 1;
  }
}
