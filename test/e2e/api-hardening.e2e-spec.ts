// Requests that must neither freeze, flood nor corrupt the service: cross-site forgery, bodies refused before they are
// read, byte limits on every string field, UTF-8, template placeholders, the sliding rate limit, a Redis outage,
// clients that hang up. The api runs as a real process on a private Redis; no worker is needed.
import { request as httpRequest } from 'node:http';
import { Redis } from 'ioredis';
import { keysUnder, startApi, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';

const KEY = 'hardening-key-0001';
const ADMIN = 'hardening-admin-0002';
const EVIL = 'http://evil.example';

let redis: TestRedis;
let client: Redis;
let api: ApiProcess;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const bearer = { authorization: `Bearer ${KEY}` };
const basic = (key: string) => ({ authorization: `Basic ${Buffer.from(`browser:${key}`).toString('base64')}` });

async function send(method: string, path: string, headers: Record<string, string>, body?: string | Uint8Array, base = api.url) {
  const response = await fetch(`${base}${path}`, { method, headers, body });
  const text = await response.text();
  let json: Json | null = null;
  try {
    json = JSON.parse(text) as Json;
  } catch {
    json = null;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const postJson = (path: string, body: unknown, headers: Record<string, string> = bearer, base = api.url) =>
  send('POST', path, { 'content-type': 'application/json', ...headers }, JSON.stringify(body), base);

/** Batch keys only: rate-limit logs and idempotency keys come and go with every request. */
async function keysUnderPrefix(): Promise<string[]> {
  return (await keysUnder(client, redis.prefix)).filter((key) => !key.includes(':rate:'));
}

async function startApiOn(env: Record<string, string>): Promise<ApiProcess> {
  return startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_ADMIN_KEYS: `${ADMIN}:ops`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', ...env },
  });
}

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  api = await startApiOn({ FALCONQ_MAX_BODY_BYTES: String(64 * 1024) });
});

