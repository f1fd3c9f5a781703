// Every invalid input gets a clear 4xx naming the line and field, and a rejected batch leaves nothing in Redis.
import { Redis } from 'ioredis';
import { startApi, keysUnder, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';

const KEY = 'validation-key-1';
let redis: TestRedis;
let client: Redis;
let api: ApiProcess;

const line = (customId: string, body: Record<string, unknown>, url = '/v1/completions') => ({ custom_id: customId, method: 'POST', url, body });
const ok = (customId: string) => line(customId, { prompt: 'Hello', max_tokens: 4 });

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  api = await startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY}:tenant-v`, FALCONQ_MAX_LINES: '5', FALCONQ_MAX_FILE_BYTES: '65536', FALCONQ_MAX_BODY_BYTES: '8192', FALCONQ_RATE_LIMIT_PER_MINUTE: '0' },
  });
});

afterAll(async () => {
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

async function post(path: string, body: unknown): Promise<{ status: number; body: { error?: { message: string; param: string | null; line?: number } } }> {
  const response = await fetch(`${api.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as { error?: { message: string; param: string | null; line?: number } } };
}

async function uploaded(content: string): Promise<string> {
  const response = await uploadFile(api.url, KEY, content);
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

const longPrompt = 'word '.repeat(3000);

// [name, JSONL lines, batch endpoint, expected status, expected message parts]
const fileCases: [string, unknown[], string, number, string[]][] = [
  ['malformed JSON line', [ok('a'), '{"custom_id": "b", "method": "POST",'], '/v1/completions', 400, ['line 2', 'not valid JSON']],
  ['line url not the batch endpoint', [line('a', { prompt: 'x' }, '/v1/embeddings')], '/v1/completions', 400, ['line 1, field url', '/v1/embeddings']],
  ['method not POST', [{ ...ok('a'), method: 'GET' }], '/v1/completions', 400, ['line 1, field method']],
  ['missing custom_id', [{ method: 'POST', url: '/v1/completions', body: { prompt: 'x' } }], '/v1/completions', 400, ['line 1, field custom_id']],
  ['duplicate custom_id', [ok('a'), ok('b'), ok('a')], '/v1/completions', 400, ['line 3, field custom_id', 'duplicates line 1']],
  ['temperature out of range', [ok('a'), line('b', { prompt: 'x', temperature: 5 })], '/v1/completions', 400, ['line 2, field body.temperature']],
  ['top_p out of range (engine rule)', [line('a', { prompt: 'x', top_p: 0 })], '/v1/completions', 400, ['line 1, field body.top_p']],
  ['max_tokens below 1', [line('a', { prompt: 'x', max_tokens: 0 })], '/v1/completions', 400, ['line 1, field body.max_tokens']],
  ['max_tokens of the wrong type', [line('a', { prompt: 'x', max_tokens: 'many' })], '/v1/completions', 400, ['line 1, field body.max_tokens']],
  ['n > 1 with greedy decoding', [line('a', { prompt: 'x', n: 2, temperature: 0 })], '/v1/completions', 400, ['line 1, field body.n']],
  ['too many stop strings', [line('a', { prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] })], '/v1/completions', 400, ['line 1, field body.stop']],
  ['prompt too long for the context', [line('a', { prompt: longPrompt, max_tokens: 16 })], '/v1/completions', 400, ['line 1, field body.prompt', 'context']],
  ['prompt + max_tokens over the context', [line('a', { prompt: 'Hello there', max_tokens: 2047 })], '/v1/completions', 400, ['line 1, field body.prompt', 'max_tokens']],
  ['chat line without messages', [line('a', { prompt: 'x' }, '/v1/chat/completions')], '/v1/chat/completions', 400, ['line 1, field body.messages']],
  ['chat message with a bad role', [line('a', { messages: [{ role: 'robot', content: 'x' }] }, '/v1/chat/completions')], '/v1/chat/completions', 400, ['line 1, field body.messages[0].role']],
  ['streaming in a batch', [line('a', { prompt: 'x', stream: true })], '/v1/completions', 400, ['line 1, field body.stream']],
  ['unsupported parameter value', [line('a', { prompt: 'x', logprobs: 3 })], '/v1/completions', 400, ['line 1, field body.logprobs']],
  ['too many lines', [ok('a'), ok('b'), ok('c'), ok('d'), ok('e'), ok('f')], '/v1/completions', 400, ['6 requests', 'at most 5', 'FALCONQ_MAX_LINES']],
  ['empty file', ['', ''], '/v1/completions', 400, ['no requests']],
];

