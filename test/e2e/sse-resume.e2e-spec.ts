// A batch's event stream across a Redis outage and across client reconnects: every stream ends with the final status,
// every item event comes once, and a client resuming with Last-Event-ID gets exactly what it had not seen. Real
// processes: a private Redis with appendonly (a restart keeps the data), the api and a worker on the tiny model.
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { readBatchEvents, type SseEvent } from '../support/sse';

const KEY = 'sse-resume-key-0001';
let redis: TestRedis;
let api: ApiProcess;
let worker: WorkerProcess;

async function createBatch(count: number): Promise<string> {
  const response = await fetch(`${api.url}/batches`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompts: Array.from({ length: count }, (_, i) => `Item ${i} says`), max_new_tokens: 16, ignore_eos: true }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

function itemIndices(events: SseEvent[]): number[] {
  return events.filter((e) => e.type === 'item').map((e) => e.data.index as number);
}

beforeAll(async () => {
  redis = await startTestRedis({ appendOnly: true });
  const modelDir = await tinyModelDir();
  [api, worker] = await Promise.all([
    startApi({ redisUrl: redis.url, prefix: redis.prefix, modelDir, env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_SSE_KEEPALIVE_MS: '500' } }),
    startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4 }),
  ]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.stop();
  await redis?.stop();
});

it('a stream open across a Redis outage ends with the final status and every item event once', async () => {
  const count = 300;
  const batchId = await createBatch(count);
  let outage: Promise<void> | undefined;
  const events = await readBatchEvents(api.url, KEY, batchId, {
    onEvent: (event) => {
      if (event.type === 'item' && !outage) {
        outage = (async () => {
          await redis.down();
          await new Promise((r) => setTimeout(r, 3000));
          await redis.up();
        })();
      }
    },
  });
  await outage;
  const last = events[events.length - 1];
  expect(last).toMatchObject({ type: 'status', data: { status: 'completed', counts: { total: count } } });
  const indices = itemIndices(events);
  expect(new Set(indices).size).toBe(indices.length);
  expect([...indices].sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i));
  // Ids count the item events: 1, 2, 3, ... in order.
  expect(events.filter((e) => e.type === 'item').map((e) => e.id)).toEqual(indices.map((_, i) => String(i + 1)));
});

it('a client that reconnects with Last-Event-ID gets exactly the item events it had not seen', async () => {
  const count = 200;
  const batchId = await createBatch(count);
  const controller = new AbortController();
  const first = await readBatchEvents(api.url, KEY, batchId, {
    signal: controller.signal,
    onEvent: (event) => void (event.type === 'item' && Number(event.id) >= 5 && controller.abort()),
  });
  const lastId = first.filter((e) => e.id !== undefined).pop()!.id!;
  const rest = await readBatchEvents(api.url, KEY, batchId, { lastEventId: lastId });
  expect(rest[rest.length - 1]).toMatchObject({ type: 'status', data: { status: 'completed' } });
  const indices = [...itemIndices(first), ...itemIndices(rest)];
  expect(new Set(indices).size).toBe(indices.length);
  expect(indices.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i));
  // A client that reconnects after the end gets nothing twice: no items, the final status only.
  const after = await readBatchEvents(api.url, KEY, batchId, { lastEventId: rest[rest.length - 1].id });
  expect(itemIndices(after)).toEqual([]);
  expect(after[after.length - 1]).toMatchObject({ type: 'status', data: { status: 'completed' } });
});

it('refuses a Last-Event-ID that is not one of its ids', async () => {
  const batchId = await createBatch(1);
  const response = await fetch(`${api.url}/batches/${batchId}/events`, { headers: { authorization: `Bearer ${KEY}`, 'last-event-id': 'abc' } });
  expect(response.status).toBe(400);
});
