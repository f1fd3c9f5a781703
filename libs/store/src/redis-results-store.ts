import { createHash, randomBytes } from 'node:crypto';
import type { BatchEvent, ItemResult, RecordOutcome } from '@app/contracts';
import type { Redis, Cluster } from 'ioredis';
import { StoreKeys } from './redis-keys';
import { CHANGE_STATUS, RATE_LIMIT, RECORD_RESULT, REOPEN_FAILED } from './redis-scripts';
import { matchesBatchQuery } from './results-store';
import type {
  BatchError,
  BatchItemInput,
  BatchPage,
  BatchRecord,
  BatchStatus,
  IdempotencyClaim,
  ListBatchesQuery,
  NewBatch,
  NewFile,
  ResultsStore,
  StoreStats,
  StoredFile,
  StreamMessage,
  Unsubscribe,
  WorkerHeartbeat,
  WorkerHeartbeatInfo,
} from './results-store';

export type RedisClient = Redis | Cluster;

export interface RedisResultsStoreOptions {
  /** Key prefix (may hold a Cluster hash tag, e.g. `{falconq}`). */
  prefix: string;
  /** Seconds a finished batch's keys are kept; 0 keeps them forever. */
  retentionSeconds: number;
  /** Seconds an uploaded file is kept; 0 keeps it until deleted. */
  fileRetentionSeconds: number;
  /** Seconds an Idempotency-Key is remembered. */
  idempotencySeconds: number;
  /** Minimum ms between two progress events of one batch. */
  progressIntervalMs?: number;
  /** Events kept per batch for late subscribers. */
  historySize?: number;
  /** Creates the extra connection used for subscriptions (a subscribed connection cannot run commands). */
  createSubscriber: () => RedisClient;
}

const ACTIVE_STATUSES: BatchStatus[] = ['validating', 'in_progress', 'finalizing', 'cancelling'];
const TIMESTAMP_FIELD: Partial<Record<BatchStatus, string>> = {
  in_progress: 'in_progress_at',
  failed: 'failed_at',
  expired: 'expired_at',
  cancelling: 'cancelling_at',
  cancelled: 'cancelled_at',
  completed: 'completed_at',
};

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
    retentionSeconds: num(h.retention_s),
  };
}

