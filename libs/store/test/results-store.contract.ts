// The behaviour every ResultsStore implementation must have. Run it with describeResultsStoreContract(name, factory).
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import type { BatchEvent, ItemResult } from '@app/contracts';
import type { BatchItemInput, NewBatch, ResultsStore } from '../src';

export interface StoreUnderTest {
  store: ResultsStore;
  cleanup(): Promise<void>;
}

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
    completionWindow: '24h', metadata: { purpose: 'test' }, inputFileId: 'file-in', items, ...overrides,
  };
}

export function succeeded(batchId: string, index: number, text = `text ${index}`): ItemResult {
  return {
    batchId, index, customId: `req-${index}`, status: 'succeeded', attempts: 1, finishedAt: Date.now(),
    output: { sequences: [{ text, finishReason: 'eos', tokens: 3 }], promptTokens: 2, completionTokens: 3, timeToFirstTokenMs: 1, generationMs: 2 },
  };
}

export function failed(batchId: string, index: number, code = 'worker_failed'): ItemResult {
  return { batchId, index, customId: `req-${index}`, status: 'failed', attempts: 3, finishedAt: Date.now(), error: { code, message: 'boom' } };
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

export function describeResultsStoreContract(name: string, make: () => Promise<StoreUnderTest>): void {
  describe(`ResultsStore contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: ResultsStore;

    beforeEach(async () => {
      subject = await make();
      store = subject.store;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    async function startedBatch(overrides: Partial<NewBatch> = {}, size = 3) {
      const created = await store.createBatch(newBatch(overrides, size));
      await store.markBatchInProgress(created.id);
      return created;
    }

    it('creates a batch in validating, then moves it to in_progress', async () => {
      const created = await store.createBatch(newBatch());
      expect(created).toMatchObject({
        status: 'validating', owner: 'tenant-a', endpoint: '/v1/completions', completionWindow: '24h',
        metadata: { purpose: 'test' }, inputFileId: 'file-in', requestCounts: { total: 3, completed: 0, failed: 0 },
      });
      expect(created.expiresAt - created.createdAt).toBe(86_400_000);
      expect(await store.countActiveBatches('tenant-a')).toBe(1);
      const running = await store.markBatchInProgress(created.id);
      expect(running?.status).toBe('in_progress');
      expect(running?.inProgressAt).toEqual(expect.any(Number));
      expect(await store.getItemInputs(created.id, [2, 0])).toEqual([
        expect.objectContaining({ index: 2, customId: 'req-2', prompt: 'p2' }),
        expect.objectContaining({ index: 0, customId: 'req-0', prompt: 'p0' }),
      ]);
    });

    it('returns null for unknown batches', async () => {
      expect(await store.getBatch('batch_nope')).toBeNull();
      expect(await store.requestCancel('batch_nope')).toBeNull();
      expect(await store.expireBatch('batch_nope')).toBe(false);
    });

    it('records exactly one result per item and ignores later duplicates', async () => {
      const batch = await startedBatch();
      expect(await store.recordResult(succeeded(batch.id, 1, 'first'))).toBe('recorded');
      expect(await store.recordResult(succeeded(batch.id, 1, 'second'))).toBe('duplicate');
      expect(await store.recordResult(failed(batch.id, 1))).toBe('duplicate');
      expect((await store.getResult(batch.id, 1))?.output?.sequences[0].text).toBe('first');
      expect((await store.getResultByCustomId(batch.id, 'req-1'))?.index).toBe(1);
      expect(await store.getResultByCustomId(batch.id, 'req-9')).toBeNull();
      expect((await store.getBatch(batch.id))?.requestCounts).toEqual({ total: 3, completed: 1, failed: 0 });
    });

    it('keeps counts exact under concurrent duplicate results', async () => {
      const batch = await startedBatch({}, 4);
      const attempts = Array.from({ length: 40 }, (_, i) => store.recordResult(i % 2 ? succeeded(batch.id, i % 4) : failed(batch.id, i % 4)));
      const outcomes = await Promise.all(attempts);
      expect(outcomes.filter((o) => o === 'recorded')).toHaveLength(4);
      const after = await store.getBatch(batch.id);
      expect(after!.requestCounts.completed + after!.requestCounts.failed).toBe(4);
      expect(after!.status).toBe('completed');
    });

    it('completes the batch when the last item is recorded, whoever records it', async () => {
      const batch = await startedBatch();
      await store.recordResult(succeeded(batch.id, 0));
      await store.recordResult(failed(batch.id, 2));
      expect((await store.getBatch(batch.id))?.status).toBe('in_progress');
      await store.recordResult(succeeded(batch.id, 1));
      const done = await store.getBatch(batch.id);
      expect(done).toMatchObject({ status: 'completed', requestCounts: { total: 3, completed: 2, failed: 1 } });
      expect(done?.completedAt).toEqual(expect.any(Number));
      expect(done?.finalizingAt).toEqual(expect.any(Number));
      expect(done?.completionTokens).toBe(6);
      expect(await store.countActiveBatches('tenant-a')).toBe(0);
      expect(await store.listPendingIndices(batch.id)).toEqual([]);
    });

    it('pages results in input order, with null for items not done yet', async () => {
      const batch = await startedBatch({}, 5);
      await store.recordResult(succeeded(batch.id, 3));
      await store.recordResult(succeeded(batch.id, 0));
      const page = await store.listResults(batch.id, 0, 4);
      expect(page.map((r) => r?.index ?? null)).toEqual([0, null, null, 3]);
      expect((await store.listResults(batch.id, 3, 10)).map((r) => r?.index ?? null)).toEqual([3, null]);
      expect(await store.listResults(batch.id, 5, 10)).toEqual([]);
      expect(await store.listPendingIndices(batch.id)).toEqual([1, 2, 4]);
    });

    it('cancels: cancelling until every item is accounted for, then cancelled', async () => {
      const batch = await startedBatch();
      await store.recordResult(succeeded(batch.id, 0));
      expect((await store.requestCancel(batch.id))?.status).toBe('cancelling');
      expect((await store.requestCancel(batch.id))?.status).toBe('cancelling');
      await store.recordResult({ ...failed(batch.id, 1, 'batch_cancelled'), status: 'cancelled' });
      await store.recordResult({ ...failed(batch.id, 2, 'batch_cancelled'), status: 'cancelled' });
      const after = await store.getBatch(batch.id);
      expect(after).toMatchObject({ status: 'cancelled', requestCounts: { total: 3, completed: 1, failed: 2 } });
      expect(after?.cancelledAt).toEqual(expect.any(Number));
      expect((await store.requestCancel(batch.id))?.status).toBe('cancelled');
    });

    it('expires an active batch once and lists batches past their deadline', async () => {
      const batch = await startedBatch({ completionWindowMs: 1000, createdAt: Date.now() - 5000 });
      const other = await startedBatch();
      const due = await store.listBatchesDueForExpiry(Date.now(), 100);
      expect(due).toContain(batch.id);
      expect(due).not.toContain(other.id);
      const results = await Promise.all([store.expireBatch(batch.id), store.expireBatch(batch.id)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await store.getBatch(batch.id))?.status).toBe('expired');
      expect(await store.listBatchesDueForExpiry(Date.now(), 100)).not.toContain(batch.id);
      // A late result is still kept; the status stays expired.
      expect(await store.recordResult(succeeded(batch.id, 0))).toBe('recorded');
      expect((await store.getBatch(batch.id))?.status).toBe('expired');
    });

    it('reopens only failed items for a retry and completes again', async () => {
      const batch = await startedBatch();
      await store.recordResult(succeeded(batch.id, 0));
      await store.recordResult(failed(batch.id, 1));
      await store.recordResult(failed(batch.id, 2));
      expect((await store.getBatch(batch.id))?.status).toBe('completed');
      expect(await store.reopenFailedItems(batch.id)).toEqual([1, 2]);
      const reopened = await store.getBatch(batch.id);
      expect(reopened).toMatchObject({ status: 'in_progress', completedAt: null, requestCounts: { total: 3, completed: 1, failed: 0 } });
      expect(await store.countActiveBatches('tenant-a')).toBe(1);
      expect(await store.reopenFailedItems(batch.id)).toEqual([]);
      await store.recordResult(succeeded(batch.id, 1));
      await store.recordResult(succeeded(batch.id, 2));
      expect(await store.getBatch(batch.id)).toMatchObject({ status: 'completed', requestCounts: { completed: 3, failed: 0 } });
    });

    it('lists batches whose creation never finished', async () => {
      const stale = await store.createBatch(newBatch({ createdAt: Date.now() - 60_000 }));
      const fresh = await store.createBatch(newBatch());
      const started = await store.createBatch(newBatch({ createdAt: Date.now() - 60_000 }));
      await store.markBatchInProgress(started.id);
      const found = await store.listStaleValidating(Date.now() - 30_000, 100);
      expect(found).toContain(stale.id);
      expect(found).not.toContain(fresh.id);
      expect(found).not.toContain(started.id);
      await store.markBatchFailed(stale.id, [{ code: 'creation_interrupted', message: 'x' }]);
      expect(await store.listStaleValidating(Date.now(), 100)).not.toContain(stale.id);
    });

    it('marks a batch failed with its errors', async () => {
      const batch = await store.createBatch(newBatch());
      const failedBatch = await store.markBatchFailed(batch.id, [{ code: 'enqueue_failed', message: 'redis down' }]);
      expect(failedBatch).toMatchObject({ status: 'failed', errors: [{ code: 'enqueue_failed', message: 'redis down' }] });
      expect(failedBatch?.failedAt).toEqual(expect.any(Number));
      expect(await store.countActiveBatches('tenant-a')).toBe(0);
    });

    it('lists batches newest first per owner with a cursor, without online requests', async () => {
      const now = Date.now();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await store.createBatch(newBatch({ createdAt: now + i }))).id);
      await store.createBatch(newBatch({ owner: 'tenant-b', createdAt: now + 10 }));
      await store.createBatch(newBatch({ kind: 'online', createdAt: now + 20 }));
      expect(await store.countActiveBatches('tenant-a')).toBe(5);
      const first = await store.listBatches({ owner: 'tenant-a', limit: 2 });
      expect(first.data.map((b) => b.id)).toEqual([ids[4], ids[3]]);
      expect(first.hasMore).toBe(true);
      const second = await store.listBatches({ owner: 'tenant-a', limit: 2, after: ids[3] });
      expect(second.data.map((b) => b.id)).toEqual([ids[2], ids[1]]);
      const last = await store.listBatches({ owner: 'tenant-a', limit: 2, after: ids[1] });
      expect(last).toEqual({ data: [expect.objectContaining({ id: ids[0] })], hasMore: false });
      const all = await store.listBatches({ limit: 100 });
      expect(all.data).toHaveLength(6);
      expect(all.data.every((b) => b.kind !== 'online')).toBe(true);
    });

    it('filters a listing by kind, status and metadata pairs (every pair must match)', async () => {
      const now = Date.now();
      const nightly = await startedBatch({ createdAt: now, metadata: { job: 'nightly', team: 'x' } });
      const hourly = await store.createBatch(newBatch({ createdAt: now + 1, metadata: { job: 'hourly', team: 'x' } }));
      const native = await startedBatch({ createdAt: now + 2, kind: 'native', metadata: { job: 'nightly', team: 'x' } });
      const ids = async (query: Omit<Parameters<ResultsStore['listBatches']>[0], 'limit'>) => (await store.listBatches({ limit: 10, ...query })).data.map((b) => b.id);
      expect(await ids({ owner: 'tenant-a', kind: 'openai', metadata: { job: 'nightly' } })).toEqual([nightly.id]);
      expect(await ids({ owner: 'tenant-a', metadata: { job: 'nightly', team: 'x' } })).toEqual([native.id, nightly.id]);
      expect(await ids({ owner: 'tenant-a', metadata: { job: 'nightly', team: 'y' } })).toEqual([]);
      expect(await ids({ owner: 'tenant-a', statuses: ['validating'] })).toEqual([hourly.id]);
      expect(await ids({ owner: 'tenant-a', kind: 'native', statuses: ['in_progress', 'completed'] })).toEqual([native.id]);
    });

    it('finds items by custom_id prefix, in input order, glob characters taken literally', async () => {
      const items: BatchItemInput[] = ['user-2', 'user-10', 'admin-1', 'user*x', 'user-3'].map((customId, index) => ({ index, customId, prompt: 'p', params }));
      const batch = await store.createBatch({ ...newBatch(), items });
      expect(await store.findCustomIdsByPrefix(batch.id, 'user-', 10)).toEqual({
        items: [{ index: 0, customId: 'user-2' }, { index: 1, customId: 'user-10' }, { index: 4, customId: 'user-3' }], hasMore: false,
      });
      expect(await store.findCustomIdsByPrefix(batch.id, 'user-', 2)).toMatchObject({ items: [{ index: 0 }, { index: 1 }], hasMore: true });
      expect(await store.findCustomIdsByPrefix(batch.id, 'user*', 10)).toEqual({ items: [{ index: 3, customId: 'user*x' }], hasMore: false });
      expect(await store.findCustomIdsByPrefix(batch.id, 'nobody', 10)).toEqual({ items: [], hasMore: false });
    });

    it('remembers an idempotency key per owner with the first request fingerprint', async () => {
      expect(await store.claimIdempotencyKey('tenant-a', 'k1', 'batch_1', 'f1')).toEqual({ claimed: true, batchId: 'batch_1', fingerprint: 'f1' });
      expect(await store.claimIdempotencyKey('tenant-a', 'k1', 'batch_2', 'f2')).toEqual({ claimed: false, batchId: 'batch_1', fingerprint: 'f1' });
      expect((await store.claimIdempotencyKey('tenant-b', 'k1', 'batch_3', 'f1')).claimed).toBe(true);
      await store.releaseIdempotencyKey('tenant-a', 'k1', 'batch_other');
      expect((await store.claimIdempotencyKey('tenant-a', 'k1', 'batch_4', 'f1')).claimed).toBe(false);
      await store.releaseIdempotencyKey('tenant-a', 'k1', 'batch_1');
      expect((await store.claimIdempotencyKey('tenant-a', 'k1', 'batch_4', 'f1')).claimed).toBe(true);
    });

    it('stores, lists and deletes files', async () => {
      const content = '{"a":1}\n{"b":"é"}\n';
      const file = await store.createFile({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch', content });
      expect(file).toMatchObject({ owner: 'tenant-a', filename: 'in.jsonl', purpose: 'batch', bytes: Buffer.byteLength(content) });
      expect(await store.getFile(file.id)).toEqual(file);
      expect(await store.getFileContent(file.id)).toBe(content);
      expect((await store.listFiles('tenant-a', 10)).map((f) => f.id)).toEqual([file.id]);
      expect(await store.listFiles('tenant-b', 10)).toEqual([]);
      expect(await store.deleteFile(file.id)).toBe(true);
      expect(await store.deleteFile(file.id)).toBe(false);
      expect(await store.getFile(file.id)).toBeNull();
      expect(await store.getFileContent(file.id)).toBeNull();
    });

    it('publishes item and final status events and keeps them for late subscribers', async () => {
      const batch = await startedBatch({}, 2);
      const seen: BatchEvent[] = [];
      const unsubscribe = await store.subscribe(batch.id, (e) => seen.push(e));
      await store.recordResult(succeeded(batch.id, 0));
      await store.recordResult(failed(batch.id, 1));
      const final = await waitFor(() => seen.find((e) => e.type === 'status' && e.status === 'completed'));
      expect(final).toMatchObject({ batchId: batch.id, counts: { total: 2, completed: 1, failed: 1 } });
      expect(seen.filter((e) => e.type === 'item').map((e) => e.type === 'item' && e.customId)).toEqual(['req-0', 'req-1']);
      await unsubscribe();
      const history = await store.recentEvents(batch.id);
      expect(history.map((e) => e.type)).toEqual(expect.arrayContaining(['status', 'item']));
      expect(history[history.length - 1]).toMatchObject({ type: 'status', status: 'completed' });
    });

    it('keeps every item event in the order the items finished, for streams that resume from a position', async () => {
      const batch = await startedBatch({}, 300);
      for (const index of [2, 0, 1]) await store.recordResult(succeeded(batch.id, index));
      for (let i = 3; i < 300; i++) await store.recordResult(i % 7 ? succeeded(batch.id, i) : failed(batch.id, i));
      const all = await store.itemEventsSince(batch.id, 0, 1000);
      // Not trimmed like the recent-events history: all 300, once each, finishing order.
      expect(all).toHaveLength(300);
      expect(all.slice(0, 3).map((e) => e.type === 'item' && e.index)).toEqual([2, 0, 1]);
      expect(all[7]).toMatchObject({ type: 'item', index: 7, status: 'failed', customId: 'req-7' });
      const rest = await store.itemEventsSince(batch.id, 298, 10);
      expect(rest.map((e) => e.type === 'item' && e.index)).toEqual([298, 299]);
      expect(await store.itemEventsSince(batch.id, 300, 10)).toEqual([]);
    });

    it('throttles progress events (never one per result)', async () => {
      const batch = await startedBatch({}, 50);
      for (let i = 0; i < 49; i++) await store.recordResult(succeeded(batch.id, i));
      const progress = (await store.recentEvents(batch.id)).filter((e) => e.type === 'progress');
      expect(progress.length).toBeGreaterThanOrEqual(1);
      expect(progress.length).toBeLessThan(10);
      expect(progress[0]).toMatchObject({ counts: { total: 50 }, itemsPerSecond: expect.any(Number), tokensPerSecond: expect.any(Number) });
    });

    it('relays online stream messages', async () => {
      const seen: unknown[] = [];
      const unsubscribe = await store.subscribeStream('req_1', (m) => seen.push(m));
      await store.publishStream('req_1', { type: 'delta', attempt: 'a1', sequence: 0, text: 'Hel' });
      await store.publishStream('req_1', { type: 'done' });
      await waitFor(() => (seen.length === 2 ? true : undefined));
      expect(seen).toEqual([{ type: 'delta', attempt: 'a1', sequence: 0, text: 'Hel' }, { type: 'done' }]);
      await unsubscribe();
    });

    it('lists workers seen recently and counts items and tokens', async () => {
      await store.recordWorkerHeartbeat('w1', { slots: 4, tokensPerSecond: 12.5 });
      const workers = await store.listWorkers(60_000);
      expect(workers).toEqual([expect.objectContaining({ workerId: 'w1', slots: 4, tokensPerSecond: 12.5, seenAt: expect.any(Number) })]);
      const before = await store.stats();
      const batch = await startedBatch({}, 3);
      await store.recordResult(succeeded(batch.id, 0));
      await store.recordResult(failed(batch.id, 1));
      await store.recordResult({ ...failed(batch.id, 2, 'batch_cancelled'), status: 'cancelled' });
      const after = await store.stats();
      expect(after.itemsSucceeded - before.itemsSucceeded).toBe(1);
      expect(after.itemsFailed - before.itemsFailed).toBe(1);
      expect(after.itemsCancelled - before.itemsCancelled).toBe(1);
      expect(after.completionTokens - before.completionTokens).toBe(3);
      // The batch's own token counts: prompt tokens of what succeeded, for usage.input_tokens.
      expect(await store.getBatch(batch.id)).toMatchObject({ promptTokens: 2, completionTokens: 3 });
    });
  });
}