afterAll(async () => {
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

describe('heavy requests stay off the event loop', () => {
  let defaults: ApiProcess;
  beforeAll(async () => {
    defaults = await startApiOn({ FALCONQ_CHECK_THREADS: '1' });
  });
  afterAll(async () => {
    await defaults?.stop();
  });

  it('answers /health while a 2 MiB batch is tokenized, then refuses the batch naming its last prompt', async () => {
    const prompts = [...Array.from({ length: 20 }, (_, i) => `${i} ${'lorem ipsum dolor sit amet '.repeat(3800)}`), ''];
    const before = await keysUnderPrefix();
    let batchAnswered = false;
    const batch = postJson('/batches', { prompts, truncate: true, max_new_tokens: 2 }, bearer, defaults.url).finally(() => (batchAnswered = true));
    let healthWhileChecking = 0;
    while (!batchAnswered) {
      const health = await send('GET', '/health', bearer, undefined, defaults.url);
      expect(health.status).toBe(200);
      if (!batchAnswered) healthWhileChecking++;
    }
    const refused = await batch;
    expect(refused.status).toBe(400);
    expect(refused.json?.error.param).toBe('prompts[20]');
    expect(healthWhileChecking).toBeGreaterThan(0);
    expect(await keysUnderPrefix()).toEqual(before);
  });

  it('refuses a 10 MiB prompt and a template bomb by their size, before tokenizing or rendering them', async () => {
    const before = await keysUnderPrefix();
    const huge = await postJson('/v1/completions', { model: 'falcon', prompt: 'x'.repeat(10 * 1024 * 1024 - 100), max_tokens: 2 }, bearer, defaults.url);
    expect(huge.status).toBe(400);
    expect(huge.json?.error.message).toContain('a prompt may hold at most 131072 bytes');
    // 24 KiB that rendered to 44 MiB: each row's prompt is over the per-prompt limit.
    const bomb = await postJson('/batches', {
      template: '{q}'.repeat(1000), rows: Array.from({ length: 200 }, () => ({ q: 'y'.repeat(220) })), truncate: true, max_new_tokens: 2,
    }, bearer, defaults.url);
    expect(bomb.status).toBe(400);
    expect(bomb.json?.error.param).toBe('rows[0]');
    expect(bomb.json?.error.message).toContain('renders to 220000 bytes');
    // Rows that each fit, but would render to more prompt bytes than a request body may hold.
    const wide = await postJson('/batches', {
      template: '{q}'.repeat(1000), rows: Array.from({ length: 200 }, () => ({ q: 'y'.repeat(100) })), truncate: true, max_new_tokens: 2,
    }, bearer, defaults.url);
    expect(wide.status).toBe(400);
    expect(wide.json?.error.param).toBe('rows');
    expect(wide.json?.error.message).toContain('in all');
    expect(await keysUnderPrefix()).toEqual(before);
  });
});

describe('cross-site request forgery', () => {
  it('refuses a cross-site form post carrying cached Basic credentials, and Basic anywhere but the dashboard and docs', async () => {
    const form = await send('POST', '/batches', { ...basic(KEY), origin: EVIL, 'content-type': 'application/x-www-form-urlencoded' }, 'prompts=hi');
    expect(form.status).toBe(403);
    expect(form.json?.error.code).toBe('cross_origin_request');
    // A body-less cross-site POST (what cancelled a batch before) is refused the same way.
    const created = await postJson('/batches', { prompts: ['a'], max_new_tokens: 2 });
    expect(created.status).toBe(200);
    const cancel = await send('POST', `/batches/${created.json!.id}/cancel`, { ...basic(KEY), origin: EVIL });
    expect(cancel.status).toBe(403);
    // Without an Origin, Basic is still not a credential for the API.
    const noOrigin = await send('POST', `/batches/${created.json!.id}/cancel`, basic(KEY));
    expect(noOrigin.status).toBe(401);
    expect(noOrigin.json?.error.message).toContain('Basic');
    expect((await send('GET', `/batches/${created.json!.id}`, bearer)).json?.status).toBe('in_progress');
    // The dashboard still takes Basic from a browser, and its actions from its own origin only.
    expect((await send('GET', '/dashboard/api/queues', basic(ADMIN))).status).toBe(200);
    const host = new URL(api.url).host;
    expect((await send('PUT', '/dashboard/api/queues/generate/pause', { ...basic(ADMIN), origin: EVIL })).status).toBe(403);
    // From its own origin the action passes the CSRF check and reaches the dashboard, which is read-only (405).
    expect((await send('PUT', '/dashboard/api/queues/generate/pause', { ...basic(ADMIN), origin: `http://${host}` })).status).toBe(405);
  });

  it('takes state-changing bodies as JSON only', async () => {
    const text = await send('POST', '/batches', { ...bearer, 'content-type': 'text/plain' }, JSON.stringify({ prompts: ['a'] }));
    expect(text.status).toBe(415);
    expect(text.json?.error.message).toContain('application/json');
    const form = await send('POST', '/batches', { ...bearer, 'content-type': 'application/x-www-form-urlencoded' }, 'prompts=a');
    expect(form.status).toBe(415);
  });
});

/** POSTs a body in pieces without a Content-Length (Transfer-Encoding: chunked); the status and the answer. */
function postChunked(base: string, path: string, pieces: Buffer[]): Promise<{ status: number; json: Json | null }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${base}${path}`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' } }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => {
        let json: Json | null = null;
        try {
          json = JSON.parse(text) as Json;
        } catch {
          json = null;
        }
        resolve({ status: response.statusCode ?? 0, json });
      });
    });
    request.on('error', (error) => (error.message.includes('socket hang up') || error.message.includes('EPIPE') ? undefined : reject(error)));
    for (const piece of pieces) request.write(piece);
    request.end();
  });
}

const piecesOf = (bytes: Buffer, size: number): Buffer[] => Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size));

describe('bodies of unknown length (chunked)', () => {
  it('reads a 3 MiB chunked body byte for byte, a character split across its 1 MiB blocks included', async () => {
    const defaults = await startApiOn({});
    try {
      const head = Buffer.from('{"max_new_tokens": 2, "metadata": {"run": "chunked"},');
      const prompt = 'Before the split: \u00e9 after the split';
      const promptJson = Buffer.from(`"prompts": [${JSON.stringify(prompt)}]}`);
      // Whitespace so that the two bytes of U+00E9 sit either side of the 1 MiB mark; then 2 MiB more of it.
      const atSplit = 1024 * 1024 - head.length - Buffer.from('"prompts": ["Before the split: ').length - 1;
      const body = Buffer.concat([head, Buffer.alloc(atSplit, ' '), promptJson, Buffer.alloc(2 * 1024 * 1024, ' ')]);
      expect(body.subarray(1024 * 1024 - 1, 1024 * 1024 + 1)).toEqual(Buffer.from('\u00e9'));
      const accepted = await postChunked(defaults.url, '/batches', piecesOf(body, 100_000));
      expect(accepted.status).toBe(200);
      const stored = await client.hget(`${redis.prefix}:batch:${accepted.json?.id as string}:items`, '0');
      expect(JSON.parse(stored!).prompt).toBe(prompt);
    } finally {
      await defaults.stop();
    }
  });

  it('refuses a chunked body past FALCONQ_MAX_BODY_BYTES with 413 as it arrives', async () => {
    const refused = await postChunked(api.url, '/batches', piecesOf(Buffer.from(`{"prompts": ["${'z'.repeat(200 * 1024)}"]}`), 16 * 1024));
    expect(refused.status).toBe(413);
    expect(refused.json?.error.message).toContain('FALCONQ_MAX_BODY_BYTES');
  });
});

describe('bodies are refused before they are read', () => {
  it('answers 401 to a request without a key before parsing its body', async () => {
    const malformed = '{"prompts": [';
    expect((await send('POST', '/batches', { 'content-type': 'application/json' }, malformed)).status).toBe(401);
    // The same body with a key is parsed (and refused as JSON).
    expect((await send('POST', '/batches', { ...bearer, 'content-type': 'application/json' }, malformed)).status).toBe(400);
  });

  it('answers 413 from Content-Length alone, while the client has sent almost nothing', async () => {
    const announced = 20 * 1024 * 1024;
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpRequest(`${api.url}/batches`, {
        method: 'POST', headers: { ...bearer, 'content-type': 'application/json', 'content-length': String(announced) },
      }, (response) => {
        resolve(response.statusCode ?? 0);
        response.resume();
        request.destroy();
      });
      request.on('error', (error) => (error.message.includes('socket hang up') ? undefined : reject(error)));
      request.write('{"prompts": ["'); // 14 of the 20 MiB announced; the rest never comes
    });
    expect(status).toBe(413);
  });
});

describe('text is UTF-8, and stays what was sent', () => {
  it('refuses a JSON body with invalid UTF-8 bytes instead of storing U+FFFD', async () => {
    const bytes = Buffer.concat([Buffer.from('{"prompts": ["a'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"], "max_new_tokens": 2}')]);
    const refused = await send('POST', '/batches', { ...bearer, 'content-type': 'application/json' }, bytes);
    expect(refused.status).toBe(400);
    expect(refused.json?.error.message).toContain('not valid UTF-8');
  });

  it('accepts a valid UTF-8 file holding U+FFFD (models produce it) and refuses invalid bytes', async () => {
    const content = jsonl([{ custom_id: 'r\uFFFD', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'caf\uFFFD', max_tokens: 2 } }]);
    const accepted = await uploadFile(api.url, KEY, content);
    expect(accepted.status).toBe(200);
    const file = (await accepted.json()) as { id: string; bytes: number };
    expect(file.bytes).toBe(Buffer.byteLength(content));
    const stored = await send('GET', `/v1/files/${file.id}/content`, bearer);
    expect(stored.text).toBe(content);
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set('file', new Blob([Buffer.from('{"custom_id": "a\xff"}\n', 'latin1')]), 'bad.jsonl');
    const invalid = await fetch(`${api.url}/v1/files`, { method: 'POST', body: form, headers: bearer });
    expect(invalid.status).toBe(400);
  });
});

describe('byte limits on every string field', () => {
  const native = { prompts: ['a'], max_new_tokens: 2 };

  it.each([
    ['17 metadata keys', { ...native, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
    ['a 65-byte metadata key', { ...native, metadata: { ['k'.repeat(65)]: 'v' } }, 'metadata'],
    ['a 1 MiB metadata value', { ...native, metadata: { k: 'v'.repeat(1024 * 60) } }, 'metadata.k'],
    ['a metadata value of 200 three-byte characters (600 bytes)', { ...native, metadata: { k: '\u20ac'.repeat(200) } }, 'metadata.k'],
    ['a 257-byte stop string', { ...native, stop: ['s'.repeat(257)] }, 'stop[0]'],
  ])('native batch: refuses %s naming the field', async (_, body, field) => {
    const refused = await postJson('/batches', body);
    expect(refused.status).toBe(400);
    expect(refused.json?.error.param.startsWith(field)).toBe(true);
  });

  it('refuses oversized metadata and custom_id on OpenAI batches too', async () => {
    const upload = await uploadFile(api.url, KEY, jsonl([{ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x', max_tokens: 2 } }]));
    const fileId = ((await upload.json()) as { id: string }).id;
    const tooMany = await postJson('/v1/batches', { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h',
      metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.json?.error.param).toBe('metadata');

    const longId = await uploadFile(api.url, KEY, jsonl([{ custom_id: '\u20ac'.repeat(171), method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x' } }]));
    const longIdFile = ((await longId.json()) as { id: string }).id;
    const refused = await postJson('/v1/batches', { input_file_id: longIdFile, endpoint: '/v1/completions', completion_window: '24h' });
    // OpenAI's way: a batch whose lines are bad is created failed, each bad line in errors.data.
    expect(refused.json?.status).toBe('failed');
    expect(refused.json?.errors.data[0]).toMatchObject({ line: 1, param: 'custom_id', message: expect.stringContaining('512 bytes') });
  });
});

describe('templates', () => {
  it('fills placeholders from the row\'s own fields only: {constructor} is a missing field, not JavaScript', async () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const refused = await postJson('/batches', { template: `Q: {${name}}`, rows: [{ q: 'x' }], max_new_tokens: 2 });
      expect(refused.status).toBe(400);
      expect(refused.json?.error.param).toBe(`rows[0].${name}`);
    }
  });
});

describe('rate limits', () => {
  let limited: ApiProcess;
  beforeAll(async () => {
    limited = await startApiOn({ FALCONQ_RATE_LIMIT_PER_MINUTE: '5' });
  });
  afterAll(async () => {
    await limited?.stop();
  });

  it('allows the limit in any minute and tells exactly when the next request may come', async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<typeof send>> | undefined;
    for (let i = 0; i < 7; i++) {
      last = await send('GET', '/v1/models', bearer, undefined, limited.url);
      statuses.push(last.status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    const retryAfter = Number(last!.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });

  it('limits requests without a valid key by address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await send('GET', '/v1/models', { authorization: 'Bearer guessed-key' }, undefined, limited.url)).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429]);
  });
});

describe('clients that hang up', () => {
  it('releases the subscription of an event stream aborted in its first milliseconds', async () => {
    const created = await postJson('/batches', { prompts: ['a', 'b'], max_new_tokens: 2 });
    const channel = `${redis.prefix}:events:${created.json!.id}`;
    const aborts = Array.from({ length: 40 }, async (_, i) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), i % 8);
      await fetch(`${api.url}/batches/${created.json!.id}/events`, { headers: bearer, signal: controller.signal })
        .then((response) => response.body?.cancel())
        .catch(() => undefined);
    });
    await Promise.all(aborts);
    const subscribers = async () => Number(((await client.pubsub('NUMSUB', channel)) as [string, number])[1]);
    for (let waited = 0; (await subscribers()) > 0 && waited < 10_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    expect(await subscribers()).toBe(0);
  });

  it('logs no error when an online client disconnects', async () => {
    const controller = new AbortController();
    const pending = fetch(`${api.url}/v1/completions`, {
      method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, signal: controller.signal,
      body: JSON.stringify({ model: 'falcon', prompt: 'nobody runs this', max_tokens: 2 }),
    }).catch(() => undefined);
    // No worker runs: the request waits until the client gives up.
    await waitFor(async () => (await client.keys(`${redis.prefix}:batch:online_*`)).length > 0);
    controller.abort();
    await pending;
    const [record] = (await client.keys(`${redis.prefix}:batch:online_*`)).filter((key) => /:batch:online_[0-9a-f]+$/.test(key));
    await waitFor(async () => (await client.hget(record, 'status')) === 'cancelling');
    expect(api.output()).not.toMatch(/ERROR/);
    expect(api.output()).not.toMatch(/\n\s+at /);
  });
});

describe('Redis outage', () => {
  it('answers 503 with Retry-After from Redis-backed routes and /health, logs no stack trace, and recovers', async () => {
    const created = await postJson('/batches', { prompts: ['a'], max_new_tokens: 2 });
    expect(created.status).toBe(200);
    await redis.down();
    try {
      for (const [method, path] of [['GET', '/health'], ['GET', '/v1/batches'], ['GET', `/batches/${created.json!.id}`], ['POST', '/batches']] as const) {
        const answer = method === 'POST' ? await postJson(path, { prompts: ['a'] }) : await send(method, path, bearer);
        expect([path, answer.status]).toEqual([path, 503]);
        expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0);
      }
    } finally {
      await redis.up();
    }
    await waitFor(async () => (await send('GET', '/health', bearer)).status === 200);
    // This Redis keeps no data across a restart; the api works again without its own restart.
    expect((await postJson('/batches', { prompts: ['again'], max_new_tokens: 2 })).status).toBe(200);
    expect(api.output()).not.toMatch(/\n\s+at /);
    expect(api.output()).not.toMatch(/Internal server error/);
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