function toStoredFile(h: Record<string, string>): StoredFile | null {
  if (!h.id) return null;
  return { id: h.id, owner: h.owner, bytes: Number(h.bytes), createdAt: Number(h.created_at), filename: h.filename, purpose: h.purpose };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** Channel multiplexer over one subscriber connection. */
class Subscriptions {
  private connection: RedisClient | null = null;
  private readonly listeners = new Map<string, Set<(message: string) => void>>();

  constructor(private readonly create: () => RedisClient) {}

  private connect(): RedisClient {
    if (!this.connection) {
      this.connection = this.create();
      this.connection.on('message', (channel: string, message: string) => {
        for (const listener of this.listeners.get(channel) ?? []) listener(message);
      });
    }
    return this.connection;
  }

  async add(channel: string, listener: (message: string) => void): Promise<Unsubscribe> {
    const connection = this.connect();
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      await connection.subscribe(channel);
    }
    set.add(listener);
    return async () => {
      const current = this.listeners.get(channel);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) {
        this.listeners.delete(channel);
        await connection.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    if (this.connection) await this.connection.quit().catch(() => undefined);
    this.connection = null;
  }
}

export class RedisResultsStore implements ResultsStore {
  readonly keys: StoreKeys;
  private readonly progressIntervalMs: number;
  private readonly historySize: number;
  private readonly subscriptions: Subscriptions;

  constructor(private readonly redis: RedisClient, private readonly options: RedisResultsStoreOptions) {
    this.keys = new StoreKeys(options.prefix);
    this.progressIntervalMs = options.progressIntervalMs ?? 250;
    this.historySize = options.historySize ?? 200;
    this.subscriptions = new Subscriptions(options.createSubscriber);
  }

  // ---------------------------------------------------------------- batches

  async createBatch(batch: NewBatch): Promise<BatchRecord> {
    const createdAt = batch.createdAt ?? Date.now();
    const expiresAt = createdAt + batch.completionWindowMs;
    const fields: Record<string, string | number> = {
      id: batch.id,
      kind: batch.kind,
      owner: batch.owner,
      endpoint: batch.endpoint,
      model: batch.model,
      status: 'validating',
      completion_window: batch.completionWindow,
      window_ms: batch.completionWindowMs,
      metadata: batch.metadata ? JSON.stringify(batch.metadata) : '',
      input_file_id: batch.inputFileId ?? '',
      output_file_id: `file-${batch.id}-output`,
      error_file_id: `file-${batch.id}-errors`,
      created_at: createdAt,
      expires_at: expiresAt,
      total: batch.items.length,
      completed: 0,
      failed: 0,
      completion_tokens: 0,
    };
    if (batch.retentionSeconds !== undefined) fields.retention_s = batch.retentionSeconds;
    const tx = this.redis.multi();
    tx.hset(this.keys.batch(batch.id), fields);
    if (batch.items.length > 0) {
      const items: Record<string, string> = {};
      const customIds: Record<string, string> = {};
      for (const item of batch.items) {
        items[item.index] = JSON.stringify(item);
        customIds[item.customId] = String(item.index);
      }
      tx.hset(this.keys.items(batch.id), items);
      tx.hset(this.keys.customIds(batch.id), customIds);
    }
    tx.zadd(this.keys.deadlines(), expiresAt, batch.id);
    tx.zadd(this.keys.validating(), createdAt, batch.id);
    // Online requests are neither listed nor counted against the batches-in-flight limit.
    if (batch.kind !== 'online') {
      tx.sadd(this.keys.active(batch.owner), batch.id);
      tx.zadd(this.keys.allBatches(), createdAt, batch.id);
      tx.zadd(this.keys.ownerBatches(batch.owner), createdAt, batch.id);
    }
    await tx.exec();
    const created = await this.getBatch(batch.id);
    if (!created) throw new Error(`batch ${batch.id} vanished right after it was created`);
    return created;
  }

  /** Returns whether the status changed (false also when the batch does not exist). */
  private async changeStatus(batchId: string, to: BatchStatus, from: BatchStatus[], errors?: BatchError[]): Promise<boolean> {
    const k = this.keys;
    const final = ['completed', 'failed', 'expired', 'cancelled'].includes(to);
    const result = (await this.redis.eval(
      CHANGE_STATUS,
      11,
      k.batch(batchId), k.results(batchId), k.history(batchId), k.items(batchId), k.customIds(batchId), k.deadlines(), k.validating(),
      k.webhooksEnabled(), k.webhookEvents(), k.webhookDue(), k.finished(batchId),
      to, from.join(','), Date.now(), TIMESTAMP_FIELD[to] ?? `${to}_at`, k.eventsChannel(batchId), k.activePrefix(),
      final ? this.options.retentionSeconds : 0, this.historySize, errors ? JSON.stringify(errors) : '',
    )) as [number, string] | null;
    return result !== null && Number(result[0]) === 1;
  }

  async markBatchInProgress(batchId: string): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'in_progress', ['validating']);
    return this.getBatch(batchId);
  }

  async markBatchFailed(batchId: string, errors: BatchError[]): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'failed', ACTIVE_STATUSES, errors);
    return this.getBatch(batchId);
  }

  async getBatch(batchId: string): Promise<BatchRecord | null> {
    return toBatchRecord(await this.redis.hgetall(this.keys.batch(batchId)));
  }

  async listBatches(query: ListBatchesQuery): Promise<BatchPage> {
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
        const batch = await this.getBatch(id);
        if (!batch) await this.redis.zrem(index, id);
        else if (matchesBatchQuery(batch, query)) data.push(batch);
        start++;
      }
    }
  }

  async countActiveBatches(owner: string): Promise<number> {
    return this.redis.scard(this.keys.active(owner));
  }

  async getItemInputs(batchId: string, indices: number[]): Promise<BatchItemInput[]> {
    if (indices.length === 0) return [];
    const raw = await this.redis.hmget(this.keys.items(batchId), ...indices.map(String));
    return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as BatchItemInput);
  }

  // ---------------------------------------------------------------- results

  async recordResult(result: ItemResult): Promise<RecordOutcome> {
    const k = this.keys;
    const id = result.batchId;
    const outcome = (await this.redis.eval(
      RECORD_RESULT,
      11,
      k.batch(id), k.results(id), k.history(id), k.items(id), k.customIds(id), k.deadlines(), k.stats(),
      k.webhooksEnabled(), k.webhookEvents(), k.webhookDue(), k.finished(id),
      result.index, JSON.stringify(result), result.status, Date.now(), result.output?.completionTokens ?? 0,
      result.customId, k.eventsChannel(id), k.activePrefix(), this.options.retentionSeconds, this.progressIntervalMs,
      this.historySize, result.output?.promptTokens ?? 0,
    )) as string;
    // A result for a batch that no longer exists (past its retention) is dropped like a duplicate.
    return outcome === 'recorded' ? 'recorded' : 'duplicate';
  }

  async getResult(batchId: string, index: number): Promise<ItemResult | null> {
    const raw = await this.redis.hget(this.keys.results(batchId), String(index));
    return raw ? (JSON.parse(raw) as ItemResult) : null;
  }

  async indexOfCustomId(batchId: string, customId: string): Promise<number | null> {
    const raw = await this.redis.hget(this.keys.customIds(batchId), customId);
    return raw === null ? null : Number(raw);
  }

  async findCustomIdsByPrefix(batchId: string, prefix: string, limit: number): Promise<{ items: { index: number; customId: string }[]; hasMore: boolean }> {
    // HSCAN's MATCH is a glob: the prefix's own glob characters are escaped.
    const pattern = `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
    const found: { index: number; customId: string }[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys.customIds(batchId), cursor, 'MATCH', pattern, 'COUNT', 1000);
      for (let i = 0; i < flat.length; i += 2) if (flat[i].startsWith(prefix)) found.push({ customId: flat[i], index: Number(flat[i + 1]) });
      cursor = next;
    } while (cursor !== '0');
    found.sort((a, b) => a.index - b.index);
    return { items: found.slice(0, limit), hasMore: found.length > limit };
  }

  async getResultByCustomId(batchId: string, customId: string): Promise<ItemResult | null> {
    const index = await this.indexOfCustomId(batchId, customId);
    return index === null ? null : this.getResult(batchId, index);
  }

  async listResults(batchId: string, offset: number, limit: number): Promise<(ItemResult | null)[]> {
    const total = Number((await this.redis.hget(this.keys.batch(batchId), 'total')) ?? 0);
    const end = Math.min(total, offset + limit);
    if (end <= offset) return [];
    const fields = Array.from({ length: end - offset }, (_, i) => String(offset + i));
    const raw = await this.redis.hmget(this.keys.results(batchId), ...fields);
    return raw.map((r) => (r ? (JSON.parse(r) as ItemResult) : null));
  }

  async listPendingIndices(batchId: string): Promise<number[]> {
    const total = Number((await this.redis.hget(this.keys.batch(batchId), 'total')) ?? 0);
    const done = new Set((await this.redis.hkeys(this.keys.results(batchId))).map(Number));
    const pending: number[] = [];
    for (let i = 0; i < total; i++) if (!done.has(i)) pending.push(i);
    return pending;
  }

  // ---------------------------------------------------------------- lifecycle

  async requestCancel(batchId: string): Promise<BatchRecord | null> {
    await this.changeStatus(batchId, 'cancelling', ['validating', 'in_progress', 'finalizing']);
    return this.getBatch(batchId);
  }

  async expireBatch(batchId: string): Promise<boolean> {
    return this.changeStatus(batchId, 'expired', ACTIVE_STATUSES);
  }

  async listBatchesDueForExpiry(now: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.deadlines(), 0, now, 'LIMIT', 0, limit);
  }

  async listStaleValidating(createdBefore: number, limit: number): Promise<string[]> {
    const ids = await this.redis.zrangebyscore(this.keys.validating(), 0, createdBefore, 'LIMIT', 0, limit);
    // Batches that vanished (retention) leave their id behind: drop those.
    const alive: string[] = [];
    for (const id of ids) {
      if (await this.redis.exists(this.keys.batch(id))) alive.push(id);
      else await this.redis.zrem(this.keys.validating(), id);
    }
    return alive;
  }

  async reopenFailedItems(batchId: string): Promise<number[]> {
    const k = this.keys;
    const reopened = (await this.redis.eval(
      REOPEN_FAILED,
      7,
      k.batch(batchId), k.results(batchId), k.history(batchId), k.items(batchId), k.customIds(batchId), k.deadlines(), k.finished(batchId),
      Date.now(), k.eventsChannel(batchId), k.activePrefix(), this.historySize,
    )) as number[];
    return reopened.map(Number).sort((a, b) => a - b);
  }

  // ---------------------------------------------------------------- idempotency

  async claimIdempotencyKey(owner: string, key: string, batchId: string, fingerprint: string): Promise<IdempotencyClaim> {
    const redisKey = this.keys.idempotency(owner, sha256(key));
    const value = JSON.stringify({ batchId, fingerprint });
    const set = await this.redis.set(redisKey, value, 'EX', this.options.idempotencySeconds, 'NX');
    if (set === 'OK') return { claimed: true, batchId, fingerprint };
    const existing = await this.redis.get(redisKey);
    if (!existing) return this.claimIdempotencyKey(owner, key, batchId, fingerprint);
    const parsed = JSON.parse(existing) as { batchId: string; fingerprint: string };
    return { claimed: false, batchId: parsed.batchId, fingerprint: parsed.fingerprint };
  }

  async releaseIdempotencyKey(owner: string, key: string, batchId: string): Promise<void> {
    const redisKey = this.keys.idempotency(owner, sha256(key));
    const existing = await this.redis.get(redisKey);
    if (existing && (JSON.parse(existing) as { batchId: string }).batchId === batchId) await this.redis.del(redisKey);
  }

  // ---------------------------------------------------------------- files

  async createFile(file: NewFile): Promise<StoredFile> {
    const id = `file-${randomBytes(12).toString('hex')}`;
    const stored: StoredFile = {
      id,
      owner: file.owner,
      bytes: Buffer.byteLength(file.content, 'utf8'),
      createdAt: Date.now(),
      filename: file.filename,
      purpose: file.purpose,
    };
    const tx = this.redis.multi();
    tx.hset(this.keys.file(id), {
      id, owner: stored.owner, bytes: stored.bytes, created_at: stored.createdAt, filename: stored.filename,
      purpose: stored.purpose, content: file.content,
    });
    if (this.options.fileRetentionSeconds > 0) tx.expire(this.keys.file(id), this.options.fileRetentionSeconds);
    tx.zadd(this.keys.allFiles(), stored.createdAt, id);
    tx.zadd(this.keys.ownerFiles(stored.owner), stored.createdAt, id);
    await tx.exec();
    return stored;
  }

  async getFile(fileId: string): Promise<StoredFile | null> {
    const h = await this.redis.hmget(this.keys.file(fileId), 'id', 'owner', 'bytes', 'created_at', 'filename', 'purpose');
    if (!h[0]) return null;
    return toStoredFile({ id: h[0], owner: h[1]!, bytes: h[2]!, created_at: h[3]!, filename: h[4]!, purpose: h[5]! });
  }

  async getFileContent(fileId: string): Promise<string | null> {
    return this.redis.hget(this.keys.file(fileId), 'content');
  }

  async deleteFile(fileId: string): Promise<boolean> {
    const owner = await this.redis.hget(this.keys.file(fileId), 'owner');
    if (owner === null) return false;
    const tx = this.redis.multi();
    tx.del(this.keys.file(fileId));
    tx.zrem(this.keys.allFiles(), fileId);
    tx.zrem(this.keys.ownerFiles(owner), fileId);
    await tx.exec();
    return true;
  }

  async listFiles(owner: string | undefined, limit: number): Promise<StoredFile[]> {
    const index = owner === undefined ? this.keys.allFiles() : this.keys.ownerFiles(owner);
    const ids = await this.redis.zrevrange(index, 0, limit - 1);
    const files = await Promise.all(ids.map((id) => this.getFile(id)));
    return files.filter((f): f is StoredFile => f !== null);
  }

  // ---------------------------------------------------------------- events

  async itemEventsSince(batchId: string, position: number, limit: number): Promise<BatchEvent[]> {
    const raw = await this.redis.lrange(this.keys.finished(batchId), position, position + limit - 1);
    return raw.map((r) => JSON.parse(r) as BatchEvent);
  }

  async recentEvents(batchId: string): Promise<BatchEvent[]> {
    const raw = await this.redis.lrange(this.keys.history(batchId), 0, -1);
    return raw.map((r) => JSON.parse(r) as BatchEvent);
  }

  subscribe(batchId: string, listener: (event: BatchEvent) => void): Promise<Unsubscribe> {
    return this.subscriptions.add(this.keys.eventsChannel(batchId), (m) => listener(JSON.parse(m) as BatchEvent));
  }

  async publishStream(requestId: string, message: StreamMessage): Promise<void> {
    await this.redis.publish(this.keys.streamChannel(requestId), JSON.stringify(message));
  }

  subscribeStream(requestId: string, listener: (message: StreamMessage) => void): Promise<Unsubscribe> {
    return this.subscriptions.add(this.keys.streamChannel(requestId), (m) => listener(JSON.parse(m) as StreamMessage));
  }

  // ---------------------------------------------------------------- workers and stats

  async recordWorkerHeartbeat(workerId: string, info: WorkerHeartbeatInfo): Promise<void> {
    const heartbeat: WorkerHeartbeat = { ...info, workerId, seenAt: Date.now() };
    await this.redis.hset(this.keys.workers(), workerId, JSON.stringify(heartbeat));
  }

  async listWorkers(maxAgeMs: number): Promise<WorkerHeartbeat[]> {
    const all = await this.redis.hgetall(this.keys.workers());
    const now = Date.now();
    const alive: WorkerHeartbeat[] = [];
    const gone: string[] = [];
    for (const [id, raw] of Object.entries(all)) {
      const heartbeat = JSON.parse(raw) as WorkerHeartbeat;
      if (now - heartbeat.seenAt <= maxAgeMs) alive.push(heartbeat);
      // Long-silent workers are forgotten so the hash does not grow with every restart.
      else if (now - heartbeat.seenAt > Math.max(maxAgeMs * 10, 3_600_000)) gone.push(id);
    }
    if (gone.length > 0) await this.redis.hdel(this.keys.workers(), ...gone);
    return alive.sort((a, b) => a.workerId.localeCompare(b.workerId));
  }

  async stats(): Promise<StoreStats> {
    const [s, f, c, e, t] = await this.redis.hmget(this.keys.stats(), 'items_succeeded', 'items_failed', 'items_cancelled', 'items_expired', 'completion_tokens');
    return { itemsSucceeded: Number(s ?? 0), itemsFailed: Number(f ?? 0), itemsCancelled: Number(c ?? 0), itemsExpired: Number(e ?? 0), completionTokens: Number(t ?? 0) };
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  async close(): Promise<void> {
    await this.subscriptions.close();
  }
}

/** Sliding-window request limiter shared by every api replica (see RATE_LIMIT). */
export class RedisRateLimiter {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.keys = new StoreKeys(prefix);
  }

  /**
   * Counts one request of `subject`; returns whether it is within `limit` per any `windowMs`, and, when refused, how
   * long until a request would be accepted.
   */
  async consume(subject: string, limit: number, windowMs = 60_000): Promise<{ allowed: boolean; retryAfterMs: number; remaining: number }> {
    const [allowed, count, retryAfterMs] = (await this.redis.eval(RATE_LIMIT, 1, this.keys.rateLimit(subject), limit, windowMs)) as [number, number, number];
    return { allowed: allowed === 1, retryAfterMs: Number(retryAfterMs), remaining: Math.max(limit - Number(count), 0) };
  }
}
