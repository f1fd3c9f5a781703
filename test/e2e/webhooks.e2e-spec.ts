// Webhooks: batch.completed, batch.failed, batch.cancelled and batch.expired reach a receiver signed as OpenAI signs
// them (verified by the official client's webhooks.unwrap), a refused delivery is retried, and each event is taken
// exactly once although the api is restarted while a batch finishes (its event waits in the Redis outbox).
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { jsonl, startApi, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';

const KEY = 'webhook-tenant-key-1';
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

interface Delivery {
  id: string;
  answered: number;
  event: { object: string; id: string; type: string; created_at: number; data: { id: string } };
}

let redis: TestRedis;
let client: Redis;
let worker: WorkerProcess;
let api: ApiProcess;
let receiver: Server;
let receiverUrl: string;
let modelDir: string;
const deliveries: Delivery[] = [];
const verifier = new OpenAI({ apiKey: 'unused', webhookSecret: SECRET });
/** The receiver refuses the first delivery of the first event that matches (to see the retry). */
let refuseFirstOf: ((event: Delivery['event']) => boolean) | null = null;
const refused = new Set<string>();

async function receive(body: string, headers: IncomingHttpHeaders): Promise<number> {
  // Throws unless the signature, the timestamp and the body are right.
  const event = (await verifier.webhooks.unwrap(body, headers as Record<string, string>)) as unknown as Delivery['event'];
  const id = headers['webhook-id'] as string;
  const refuse = refuseFirstOf?.(event) === true && refused.size === 0;
  if (refuse) refused.add(id);
  const answered = refuse ? 503 : 200;
  deliveries.push({ id, answered, event });
  return answered;
}

function startFalconqApi(): Promise<ApiProcess> {
  return startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir,
    env: {
      FALCONQ_API_KEYS: `${KEY}:tenant-w`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_EXPIRY_SWEEP_MS: '200',
      FALCONQ_WEBHOOK_URL: receiverUrl, FALCONQ_WEBHOOK_SECRET: SECRET, FALCONQ_WEBHOOK_RETRY_MS: '200',
    },
  });
}

beforeAll(async () => {
  receiver = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      receive(body, request.headers).then(
        (status) => response.writeHead(status).end(),
        (error: Error) => response.writeHead(400).end(error.message),
      );
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  redis = await startTestRedis();
  client = new Redis(redis.url);
  modelDir = await tinyModelDir();
  // The worker starts in the test, once the batches to cancel and to expire are settled without one.
  api = await startFalconqApi();
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
});

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${api.url}${path}`, {
    method, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = (await response.json()) as T;
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

async function openAiBatch(lines: unknown[]): Promise<string> {
  const upload = await uploadFile(api.url, KEY, jsonl(lines));
  const file = (await upload.json()) as { id: string };
  return (await call<{ id: string }>('POST', '/v1/batches', { input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' })).id;
}

const line = (customId: string, body: Record<string, unknown>) => ({ custom_id: customId, method: 'POST', url: '/v1/completions', body: { model: 'falcon', ...body } });
const batchStatus = (batchId: string) => client.hget(`${redis.prefix}:batch:${batchId}`, 'status');

async function until(probe: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('webhooks', () => {
  it('delivers each final status once, signed, retried after a refusal, across an api restart', async () => {
    const expected = new Map<string, string>();
    // The first batch.completed delivery is refused once: it must come again.
    refuseFirstOf = (event) => event.type === 'batch.completed';

    // No worker yet: these two end without running anything.
    const cancelled = await openAiBatch(Array.from({ length: 3 }, (_, i) => line(`c${i}`, { prompt: `n${i}`, max_tokens: 4 })));
    await call('POST', `/v1/batches/${cancelled}/cancel`);
    expected.set(cancelled, 'batch.cancelled');
    const expired = await openAiBatch(Array.from({ length: 3 }, (_, i) => line(`e${i}`, { prompt: `n${i}`, max_tokens: 4 })));
    // Its completion window ends now: the next expiry sweep expires it.
    await client.zadd(`${redis.prefix}:deadlines`, 0, expired);
    expected.set(expired, 'batch.expired');
    await until(async () => (await batchStatus(cancelled)) === 'cancelled' && (await batchStatus(expired)) === 'expired', 'cancel and expiry');
    worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4 });

    const completed = await openAiBatch([line('a', { prompt: 'Hello', max_tokens: 3 }), line('b', { prompt: 'World', max_tokens: 3 })]);
    expected.set(completed, 'batch.completed');
    const failed = await openAiBatch([line('ok', { prompt: 'x' }), line('bad', { prompt: 'x', temperature: 9 })]);
    expected.set(failed, 'batch.failed');

    // A batch that finishes while no api runs: its event is written by the worker into the outbox and sent by the
    // next api.
    const whileDown = (await call<{ id: string }>('POST', '/batches', { prompts: Array.from({ length: 8 }, (_, i) => `q${i}`), max_new_tokens: 24, ignore_eos: true })).id;
    expected.set(whileDown, 'batch.completed');
    await api.stop();
    await until(async () => (await batchStatus(whileDown)) === 'completed', 'the batch finishing while the api is down');
    expect(deliveries.filter((d) => d.event.data.id === whileDown)).toEqual([]);
    api = await startFalconqApi();

    const acknowledged = () => deliveries.filter((d) => d.answered === 200);
    await until(async () => acknowledged().length >= expected.size && (await client.zcard(`${redis.prefix}:webhooks:due`)) === 0, 'every event delivered');
    // Anything sent twice would have arrived by now: the outbox is empty and no delivery is under way.
    await new Promise((r) => setTimeout(r, 1000));

    const ids = acknowledged().map((d) => d.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Map(acknowledged().map((d) => [d.event.data.id, d.event.type]))).toEqual(expected);
    expect(acknowledged()).toHaveLength(expected.size);
    for (const delivery of acknowledged()) {
      expect(delivery.event).toMatchObject({ object: 'event', id: delivery.id, created_at: expect.any(Number) });
    }
    // The refused delivery came again with the same webhook-id, and was then taken.
    expect(refused.size).toBe(1);
    const [retried] = [...refused];
    expect(deliveries.filter((d) => d.id === retried).map((d) => d.answered)).toEqual([503, 200]);
    expect(await client.hlen(`${redis.prefix}:webhooks:events`)).toBe(0);
  });
});
