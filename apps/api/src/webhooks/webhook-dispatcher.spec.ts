import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { RedisStore, type WebhookEvent } from '@app/store';
import { startTestRedis, type TestRedis } from '../../../../test/support/redis';
import type { ApiConfig } from '../config/api-config';
import { WebhookDispatcher, backoffMs } from './webhook-dispatcher.service';

// The dispatcher against a real Redis and an endpoint that always fails: each failed attempt is counted and
// rescheduled, and after the last one the event leaves the outbox for the dead letters, with the last error.

let redis: TestRedis;
let client: Redis;
let endpoint: Server;
let attempts = 0;

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  endpoint = createServer((request, response) => {
    attempts += 1;
    request.resume();
    response.writeHead(500).end();
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
  await new Promise((resolve) => endpoint?.close(resolve));
});

test('backoff doubles from the first delay and stops growing at an hour', () => {
  expect([1, 2, 3, 4].map((n) => backoffMs({ retryMs: 5000 }, n))).toEqual([5000, 10_000, 20_000, 40_000]);
  expect(backoffMs({ retryMs: 5000 }, 30)).toBe(3_600_000);
});

test('an event its endpoint keeps refusing is retried, then moved to the dead letters with the last error', async () => {
  const prefix = redis.prefix;
  const url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/hooks`;
  const config = {
    prefix,
    webhooks: { url, secret: `whsec_${Buffer.alloc(32, 3).toString('base64')}`, retryMs: 20, maxAttempts: 3, timeoutMs: 2000 },
  } as unknown as ApiConfig;
  const dispatcher = new WebhookDispatcher(config, client);
  await dispatcher.onModuleInit();
  try {
    // A batch failing is the status change that writes the event, in the store's own Lua step.
    const store = new RedisStore(client, { prefix, fileRetentionSeconds: 0, createSubscriber: () => new Redis(redis.url) });
    await store.batches.create({
      id: 'batch_0000000000000000000000d1', kind: 'openai', owner: 't', endpoint: '/v1/completions', model: 'm', completionWindowMs: 86_400_000,
      completionWindow: '24h', metadata: null, inputFileId: null, items: [], retentionSeconds: 0,
    });
    await store.batches.fail('batch_0000000000000000000000d1', [{ code: 'invalid_batch_line', message: 'bad', line: 1, param: 'body' }]);
    const deadline = Date.now() + 30_000;
    while ((await client.hlen(`${prefix}:webhooks:dead`)) === 0) {
      if (Date.now() > deadline) throw new Error('the event never reached the dead letters');
      await new Promise((r) => setTimeout(r, 50));
    }
    const [dead] = Object.values(await client.hgetall(`${prefix}:webhooks:dead`)).map((json) => JSON.parse(json) as WebhookEvent);
    expect(dead).toMatchObject({ type: 'batch.failed', batchId: 'batch_0000000000000000000000d1', attempts: 3, lastError: 'HTTP 500' });
    expect(attempts).toBe(3);
    expect(await client.zcard(`${prefix}:webhooks:due`)).toBe(0);
    expect(await client.hlen(`${prefix}:webhooks:events`)).toBe(0);
    await store.close();
  } finally {
    await dispatcher.beforeApplicationShutdown();
  }
});
