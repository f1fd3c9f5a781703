// What the store does on any Redis topology (one Redis, a Cluster with a hash-tag prefix): every class over one
// connection, as the api uses them, plus the workers' view. Run it with describeRedisStoreContract(name, open).
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { contentIdOf, paramsIdOf, renderTemplate, type BatchEvent, type ItemErrorCode, type ItemReport } from '@app/contracts';
import type { RedisClient } from '@app/redis';
import { FILE_CHUNK_BYTES, Files, ItemResults, RedisStore, UPLOAD_STAGING_TTL_S, type BatchItemInput, type BatchRecord, type CreateBatchOptions, type NewBatch } from '../src';

let batchCounter = 0;
const params = {
  maxNewTokens: 8, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: [],
  numReturnSequences: 1, returnFullText: false, ignoreEos: false, truncate: false,
};

export function newBatch(overrides: Partial<NewBatch> = {}, size = 3): NewBatch {
  const id = `batch_contract${batchCounter++}`;
  const items: BatchItemInput[] = Array.from({ length: size }, (_, index) => ({ index, customId: `req-${index}`, prompt: `p${index}`, params }));
  return {
    id, kind: 'openai', owner: 'tenant-a', endpoint: '/v1/completions', model: 'tiny', completionWindowMs: 86_400_000,
    completionWindow: '24h', metadata: { purpose: 'test' }, inputFileId: 'file-in', items, retentionSeconds: 3600, ...overrides,
  };
}

export function succeeded(batchId: string, index: number, text = `text ${index}`): ItemReport {
  return {
    batchId, index, customId: `req-${index}`, outcome: 'succeeded', attempts: 1, finishedAt: Date.now(),
    output: { sequences: [{ text, finishReason: 'eos', tokens: 3 }], promptTokens: 2, completionTokens: 3, timeToFirstTokenMs: 1, generationMs: 2 },
  };
}

export function failed(batchId: string, index: number, code: ItemErrorCode = 'worker_failed'): ItemReport {
  return { batchId, index, customId: `req-${index}`, outcome: 'failed', attempts: 3, finishedAt: Date.now(), error: { code, message: 'boom' } };
}