describe('api validation', () => {
  it.each(fileCases)('%s', async (_name, lines, endpoint, status, parts) => {
    const fileId = await uploaded(jsonl(lines));
    const before = await keysUnder(client, redis.prefix);
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint, completion_window: '24h' });
    expect(response.status).toBe(status);
    for (const part of parts) expect(response.body.error?.message).toContain(part);
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
  });

  const requestCases: [string, string, unknown, number, string[]][] = [
    ['unknown batch endpoint', '/v1/batches', { input_file_id: 'file-x', endpoint: '/v1/embeddings', completion_window: '24h' }, 400, ['endpoint', '/v1/embeddings']],
    ['bad completion window', '/v1/batches', { input_file_id: 'file-x', endpoint: '/v1/completions', completion_window: '48h' }, 400, ['completion_window']],
    ['missing input_file_id', '/v1/batches', { endpoint: '/v1/completions', completion_window: '24h' }, 400, ['input_file_id']],
    ['unknown input file', '/v1/batches', { input_file_id: 'file-nope', endpoint: '/v1/completions', completion_window: '24h' }, 404, ['file-nope']],
    ['native: neither prompts nor template', '/batches', { max_new_tokens: 3 }, 400, ['prompts']],
    ['native: both prompts and template', '/batches', { prompts: ['a'], template: 'Q: {q}', rows: [{ q: 1 }] }, 400, ['either prompts, or template']],
    ['native: template without rows', '/batches', { template: 'Q: {q}' }, 400, ['rows']],
    ['native: row without a template field', '/batches', { template: 'Question: {question}', rows: [{ question: 'a' }, { q: 'b' }] }, 400, ['rows[1].question', '{question}']],
    ['native: prompt of the wrong type', '/batches', { prompts: ['a', 7] }, 400, ['prompts[1]']],
    ['native: unknown parameter', '/batches', { prompts: ['a'], max_tokens: 4 }, 400, ['max_tokens']],
    ['native: bad top_k', '/batches', { prompts: ['a'], top_k: -1 }, 400, ['top_k']],
    ['native: bad repetition_penalty', '/batches', { prompts: ['a'], repetition_penalty: 0 }, 400, ['repetition_penalty']],
    ['native: num_return_sequences without sampling', '/batches', { prompts: ['a'], num_return_sequences: 3 }, 400, ['num_return_sequences', 'do_sample']],
    ['native: prompt too long', '/batches', { prompts: ['ok', 'word '.repeat(1500)], max_new_tokens: 100 }, 400, ['prompts[1]', 'context']],
    ['native: too many prompts', '/batches', { prompts: ['a', 'b', 'c', 'd', 'e', 'f'] }, 400, ['at most 5']],
    ['native: body over FALCONQ_MAX_BODY_BYTES', '/batches', { prompts: ['x'.repeat(9000)] }, 413, ['FALCONQ_MAX_BODY_BYTES']],
    ['native: malformed JSON body', '/batches', '{"prompts": [', 400, ['could not be parsed']],
    ['online: bad temperature', '/v1/completions', { prompt: 'x', temperature: -1 }, 400, ['temperature']],
    ['online: chat without messages', '/v1/chat/completions', { messages: [] }, 400, ['messages']],
    ['online: prompt too long', '/v1/completions', { prompt: longPrompt.slice(0, 7000), max_tokens: 2000 }, 400, ['prompt']],
  ];

  it.each(requestCases)('%s', async (_name, path, body, status, parts) => {
    const before = await keysUnder(client, redis.prefix);
    const response = await post(path, body);
    expect(response.status).toBe(status);
    for (const part of parts) expect(response.body.error?.message).toContain(part);
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
  });

  it('refuses an upload over FALCONQ_MAX_FILE_BYTES with 413 and stores nothing', async () => {
    const before = await keysUnder(client, redis.prefix);
    const response = await uploadFile(api.url, KEY, jsonl(Array.from({ length: 2000 }, (_, i) => ok(`id-${i}`))));
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain('FALCONQ_MAX_FILE_BYTES');
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
  });

  it('refuses an upload with another purpose or without a file', async () => {
    const wrongPurpose = await uploadFile(api.url, KEY, jsonl([ok('a')]), 'fine-tune');
    expect(wrongPurpose.status).toBe(400);
    expect(((await wrongPurpose.json()) as { error: { message: string } }).error.message).toContain('purpose');
    const form = new FormData();
    form.set('purpose', 'batch');
    const noFile = await fetch(`${api.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEY}` } });
    expect(noFile.status).toBe(400);
  });

  it('accepts a valid batch (the cases above fail for their own reason only)', async () => {
    const fileId = await uploaded(jsonl([ok('a'), line('b', { prompt: 'y', temperature: 0.7, top_p: 0.9, top_k: 20, seed: 3, stop: ['\n'] })]));
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', metadata: { job: 'x' } });
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ object: 'batch', status: 'in_progress', request_counts: { total: 2, completed: 0, failed: 0 }, metadata: { job: 'x' } });
    const native = await post('/batches', { template: "Question: {question}\nAnswer: Let's think step by step.", rows: [{ question: 'a' }, { question: 'b' }], max_new_tokens: 4 });
    expect(native.status).toBe(200);
    expect(native.body).toMatchObject({ request_counts: { total: 2 } });
  });
});

describe('api configuration', () => {
  it('refuses to start with a bad variable, naming it', async () => {
    const { runApiUntilExit } = await import('../support/api-process');
    const bad = await runApiUntilExit({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(), env: { FALCONQ_MAX_LINES: 'lots' } });
    expect(bad.code).not.toBe(0);
    expect(bad.output).toContain('FALCONQ_MAX_LINES');
    const badKeys = await runApiUntilExit({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(), env: { FALCONQ_API_KEYS: 'short' } });
    expect(badKeys.code).not.toBe(0);
    expect(badKeys.output).toContain('FALCONQ_API_KEYS');
    expect(badKeys.output).not.toContain('short:');
  });

  it('runs open, with a loud warning, when no keys are configured', async () => {
    const open = await startApi({ redisUrl: redis.url, prefix: `${redis.prefix}-open`, modelDir: await tinyModelDir() });
    try {
      expect(open.output()).toContain('No API keys configured');
      expect((await fetch(`${open.url}/v1/models`)).status).toBe(200);
      expect((await fetch(`${open.url}/dashboard/api/queues`)).status).toBe(200);
    } finally {
      await open.stop();
    }
  });

  it('refuses to start when Redis may evict keys', async () => {
    const { runApiUntilExit } = await import('../support/api-process');
    await client.config('SET', 'maxmemory-policy', 'allkeys-lru');
    try {
      const run = await runApiUntilExit({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir() });
      expect(run.code).not.toBe(0);
      expect(run.output).toContain('noeviction');
    } finally {
      await client.config('SET', 'maxmemory-policy', 'noeviction');
    }
  });
});
