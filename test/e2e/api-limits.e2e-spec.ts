// Idempotency, per-key rate limits shared by api replicas, batches in flight, expiry sweep, graceful shutdown.
import { Redis } from 'ioredis';
import { jobOf } from '@app/contracts';
import { GenerateQueue } from '@app/queue';
import { RedisStore } from '@app/store';
import { startApi, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';

const KEY_A = 'limits-key-a-0001';
const KEY_B = 'limits-key-b-0002';
let redis: TestRedis;
let client: Redis;
const apis: ApiProcess[] = [];

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function api(env: Record<string, string>, prefix: string): Promise<ApiProcess> {
  const started = await startApi({
    redisUrl: redis.url, prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY_A}:tenant-a,${KEY_B}:tenant-b`, ...env },
  });
  apis.push(started);
  return started;
}

async function post(base: string, path: string, key: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Json };
}

async function get(base: string, path: string, key: string) {
  const response = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
});

afterAll(async () => {
  await Promise.all(apis.map((a) => a.stop()));
  client?.disconnect();
  await redis?.stop();
});

describe('idempotency', () => {
  it('returns the same batch for a retried request and refuses a reused key with another body', async () => {
    const prefix = `${redis.prefix}-idem`;
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0' }, prefix);
    const body = { prompts: ['one', 'two'], max_new_tokens: 3 };
    const first = await post(a.url, '/batches', KEY_A, body, { 'Idempotency-Key': 'req-42' });
    const again = await post(a.url, '/batches', KEY_A, body, { 'Idempotency-Key': 'req-42' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    // Native batches are listed at /batches (/v1/batches lists OpenAI batches only).
    const list = JSON.parse((await get(a.url, '/batches', KEY_A)).text) as { data: { id: string }[] };
    expect(list.data.map((b) => b.id)).toEqual([first.body.id]);
    // Enqueued once: 2 jobs in BullMQ for the 2 prompts.
    expect(await client.zcard(`${prefix}:generate:prioritized`)).toBe(2);

    const changed = await post(a.url, '/batches', KEY_A, { ...body, max_new_tokens: 4 }, { 'Idempotency-Key': 'req-42' });
    expect(changed.status).toBe(422);
    expect(changed.body.error.message).toContain('Idempotency-Key');
    // Keys are per tenant: the same key from tenant B is a new batch.
    const other = await post(a.url, '/batches', KEY_B, body, { 'Idempotency-Key': 'req-42' });
    expect(other.status).toBe(200);
    expect(other.body.id).not.toBe(first.body.id);
    // A rejected request does not burn the key.
    const rejected = await post(a.url, '/batches', KEY_A, { prompts: [] }, { 'Idempotency-Key': 'req-43' });
    expect(rejected.status).toBe(400);
    expect((await post(a.url, '/batches', KEY_A, body, { 'Idempotency-Key': 'req-43' })).status).toBe(200);
  });

  it('works for OpenAI batch creation too', async () => {
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0' }, `${redis.prefix}-idem2`);
    const upload = await uploadFile(a.url, KEY_A, jsonl([{ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x', max_tokens: 2 } }]));
    const fileId = ((await upload.json()) as { id: string }).id;
    const body = { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' };
    const first = await post(a.url, '/v1/batches', KEY_A, body, { 'Idempotency-Key': 'k' });
    const second = await post(a.url, '/v1/batches', KEY_A, body, { 'Idempotency-Key': 'k' });
    expect(first.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
  });
});

describe('rate limits', () => {
  it('answers 429 with Retry-After past the per-key limit, counted across two api replicas', async () => {
    const prefix = `${redis.prefix}-rate`;
    const one = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '5' }, prefix);
    const two = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '5' }, prefix);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await get(i % 2 ? one.url : two.url, '/v1/models', KEY_A)).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    const limited = await get(one.url, '/v1/models', KEY_A);
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(JSON.parse(limited.text).error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect((await get(two.url, '/v1/models', KEY_A)).status).toBe(429);
    // Another key has its own budget.
    expect((await get(two.url, '/v1/models', KEY_B)).status).toBe(200);
  });

  it('limits unfinished batches per tenant', async () => {
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_MAX_BATCHES_IN_FLIGHT: '2' }, `${redis.prefix}-inflight`);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push((await post(a.url, '/batches', KEY_A, { prompts: [`p${i}`] })).body.id);
    const third = await post(a.url, '/batches', KEY_A, { prompts: ['p3'] });
    expect(third.status).toBe(429);
    expect(third.body.error.message).toContain('FALCONQ_MAX_BATCHES_IN_FLIGHT');
    expect((await post(a.url, '/batches', KEY_B, { prompts: ['b'] })).status).toBe(200);
    const cancelled = await post(a.url, `/batches/${ids[0]}/cancel`, KEY_A, {});
    expect(cancelled.body.status).toBe('cancelled');
    expect((await post(a.url, '/batches', KEY_A, { prompts: ['p4'] })).status).toBe(200);
  });
});

describe('expiry', () => {
  it('expires a batch past its completion window: results kept, the rest in the error file, waiting jobs removed', async () => {
    const prefix = `${redis.prefix}-expiry`;
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_EXPIRY_SWEEP_MS: '200' }, prefix);
    const created = await post(a.url, '/batches', KEY_A, { prompts: ['a', 'b', 'c'], max_new_tokens: 2 });
    const batchId = created.body.id as string;
    expect(await client.zcard(`${prefix}:generate:prioritized`)).toBe(3);
    // A worker finished item 1 before the deadline (recorded the way the worker records it).
    const store = new RedisStore(client, { prefix, fileRetentionSeconds: 0, createSubscriber: () => new Redis(redis.url) });
    await store.results.record({ batchId, index: 1, customId: 'item-1', outcome: 'succeeded', attempts: 1, finishedAt: Date.now(),
      output: { sequences: [{ text: 'done', finishReason: 'length', tokens: 2 }], promptTokens: 1, completionTokens: 2, timeToFirstTokenMs: 1, generationMs: 1 } });
    // Move its deadline into the past (the 24h window cannot be waited for in a test).
    await client.zadd(`${prefix}:deadlines`, String(Date.now() - 1000), batchId);
    await client.hset(`${prefix}:batch:${batchId}`, 'expires_at', String(Date.now() - 1000));
    let status = '';
    for (let i = 0; i < 50 && status !== 'expired'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = JSON.parse((await get(a.url, `/v1/batches/${batchId}`, KEY_A)).text).status;
    }
    expect(status).toBe('expired');
    let batch = JSON.parse((await get(a.url, `/v1/batches/${batchId}`, KEY_A)).text);
    for (let i = 0; i < 20 && batch.request_counts.failed < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      batch = JSON.parse((await get(a.url, `/v1/batches/${batchId}`, KEY_A)).text);
    }
    expect(batch.request_counts).toEqual({ total: 3, completed: 1, failed: 2 });
    expect(batch.expired_at).toEqual(expect.any(Number));
    // The not-started jobs were taken out of the queue (item 1's job was finished by the "worker").
    const left = await client.zrange(`${prefix}:generate:prioritized`, '0', '-1');
    expect(left.filter((id) => id !== `${batchId}-1`)).toEqual([]);
    const output = (await get(a.url, `/v1/files/${batch.output_file_id}/content`, KEY_A)).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(output.map((l) => l.custom_id)).toEqual(['item-1']);
    const errors = (await get(a.url, `/v1/files/${batch.error_file_id}/content`, KEY_A)).text.trim().split('\n').map((l) => JSON.parse(l));
    expect(errors.map((l) => [l.custom_id, l.error.code])).toEqual([['item-0', 'batch_expired'], ['item-2', 'batch_expired']]);
    await store.close();
  });
});

describe('interrupted creation', () => {
  it('finishes a batch left in validating by a crashed api: the sweep enqueues the rest and starts it', async () => {
    const prefix = `${redis.prefix}-interrupted`;
    const store = new RedisStore(client, { prefix, fileRetentionSeconds: 0, createSubscriber: () => new Redis(redis.url) });
    const params = { maxNewTokens: 2, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], numReturnSequences: 1, returnFullText: false, ignoreEos: false, truncate: false };
    const items = [0, 1].map((index) => ({ index, customId: `item-${index}`, prompt: 'x', params }));
    const batchId = 'batch_0000000000000000000000aa';
    // What a crash leaves: the batch stored 11 minutes ago, half of its jobs enqueued, never marked in_progress.
    await store.batches.create({ id: batchId, kind: 'native', owner: 'tenant-a', endpoint: '/v1/completions', model: 'tiny',
      completionWindow: '24h', completionWindowMs: 86_400_000, metadata: null, inputFileId: null, items, retentionSeconds: 60, createdAt: Date.now() - 11 * 60_000 });
    const queue = new GenerateQueue({ redisUrl: redis.url, prefix });
    await queue.enqueue([jobOf(batchId, 'tenant-a', items[0])]);
    expect(await queue.queue.getJobState(`${batchId}-1`)).toBe('unknown');

    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_EXPIRY_SWEEP_MS: '200' }, prefix);
    let batch: Json = {};
    for (let i = 0; i < 50 && batch.status !== 'in_progress'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      batch = JSON.parse((await get(a.url, `/batches/${batchId}`, KEY_A)).text) as Json;
    }
    expect(batch).toMatchObject({ status: 'in_progress', request_counts: { total: 2, completed: 0, failed: 0 } });
    expect(await queue.queue.getJobState(`${batchId}-0`)).not.toBe('unknown');
    expect(await queue.queue.getJobState(`${batchId}-1`)).not.toBe('unknown');
    expect(await client.zcard(`${prefix}:validating`)).toBe(0);
    await queue.close();
    await store.close();
  });
});

describe('retry-failed', () => {
  it('re-enqueues only the failed items and merges their new results by custom_id', async () => {
    const prefix = `${redis.prefix}-retry`;
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0' }, prefix);
    const batchId = (await post(a.url, '/batches', KEY_A, { prompts: ['a', 'b', 'c'], max_new_tokens: 2 })).body.id as string;
    const store = new RedisStore(client, { prefix, fileRetentionSeconds: 0, createSubscriber: () => new Redis(redis.url) });
    const output = { sequences: [{ text: 'ok', finishReason: 'length' as const, tokens: 2 }], promptTokens: 1, completionTokens: 2, timeToFirstTokenMs: 1, generationMs: 1 };
    // What a worker does: succeed 0 and 2, fail 1 after its last attempt (its job stays in BullMQ's failed set).
    for (const index of [0, 2]) await store.results.record({ batchId, index, customId: `item-${index}`, outcome: 'succeeded', attempts: 1, finishedAt: Date.now(), output });
    await store.results.record({ batchId, index: 1, customId: 'item-1', outcome: 'failed', attempts: 3, finishedAt: Date.now(), error: { code: 'worker_failed', message: 'boom' } });
    await client.zrem(`${prefix}:generate:prioritized`, `${batchId}-0`, `${batchId}-1`, `${batchId}-2`);
    await client.zadd(`${prefix}:generate:failed`, String(Date.now()), `${batchId}-1`);
    expect(JSON.parse((await get(a.url, `/batches/${batchId}`, KEY_A)).text)).toMatchObject({ status: 'completed', request_counts: { completed: 2, failed: 1 } });

    const retried = await post(a.url, `/batches/${batchId}/retry-failed`, KEY_A, {});
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ status: 'in_progress', request_counts: { total: 3, completed: 2, failed: 0 } });
    expect(await client.zrange(`${prefix}:generate:prioritized`, '0', '-1')).toEqual([`${batchId}-1`]);
    expect(JSON.parse((await get(a.url, `/batches/${batchId}/results/item-1`, KEY_A)).text)).toMatchObject({ status: 'pending' });

    await store.results.record({ batchId, index: 1, customId: 'item-1', outcome: 'succeeded', attempts: 1, finishedAt: Date.now(), output: { ...output, sequences: [{ ...output.sequences[0], text: 'second try' }] } });
    const results = JSON.parse((await get(a.url, `/batches/${batchId}/results`, KEY_A)).text);
    expect(results).toMatchObject({ status: 'completed', request_counts: { completed: 3, failed: 0 } });
    expect(results.data.map((r: Json) => [r.custom_id, r.text])).toEqual([['item-0', 'ok'], ['item-1', 'second try'], ['item-2', 'ok']]);
    // Nothing left to retry: the batch stays completed.
    expect((await post(a.url, `/batches/${batchId}/retry-failed`, KEY_A, {})).body.status).toBe('completed');
    await store.close();
  });
});

describe('online requests', () => {
  it('takes a waiting online job back when its client goes away', async () => {
    const prefix = `${redis.prefix}-online`;
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0' }, prefix);
    const controller = new AbortController();
    const pending = fetch(`${a.url}/v1/completions`, { method: 'POST', signal: controller.signal, headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'falcon', prompt: 'x', max_tokens: 2 }) });
    let queued: string[] = [];
    for (let i = 0; i < 50 && queued.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      queued = await client.zrange(`${prefix}:generate:prioritized`, '0', '-1');
    }
    expect(queued).toEqual([expect.stringMatching(/^online_[0-9a-f]+-0$/)]);
    controller.abort();
    await pending.catch(() => undefined);
    for (let i = 0; i < 50 && queued.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      queued = await client.zrange(`${prefix}:generate:prioritized`, '0', '-1');
    }
    expect(queued).toEqual([]);
  });
});

describe('graceful shutdown', () => {
  it('finishes an in-flight request on SIGTERM, then exits 0', async () => {
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_ONLINE_TIMEOUT_MS: '1500' }, `${redis.prefix}-shutdown`);
    // No worker: the online request waits for its timeout (1.5 s) while the process is told to stop.
    const pending = fetch(`${a.url}/v1/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'falcon', prompt: 'x', max_tokens: 2 }) });
    await new Promise((r) => setTimeout(r, 300));
    const stoppedAt = Date.now();
    const exit = a.stop();
    const response = await pending;
    expect(response.status).toBe(504);
    const exited = await exit;
    // Nest re-raises the signal after its shutdown hooks ran, so a clean stop reads as "killed by SIGTERM".
    expect(exited.code === 0 || exited.signal === 'SIGTERM').toBe(true);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(1000);
    expect(a.output()).not.toMatch(/ERROR/);
  });

  it('ends open event streams on SIGTERM instead of hanging', async () => {
    const a = await api({ FALCONQ_RATE_LIMIT_PER_MINUTE: '0' }, `${redis.prefix}-shutdown-sse`);
    const batchId = (await post(a.url, '/batches', KEY_A, { prompts: ['x'] })).body.id as string;
    const events = await fetch(`${a.url}/batches/${batchId}/events`, { headers: { authorization: `Bearer ${KEY_A}` } });
    expect(events.headers.get('content-type')).toContain('text/event-stream');
    const body = events.text();
    await new Promise((r) => setTimeout(r, 200));
    const stoppedAt = Date.now();
    const exited = await a.stop();
    expect(Date.now() - stoppedAt).toBeLessThan(5000);
    expect(exited.code === 0 || exited.signal === 'SIGTERM').toBe(true);
    expect(await body).toContain('event: progress');
  });
});