export function stopped(batchId: string, index: number): ItemReport {
  return { batchId, index, customId: `req-${index}`, outcome: 'stopped', attempts: 1, finishedAt: Date.now() };
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Creates the batch and returns it; throws when the store refused it. */
export async function createdBatch(store: RedisStore, batch: NewBatch, options?: CreateBatchOptions): Promise<BatchRecord> {
  const outcome = await store.batches.create(batch, options);
  if (!('created' in outcome)) throw new Error(`not created: ${JSON.stringify(outcome)}`);
  return outcome.created;
}

/** A batch created and moved to in_progress, as the api leaves it once its jobs are queued. */
export async function runningBatch(store: RedisStore, overrides: Partial<NewBatch> = {}, size = 3): Promise<BatchRecord> {
  const created = await createdBatch(store, newBatch(overrides, size));
  await store.batches.markInProgress(created.id);
  return created;
}

export interface StoreUnderTest {
  store: RedisStore;
  /** The store's own connection (for TTLs and index sizes). */
  connection: RedisClient;
  /** Another client of the same Redis (a worker's). */
  client: () => RedisClient;
}

export function describeRedisStoreContract(name: string, open: () => StoreUnderTest): void {
  describe(`RedisStore contract: ${name}`, () => {
    let store: RedisStore;
    let connection: RedisClient;
    let client: () => RedisClient;

    beforeEach(() => {
      ({ store, connection, client } = open());
    });
    afterEach(async () => {
      await store.close();
    });

    const create = (batch: NewBatch, options?: CreateBatchOptions) => createdBatch(store, batch, options);
    const startedBatch = (overrides: Partial<NewBatch> = {}, size = 3) => runningBatch(store, overrides, size);

    it('creates a batch in validating, then moves it to in_progress', async () => {
      const created = await create(newBatch());
      expect(created).toMatchObject({
        status: 'validating', owner: 'tenant-a', endpoint: '/v1/completions', completionWindow: '24h',
        metadata: { purpose: 'test' }, inputFileId: 'file-in', requestCounts: { total: 3, completed: 0, failed: 0 },
      });
      expect(created.expiresAt - created.createdAt).toBe(86_400_000);
      expect(await store.batches.countActive('tenant-a')).toBe(1);
      const running = await store.batches.markInProgress(created.id);
      expect(running?.status).toBe('in_progress');
      expect(running?.inProgressAt).toEqual(expect.any(Number));
      expect(await store.batches.itemInputs(created.id, [2, 0])).toEqual([
        expect.objectContaining({ index: 2, customId: 'req-2', prompt: 'p2' }),
        expect.objectContaining({ index: 0, customId: 'req-0', prompt: 'p0' }),
      ]);
    });

    it('returns null for unknown batches', async () => {
      expect(await store.batches.get('batch_nope')).toBeNull();
      expect(await store.batches.requestCancel('batch_nope')).toBeNull();
      expect(await store.batches.expire('batch_nope')).toBe(false);
    });

    it('records exactly one result per item and ignores later duplicates', async () => {
      const batch = await startedBatch();
      expect(await store.results.record(succeeded(batch.id, 1, 'first'))).toBe('recorded');
      expect(await store.results.record(succeeded(batch.id, 1, 'second'))).toBe('duplicate');
      expect(await store.results.record(failed(batch.id, 1))).toBe('duplicate');
      expect((await store.results.get(batch.id, 1))?.output?.sequences[0].text).toBe('first');
      expect((await store.results.getByCustomId(batch.id, 'req-1'))?.index).toBe(1);
      expect(await store.results.getByCustomId(batch.id, 'req-9')).toBeNull();
      expect((await store.batches.get(batch.id))?.requestCounts).toEqual({ total: 3, completed: 1, failed: 0 });
    });

    it('keeps counts exact under concurrent duplicate results', async () => {
      const batch = await startedBatch({}, 4);
      const attempts = Array.from({ length: 40 }, (_, i) => store.results.record(i % 2 ? succeeded(batch.id, i % 4) : failed(batch.id, i % 4)));
      const outcomes = await Promise.all(attempts);
      expect(outcomes.filter((o) => o === 'recorded')).toHaveLength(4);
      const after = await store.batches.get(batch.id);
      expect(after!.requestCounts.completed + after!.requestCounts.failed).toBe(4);
      expect(after!.status).toBe('completed');
    });

    it('completes the batch when the last item is recorded, whoever records it', async () => {
      const batch = await startedBatch();
      await store.results.record(succeeded(batch.id, 0));
      await store.results.record(failed(batch.id, 2));
      expect((await store.batches.get(batch.id))?.status).toBe('in_progress');
      await store.results.record(succeeded(batch.id, 1));
      const done = await store.batches.get(batch.id);
      expect(done).toMatchObject({ status: 'completed', requestCounts: { total: 3, completed: 2, failed: 1 } });
      expect(done?.completedAt).toEqual(expect.any(Number));
      expect(done?.finalizingAt).toEqual(expect.any(Number));
      expect(done?.completionTokens).toBe(6);
      expect(await store.batches.countActive('tenant-a')).toBe(0);
      expect(await store.results.pendingIndices(batch.id)).toEqual([]);
    });

    it('pages results in input order, with null for items not done yet', async () => {
      const batch = await startedBatch({}, 5);
      await store.results.record(succeeded(batch.id, 3));
      await store.results.record(succeeded(batch.id, 0));
      const page = await store.results.list(batch.id, 0, 4);
      expect(page.map((r) => r?.index ?? null)).toEqual([0, null, null, 3]);
      expect((await store.results.list(batch.id, 3, 10)).map((r) => r?.index ?? null)).toEqual([3, null]);
      expect(await store.results.list(batch.id, 5, 10)).toEqual([]);
      expect(await store.results.pendingIndices(batch.id)).toEqual([1, 2, 4]);
    });

    it('cancels: cancelling until every item is accounted for, then cancelled', async () => {
      const batch = await startedBatch();
      await store.results.record(succeeded(batch.id, 0));
      expect((await store.batches.requestCancel(batch.id))?.status).toBe('cancelling');
      expect((await store.batches.requestCancel(batch.id))?.status).toBe('cancelling');
      await store.results.record(stopped(batch.id, 1));
      await store.results.record(stopped(batch.id, 2));
      const after = await store.batches.get(batch.id);
      expect(after).toMatchObject({ status: 'cancelled', requestCounts: { total: 3, completed: 1, failed: 2 } });
      expect(after?.cancelledAt).toEqual(expect.any(Number));
      expect((await store.batches.requestCancel(batch.id))?.status).toBe('cancelled');
    });

    it('expires an active batch once and lists batches past their deadline', async () => {
      const batch = await startedBatch({ completionWindowMs: 1000, createdAt: Date.now() - 5000 });
      const other = await startedBatch();
      const due = await store.batches.dueForExpiry(Date.now(), 100);
      expect(due).toContain(batch.id);
      expect(due).not.toContain(other.id);
      const results = await Promise.all([store.batches.expire(batch.id), store.batches.expire(batch.id)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.batches.get(batch.id))?.status).toBe('expired');
      expect(await store.batches.dueForExpiry(Date.now(), 100)).not.toContain(batch.id);
      // A late result is still kept; the status stays expired.
      expect(await store.results.record(succeeded(batch.id, 0))).toBe('recorded');
      expect((await store.batches.get(batch.id))?.status).toBe('expired');
    });

    it('reopens only failed items for a retry and completes again', async () => {
      const batch = await startedBatch();
      await store.results.record(succeeded(batch.id, 0));
      await store.results.record(failed(batch.id, 1));
      await store.results.record(failed(batch.id, 2));
      expect((await store.batches.get(batch.id))?.status).toBe('completed');
      expect(await store.batches.reopenFailedItems(batch.id)).toEqual([1, 2]);
      const reopened = await store.batches.get(batch.id);
      expect(reopened).toMatchObject({ status: 'in_progress', completedAt: null, requestCounts: { total: 3, completed: 1, failed: 0 } });
      expect(await store.batches.countActive('tenant-a')).toBe(1);
      expect(await store.batches.reopenFailedItems(batch.id)).toEqual([]);
      await store.results.record(succeeded(batch.id, 1));
      await store.results.record(succeeded(batch.id, 2));
      expect(await store.batches.get(batch.id)).toMatchObject({ status: 'completed', requestCounts: { completed: 3, failed: 0 } });
    });

    it('lists batches whose creation never finished', async () => {
      const stale = await create(newBatch({ createdAt: Date.now() - 60_000 }));
      const fresh = await create(newBatch());
      const started = await create(newBatch({ createdAt: Date.now() - 60_000 }));
      await store.batches.markInProgress(started.id);
      const found = await store.batches.creationsStartedBefore(Date.now() - 30_000);
      expect(found).toContain(stale.id);
      expect(found).not.toContain(fresh.id);
      expect(found).not.toContain(started.id);
      await store.batches.fail(stale.id, [{ code: 'creation_interrupted', message: 'x' }]);
      expect(await store.batches.creationsStartedBefore(Date.now())).not.toContain(stale.id);
    });

    it('marks a batch failed with its errors', async () => {
      const batch = await create(newBatch());
      const failedBatch = await store.batches.fail(batch.id, [{ code: 'enqueue_failed', message: 'redis down' }]);
      expect(failedBatch).toMatchObject({ status: 'failed', errors: [{ code: 'enqueue_failed', message: 'redis down' }] });
      expect(failedBatch?.failedAt).toEqual(expect.any(Number));
      expect(await store.batches.countActive('tenant-a')).toBe(0);
    });

    it('lists batches newest first per owner with a cursor, without online requests', async () => {
      const now = Date.now();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create(newBatch({ createdAt: now + i }))).id);
      await create(newBatch({ owner: 'tenant-b', createdAt: now + 10 }));
      await create(newBatch({ kind: 'online', createdAt: now + 20 }));
      expect(await store.batches.countActive('tenant-a')).toBe(5);
      const first = await store.batches.list({ owner: 'tenant-a', limit: 2 });
      expect(first.data.map((b) => b.id)).toEqual([ids[4], ids[3]]);
      expect(first.hasMore).toBe(true);
      const second = await store.batches.list({ owner: 'tenant-a', limit: 2, after: ids[3] });
      expect(second.data.map((b) => b.id)).toEqual([ids[2], ids[1]]);
      const last = await store.batches.list({ owner: 'tenant-a', limit: 2, after: ids[1] });
      expect(last).toEqual({ data: [expect.objectContaining({ id: ids[0] })], hasMore: false });
      const all = await store.batches.list({ limit: 100 });
      expect(all.data).toHaveLength(6);
      expect(all.data.every((b) => b.kind !== 'online')).toBe(true);
    });

    it('claims an idempotency key per owner with the batch it creates, and names the holder to a second request', async () => {
      const claim = (fingerprint: string, owner = 'tenant-a') => ({ idempotency: { owner, key: 'k1', fingerprint, ttlSeconds: 60 } });
      const first = await create(newBatch(), claim('f1'));
      expect(await store.batches.create(newBatch(), claim('f2'))).toEqual({ keyHeldBy: { batchId: first.id, fingerprint: 'f1' } });
      expect(await create(newBatch({ owner: 'tenant-b' }), claim('f1', 'tenant-b'))).toMatchObject({ owner: 'tenant-b' });
      await store.idempotency.release('tenant-a', 'k1', { batchId: 'batch_other', fingerprint: 'f1' });
      expect(await store.idempotency.holder('tenant-a', 'k1')).toEqual({ batchId: first.id, fingerprint: 'f1' });
      await store.idempotency.release('tenant-a', 'k1', { batchId: first.id, fingerprint: 'f1' });
      expect(await store.idempotency.holder('tenant-a', 'k1')).toBeNull();
    });

    it('filters a listing by kind, status and metadata pairs (every pair must match)', async () => {
      const now = Date.now();
      const nightly = await startedBatch({ createdAt: now, metadata: { job: 'nightly', team: 'x' } });
      const hourly = await create(newBatch({ createdAt: now + 1, metadata: { job: 'hourly', team: 'x' } }));
      const native = await startedBatch({ createdAt: now + 2, kind: 'native', metadata: { job: 'nightly', team: 'x' } });
      const ids = async (query: Omit<Parameters<RedisStore['batches']['list']>[0], 'limit'>) => (await store.batches.list({ limit: 10, ...query })).data.map((b) => b.id);
      expect(await ids({ owner: 'tenant-a', kind: 'openai', metadata: { job: 'nightly' } })).toEqual([nightly.id]);
      expect(await ids({ owner: 'tenant-a', metadata: { job: 'nightly', team: 'x' } })).toEqual([native.id, nightly.id]);
      expect(await ids({ owner: 'tenant-a', metadata: { job: 'nightly', team: 'y' } })).toEqual([]);
      expect(await ids({ owner: 'tenant-a', statuses: ['validating'] })).toEqual([hourly.id]);
      expect(await ids({ owner: 'tenant-a', kind: 'native', statuses: ['in_progress', 'completed'] })).toEqual([native.id]);
    });

    it('finds items by custom_id prefix, in input order, glob characters taken literally', async () => {
      const items: BatchItemInput[] = ['user-2', 'user-10', 'admin-1', 'user*x', 'user-3'].map((customId, index) => ({ index, customId, prompt: 'p', params }));
      const batch = await create({ ...newBatch(), items });
      expect(await store.results.findCustomIdsByPrefix(batch.id, 'user-', 10)).toEqual({
        items: [{ index: 0, customId: 'user-2' }, { index: 1, customId: 'user-10' }, { index: 4, customId: 'user-3' }], hasMore: false,
      });
      expect(await store.results.findCustomIdsByPrefix(batch.id, 'user-', 2)).toMatchObject({ items: [{ index: 0 }, { index: 1 }], hasMore: true });
      expect(await store.results.findCustomIdsByPrefix(batch.id, 'user*', 10)).toEqual({ items: [{ index: 3, customId: 'user*x' }], hasMore: false });
      expect(await store.results.findCustomIdsByPrefix(batch.id, 'nobody', 10)).toEqual({ items: [], hasMore: false });
    });

    const fileText = async (id: string): Promise<string | null> => {
      const chunks = await store.files.content(id);
      if (!chunks) return null;
      const parts: Buffer[] = [];
      for await (const chunk of chunks) parts.push(chunk);
      return Buffer.concat(parts).toString('utf8');
    };

    it('stores, lists and deletes files, their content as a list of chunks beside the metadata', async () => {
      const keys = store.batches.keys;
      const content = '{"a":1}\n{"b":"é"}\n';
      const file = await store.files.create({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch', content });
      expect(file).toMatchObject({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch', bytes: Buffer.byteLength(content) });
      expect(await store.files.get(file.id)).toEqual(file);
      expect(await fileText(file.id)).toBe(content);
      expect((await store.files.bytes(file.id))?.toString('utf8')).toBe(content);
      expect(await connection.llen(keys.fileChunks(file.id))).toBe(1);
      expect(await connection.ttl(keys.fileChunks(file.id))).toBe(-1);
      expect((await store.files.list('tenant-a', 10)).map((f) => f.id)).toEqual([file.id]);
      expect(await store.files.list('tenant-b', 10)).toEqual([]);
      expect(await store.files.delete(file.id)).toBe(true);
      expect(await store.files.delete(file.id)).toBe(false);
      expect(await store.files.get(file.id)).toBeNull();
      expect(await store.files.content(file.id)).toBeNull();
      expect(await store.files.bytes(file.id)).toBeNull();
      expect(await connection.exists(keys.file(file.id), keys.fileChunks(file.id))).toBe(0);
    });

    it('keeps a large file in chunks and gives it back byte for byte, chunk by chunk', async () => {
      // Multi-byte characters across chunk boundaries: chunks are bytes, only the whole is text.
      const content = 'é€😀 line\n'.repeat(Math.ceil((2.5 * FILE_CHUNK_BYTES) / 16));
      const file = await store.files.create({ owner: 'tenant-a', filename: 'big.jsonl', purpose: 'batch', content });
      expect(file.bytes).toBe(Buffer.byteLength(content));
      expect(await connection.llen(store.batches.keys.fileChunks(file.id))).toBe(3);
      const sizes: number[] = [];
      for await (const chunk of (await store.files.content(file.id))!) sizes.push(chunk.length);
      expect(sizes).toEqual([FILE_CHUNK_BYTES, FILE_CHUNK_BYTES, file.bytes - 2 * FILE_CHUNK_BYTES]);
      expect(await fileText(file.id)).toBe(content);
      expect((await store.files.bytes(file.id))?.equals(Buffer.from(content))).toBe(true);
    });

    it('publishes an upload only when it is complete: staged chunks expire, and the file appears in one step', async () => {
      const keys = store.batches.keys;
      const upload = store.files.beginUpload();
      await upload.append(Buffer.from('{"a":1}\n'));
      await upload.append(Buffer.from('{"b":2}\n'));
      expect(await store.files.get(upload.id)).toBeNull();
      expect(await store.files.content(upload.id)).toBeNull();
      expect(await store.files.list('tenant-a', 10)).toEqual([]);
      const ttl = await connection.ttl(keys.fileUpload(upload.id));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(UPLOAD_STAGING_TTL_S);
      // Every key of the file is one Lua script's: on a Cluster they must share a slot (the prefix's hash tag).
      const file = await upload.publish({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch' });
      expect(file).toMatchObject({ id: upload.id, bytes: 16 });
      expect(await fileText(file.id)).toBe('{"a":1}\n{"b":2}\n');
      expect(await connection.exists(keys.fileUpload(upload.id))).toBe(0);
      expect((await store.files.list('tenant-a', 10)).map((f) => f.id)).toEqual([file.id]);
      await expect(upload.append(Buffer.from('x'))).rejects.toThrow('already published');
    });

    it('an empty upload is a file of 0 bytes', async () => {
      const file = await store.files.beginUpload().publish({ owner: 'tenant-a', filename: 'empty.jsonl', purpose: 'batch' });
      expect(file.bytes).toBe(0);
      expect(await fileText(file.id)).toBe('');
      expect((await store.files.bytes(file.id))?.length).toBe(0);
    });

    it('a discarded upload leaves nothing, and one whose staged chunks are gone is not published', async () => {
      const keys = store.batches.keys;
      const discarded = store.files.beginUpload();
      await discarded.append(Buffer.from('{"a":1}\n'));
      await discarded.discard();
      expect(await connection.exists(keys.fileUpload(discarded.id), keys.file(discarded.id), keys.fileChunks(discarded.id))).toBe(0);

      const lapsed = store.files.beginUpload();
      await lapsed.append(Buffer.from('{"a":1}\n'));
      await lapsed.append(Buffer.from('{"b":2}\n'));
      await connection.del(keys.fileUpload(lapsed.id)); // as if its TTL ran out
      await expect(lapsed.publish({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch' })).rejects.toThrow('staged chunks are gone');
      expect(await store.files.get(lapsed.id)).toBeNull();
      expect(await store.files.list('tenant-a', 10)).toEqual([]);
      expect(await connection.exists(keys.fileUpload(lapsed.id), keys.file(lapsed.id), keys.fileChunks(lapsed.id))).toBe(0);
    });

    it('gives a file and its chunks the same retention (not the staging TTL)', async () => {
      const keys = store.batches.keys;
      const files = new Files(connection, { prefix: keys.prefix, retentionSeconds: 600 });
      const file = await files.create({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch', content: 'x\n' });
      for (const key of [keys.file(file.id), keys.fileChunks(file.id)]) {
        const ttl = await connection.ttl(key);
        expect(ttl).toBeLessThanOrEqual(600);
        expect(ttl).toBeGreaterThan(0);
      }
    });

    it('reads a file stored whole in its hash (before content was chunked)', async () => {
      const keys = store.batches.keys;
      const content = '{"a":"é"}\n';
      await connection.hset(keys.file('file-legacy'), { id: 'file-legacy', owner: 'tenant-a', bytes: Buffer.byteLength(content), created_at: 1, filename: 'old.jsonl', purpose: 'batch', content });
      expect(await fileText('file-legacy')).toBe(content);
      expect((await store.files.bytes('file-legacy'))?.toString('utf8')).toBe(content);
    });

    it('publishes item and final status events and keeps them for late subscribers', async () => {
      const batch = await startedBatch({}, 2);
      const seen: BatchEvent[] = [];
      const unsubscribe = await store.events.subscribe(batch.id, (e) => seen.push(e));
      await store.results.record(succeeded(batch.id, 0));
      await store.results.record(failed(batch.id, 1));
      const final = await waitFor(() => seen.find((e) => e.type === 'status' && e.status === 'completed'));
      expect(final).toMatchObject({ batchId: batch.id, counts: { total: 2, completed: 1, failed: 1 } });
      expect(seen.filter((e) => e.type === 'item').map((e) => e.type === 'item' && e.customId)).toEqual(['req-0', 'req-1']);
      await unsubscribe();
      const history = await store.events.recent(batch.id);
      expect(history.map((e) => e.type)).toEqual(expect.arrayContaining(['status', 'item']));
      expect(history[history.length - 1]).toMatchObject({ type: 'status', status: 'completed' });
    });

    it('keeps every item event in the order the items finished, for streams that resume from a position', async () => {
      const batch = await startedBatch({}, 300);
      for (const index of [2, 0, 1]) await store.results.record(succeeded(batch.id, index));
      for (let i = 3; i < 300; i++) await store.results.record(i % 7 ? succeeded(batch.id, i) : failed(batch.id, i));
      const all = await store.events.itemEventsSince(batch.id, 0, 1000);
      // Not trimmed like the recent-events history: all 300, once each, finishing order.
      expect(all).toHaveLength(300);
      expect(all.slice(0, 3).map((e) => e.type === 'item' && e.index)).toEqual([2, 0, 1]);
      expect(all[7]).toMatchObject({ type: 'item', index: 7, status: 'failed', customId: 'req-7' });
      const rest = await store.events.itemEventsSince(batch.id, 298, 10);
      expect(rest.map((e) => e.type === 'item' && e.index)).toEqual([298, 299]);
      expect(await store.events.itemEventsSince(batch.id, 300, 10)).toEqual([]);
    });

    it('throttles progress events (never one per result)', async () => {
      const batch = await startedBatch({}, 50);
      for (let i = 0; i < 49; i++) await store.results.record(succeeded(batch.id, i));
      const progress = (await store.events.recent(batch.id)).filter((e) => e.type === 'progress');
      expect(progress.length).toBeGreaterThanOrEqual(1);
      expect(progress.length).toBeLessThan(10);
      expect(progress[0]).toMatchObject({ counts: { total: 50 }, itemsPerSecond: expect.any(Number), tokensPerSecond: expect.any(Number) });
    });

    it('relays online stream messages in the order they were published', async () => {
      // The worker fires deltas without awaiting each one; on a cluster they must still arrive in order, done last.
      const seen: unknown[] = [];
      const unsubscribe = await store.events.subscribeStream('req_1', (m) => seen.push(m));
      const deltas = Array.from({ length: 40 }, (_, sequence) => ({ type: 'delta' as const, attempt: 'a1', sequence, text: `t${sequence}` }));
      await Promise.all([...deltas.map((d) => store.events.publishStream('req_1', d)), store.events.publishStream('req_1', { type: 'done' })]);
      await waitFor(() => (seen.length === deltas.length + 1 ? true : undefined));
      expect(seen).toEqual([...deltas, { type: 'done' }]);
      await unsubscribe();
    });

    it('lists workers seen recently and counts items and tokens', async () => {
      await store.workers.recordHeartbeat('w1', { slots: 4, tokensPerSecond: 12.5 });
      const workers = await store.workers.list(60_000);
      expect(workers).toEqual([expect.objectContaining({ workerId: 'w1', slots: 4, tokensPerSecond: 12.5, seenAt: expect.any(Number) })]);
      const before = await store.results.stats();
      const batch = await startedBatch({}, 3);
      await store.results.record(succeeded(batch.id, 0));
      await store.results.record(failed(batch.id, 1));
      await store.batches.requestCancel(batch.id);
      await store.results.record(stopped(batch.id, 2));
      const after = await store.results.stats();
      expect(after.itemsSucceeded - before.itemsSucceeded).toBe(1);
      expect(after.itemsFailed - before.itemsFailed).toBe(1);
      expect(after.completionTokens - before.completionTokens).toBe(3);
      expect(after.itemsCancelled - before.itemsCancelled).toBe(1);
      // The batch's own token counts: prompt tokens of what succeeded, for usage.input_tokens.
      expect(await store.batches.get(batch.id)).toMatchObject({ promptTokens: 2, completionTokens: 3 });
    });

    it('settles a batch whose last item comes in past its completion window as expired, not completed', async () => {
      const batch = await startedBatch({ completionWindowMs: 1000, createdAt: Date.now() - 5000 });
      await store.results.record(succeeded(batch.id, 0));
      await store.results.record(stopped(batch.id, 1));
      await store.results.record(stopped(batch.id, 2));
      const after = await store.batches.get(batch.id);
      expect(after).toMatchObject({ status: 'expired', requestCounts: { total: 3, completed: 1, failed: 2 } });
      expect(after?.expiredAt).toEqual(expect.any(Number));
      expect(after?.completedAt).toBeNull();
      expect((await store.results.get(batch.id, 1))?.error).toEqual({ code: 'batch_expired', message: expect.stringContaining('completion window') });
      expect(await store.batches.dueForExpiry(Date.now(), 100)).not.toContain(batch.id);
    });

    it('turns a stopped item into the outcome its batch state calls for, and refuses a stop while the batch runs', async () => {
      const failedBatch = await startedBatch({}, 2);
      await store.batches.fail(failedBatch.id, [{ code: 'enqueue_failed', message: 'x' }]);
      await store.results.record(stopped(failedBatch.id, 0));
      expect(await store.results.get(failedBatch.id, 0)).toMatchObject({ status: 'failed', error: { code: 'batch_failed' } });
      const running = await startedBatch({}, 1);
      await expect(store.results.record(stopped(running.id, 0))).rejects.toThrow('still runs');
      expect(await store.results.get(running.id, 0)).toBeNull();
    });

    it('refuses status changes the lifecycle does not allow', async () => {
      const batch = await startedBatch({}, 1);
      await store.results.record(succeeded(batch.id, 0));
      expect(await store.batches.expire(batch.id)).toBe(false);
      expect((await store.batches.fail(batch.id, [{ code: 'enqueue_failed', message: 'x' }]))?.status).toBe('completed');
      expect((await store.batches.requestCancel(batch.id))?.status).toBe('completed');
    });

    it('keeps a batch for its own retention whichever process finishes it', async () => {
      const batch = await create(newBatch({ retentionSeconds: 120 }, 1));
      await store.batches.markInProgress(batch.id);
      expect(await connection.ttl(store.batches.keys.batch(batch.id))).toBe(-1);
      // A worker's view: results only, configured with nothing about retention.
      const workerResults = new ItemResults(client(), { prefix: store.batches.keys.prefix });
      await workerResults.record(succeeded(batch.id, 0));
      for (const key of store.batches.keys.batchKeys(batch.id)) {
        const ttl = await connection.ttl(key);
        expect(ttl).toBeGreaterThan(100);
        expect(ttl).toBeLessThanOrEqual(120);
      }
    });

    it('gives item inputs by position, null for an index the batch does not have', async () => {
      const batch = await create(newBatch({}, 3));
      const inputs = await store.batches.itemInputs(batch.id, [2, 7, 0]);
      expect(inputs.map((item) => item?.customId ?? null)).toEqual(['req-2', null, 'req-0']);
    });

    it('stores each distinct parameter set once per batch; items hold only their own fields and name their set', async () => {
      const longer = { ...params, maxNewTokens: 32, stop: ['x'.repeat(256)] };
      const items: BatchItemInput[] = Array.from({ length: 300 }, (_, index) => ({ index, customId: `line-${index}`, prompt: `p${index}`, params: index % 3 === 0 ? longer : { ...params } }));
      const batch = await create(newBatch({ items }));
      const stored = await connection.hgetall(store.batches.keys.items(batch.id));
      const sets = Object.keys(stored).filter((field) => field.startsWith('params:'));
      expect(sets.map((field) => field.slice('params:'.length)).sort()).toEqual([paramsIdOf(params), paramsIdOf(longer)].sort());
      expect(Object.keys(stored)).toHaveLength(300 + 2);
      expect(JSON.parse(stored['3'])).toEqual({ index: 3, customId: 'line-3', prompt: 'p3', paramsId: paramsIdOf(longer) });
      expect(await store.batches.storedItems(batch.id, [4, 999])).toEqual([{ index: 4, customId: 'line-4', prompt: 'p4', paramsId: paramsIdOf(params) }, null]);
      expect(await store.batches.batchParams(batch.id, paramsIdOf(longer))).toEqual(longer);
      expect(await store.batches.batchParams(batch.id, 'nope')).toBeNull();
      expect(await store.batches.itemInputs(batch.id, [3, 4])).toEqual([items[3], items[4]]);
    });

    it('stores a template batch\'s template once and each item\'s row where that is smaller than its prompt', async () => {
      const template = 'Answer briefly and precisely, in one sentence.\nQuestion: {q}\nAnswer ({q}):';
      const rows = [{ q: 'what is 0?' }, { q: 'what is 1?' }];
      const items: BatchItemInput[] = rows.map((row, index) => ({ index, customId: `item-${index}`, prompt: renderTemplate(template, row), params, row }));
      const batch = await create(newBatch({ items, template }));
      const stored = await connection.hgetall(store.batches.keys.items(batch.id));
      expect(stored[`template:${contentIdOf(template)}`]).toBe(template);
      expect(JSON.parse(stored['1'])).toEqual({ index: 1, customId: 'item-1', row: { q: 'what is 1?' }, templateId: contentIdOf(template), paramsId: paramsIdOf(params) });
      expect(await store.batches.batchTemplate(batch.id, contentIdOf(template))).toBe(template);
      expect(await store.batches.itemInputs(batch.id, [1, 0])).toEqual([items[1], items[0]]);
      // A template barely longer than its field: the rendered prompt is the smaller record, and no template is stored.
      const short = 'Q: {q}';
      const shortItems: BatchItemInput[] = rows.map((row, index) => ({ index, customId: `item-${index}`, prompt: renderTemplate(short, row), params, row }));
      const shortBatch = await create(newBatch({ items: shortItems, template: short }));
      const shortStored = await connection.hgetall(store.batches.keys.items(shortBatch.id));
      expect(JSON.parse(shortStored['0'])).toEqual({ index: 0, customId: 'item-0', prompt: 'Q: what is 0?', paramsId: paramsIdOf(params) });
      expect(Object.keys(shortStored).filter((field) => field.startsWith('template:'))).toEqual([]);
      expect(await store.batches.itemInputs(shortBatch.id, [0])).toEqual([{ index: 0, customId: 'item-0', prompt: 'Q: what is 0?', params }]);
    });

    it('reads items stored before parameter sets existed (parameters inline)', async () => {
      const batch = await create(newBatch({}, 2));
      await connection.hset(store.batches.keys.items(batch.id), '1', JSON.stringify({ index: 1, customId: 'req-1', prompt: 'old', params }));
      expect(await store.batches.itemInputs(batch.id, [1, 0])).toEqual([
        { index: 1, customId: 'req-1', prompt: 'old', params },
        { index: 0, customId: 'req-0', prompt: 'p0', params },
      ]);
    });

    it('takes the in-flight limit atomically: 40 concurrent creations with a limit of 20 create 20', async () => {
      const outcomes = await Promise.all(Array.from({ length: 40 }, () => store.batches.create(newBatch({ owner: 'tenant-limit' }, 1), { maxInFlight: 20 })));
      expect(outcomes.filter((o) => 'created' in o)).toHaveLength(20);
      expect(outcomes.filter((o) => 'atInFlightLimit' in o)).toHaveLength(20);
      expect(await store.batches.countActive('tenant-limit')).toBe(20);
    });

    it('finds an interrupted creation however many settled batches were created before it', async () => {
      const old = Date.now() - 60_000;
      for (let i = 0; i < 150; i++) {
        // A batch whose only job finished before markInProgress ran settles and leaves the creating index.
        const early = await create(newBatch({ createdAt: old + i }, 1));
        await store.results.record(succeeded(early.id, 0));
      }
      const interrupted = await create(newBatch({ createdAt: old + 500 }, 1));
      expect(await store.batches.creationsStartedBefore(Date.now() - 30_000)).toEqual([interrupted.id]);
      expect(await connection.zcard(store.batches.keys.creating())).toBe(1);
    });

    it('writes no event history for online requests (nothing reads it) and keeps it for batches', async () => {
      const online = await create(newBatch({ kind: 'online' }, 1));
      await store.batches.markInProgress(online.id);
      await store.results.record(succeeded(online.id, 0));
      expect(await connection.exists(store.batches.keys.history(online.id))).toBe(0);
      const batch = await startedBatch({}, 1);
      await store.results.record(succeeded(batch.id, 0));
      expect((await store.events.recent(batch.id)).map((e: BatchEvent) => e.type)).toEqual(['status', 'item', 'status']);
    });

  });
}
