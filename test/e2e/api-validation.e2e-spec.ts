// Every invalid input gets a clear 4xx naming the line and field, and a rejected batch leaves nothing in Redis.
// Every case is recorded (input -> status, message, param, line, Redis unchanged) in .tmp/reliability/api-validation.json
// for docs/reliability.md.
import { Redis } from 'ioredis';
import { startApi, keysUnder, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { reportFigures } from '../support/figures';

const KEY = 'validation-key-1';
let redis: TestRedis;
let client: Redis;
let api: ApiProcess;

/** A batch line naming the model by an alias, as OpenAI requires every body to name one. */
const line = (customId: string, body: Record<string, unknown>, url = '/v1/completions') => ({ custom_id: customId, method: 'POST', url, body: { model: 'falcon', ...body } });
/** A batch line whose body is exactly `body` (no model added). */
const bareLine = (customId: string, body: Record<string, unknown>, url = '/v1/completions') => ({ custom_id: customId, method: 'POST', url, body });
const ok = (customId: string) => line(customId, { prompt: 'Hello', max_tokens: 4 });

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  api = await startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY}:tenant-v`, FALCONQ_MAX_LINES: '5', FALCONQ_MAX_FILE_BYTES: '65536', FALCONQ_MAX_BODY_BYTES: '8192', FALCONQ_RATE_LIMIT_PER_MINUTE: '0' },
  });
});

type ErrorBody = { error?: { message: string; param: string | null; line?: number } };
type FailedBatch = { id: string; status: string; errors: { data: { code: string; line: number; param: string | null; message: string }[] } | null };
interface Observation {
  group: string;
  input: string;
  status: number;
  message: string | null;
  param: string | null;
  line: number | null;
  redisUnchanged: boolean;
  /** A file with bad lines: the batch is stored as `failed` with its errors (and nothing enqueued). */
  failedBatch?: boolean;
}
const observed: Observation[] = [];

function record(group: string, input: string, status: number, body: unknown, redisUnchanged: boolean, failedBatch = false): void {
  const error = (body as ErrorBody | null)?.error;
  observed.push({ group, input, status, message: error?.message ?? null, param: error?.param ?? null, line: error?.line ?? null, redisUnchanged, ...(failedBatch ? { failedBatch } : {}) });
}

const sameKeys = (a: string[], b: string[]) => a.length === b.length && a.every((k, i) => k === b[i]);

afterAll(async () => {
  const refused = observed.filter((o) => o.status >= 400);
  reportFigures('api-validation', {
    cases: observed.length,
    refused: refused.length,
    failedBatches: observed.filter((o) => o.failedBatch).length,
    accepted: observed.length - refused.length - observed.filter((o) => o.failedBatch).length,
    refusedWithRedisChanged: refused.filter((o) => !o.redisUnchanged).length,
    observed,
  });
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

async function post(path: string, body: unknown): Promise<{ status: number; body: ErrorBody }> {
  const response = await fetch(`${api.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as ErrorBody };
}

async function uploaded(content: string): Promise<string> {
  const response = await uploadFile(api.url, KEY, content);
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

const longPrompt = 'word '.repeat(3000);

/** A JSONL line written by hand (for escapes JSON.stringify would not write, and raw bytes). */
const rawLine = (customId: string, promptJson: string, extra = '') =>
  `{"custom_id": "${customId}", "method": "POST", "url": "/v1/completions", "body": {"model": "falcon", "prompt": ${promptJson}${extra}}}`;
const nested = (depth: number): unknown => (depth === 0 ? 'x' : { a: nested(depth - 1) });

// [name, JSONL lines (or the whole file as a string), batch endpoint, expected outcome, expected message parts].
// A problem of the file as a whole is a 400; bad lines make a batch that is `failed` at once with one errors.data
// entry per bad line (OpenAI's behaviour), and nothing of it is enqueued.
const fileCases: [string, unknown[] | string, string, 400 | 'failed', string[]][] = [
  ['malformed JSON line', [ok('a'), '{"custom_id": "b", "method": "POST",'], '/v1/completions', 'failed', ['line 2', 'not valid JSON']],
  ['line url not the batch endpoint', [line('a', { prompt: 'x' }, '/v1/embeddings')], '/v1/completions', 'failed', ['line 1, field url', '/v1/embeddings']],
  ['method not POST', [{ ...ok('a'), method: 'GET' }], '/v1/completions', 'failed', ['line 1, field method']],
  ['missing custom_id', [{ method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x' } }], '/v1/completions', 'failed', ['line 1, field custom_id']],
  ['duplicate custom_id', [ok('a'), ok('b'), ok('a')], '/v1/completions', 'failed', ['line 3, field custom_id', 'duplicates line 1']],
  ['temperature out of range', [ok('a'), line('b', { prompt: 'x', temperature: 5 })], '/v1/completions', 'failed', ['line 2, field body.temperature']],
  ['top_p out of range (engine rule)', [line('a', { prompt: 'x', top_p: 0 })], '/v1/completions', 'failed', ['line 1, field body.top_p']],
  ['max_tokens below 1', [line('a', { prompt: 'x', max_tokens: 0 })], '/v1/completions', 'failed', ['line 1, field body.max_tokens']],
  ['max_tokens of the wrong type', [line('a', { prompt: 'x', max_tokens: 'many' })], '/v1/completions', 'failed', ['line 1, field body.max_tokens']],
  ['too many stop strings', [line('a', { prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] })], '/v1/completions', 'failed', ['line 1, field body.stop']],
  ['prompt too long for the context', [line('a', { prompt: longPrompt, max_tokens: 16 })], '/v1/completions', 'failed', ['line 1, field body.prompt', 'context']],
  ['prompt + max_tokens over the context', [line('a', { prompt: 'Hello there', max_tokens: 2047 })], '/v1/completions', 'failed', ['line 1, field body.prompt', 'max_tokens']],
  ['chat line without messages', [line('a', { prompt: 'x' }, '/v1/chat/completions')], '/v1/chat/completions', 'failed', ['line 1, field body.messages']],
  ['chat message with a bad role', [line('a', { messages: [{ role: 'robot', content: 'x' }] }, '/v1/chat/completions')], '/v1/chat/completions', 'failed', ['line 1, field body.messages[0].role']],
  ['streaming in a batch', [line('a', { prompt: 'x', stream: true })], '/v1/completions', 'failed', ['line 1, field body.stream']],
  ['unsupported parameter value', [line('a', { prompt: 'x', presence_penalty: 0.5 })], '/v1/completions', 'failed', ['line 1, field body.presence_penalty', 'not supported']],
  ['unknown parameter', [line('a', { prompt: 'x', min_length: 3 })], '/v1/completions', 'failed', ['line 1, field body.min_length', 'unrecognized']],
  ['unsupported tools', [line('a', { messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function' }] }, '/v1/chat/completions')], '/v1/chat/completions', 'failed', ['line 1, field body.tools', 'tool calling']],
  ['unknown model', [line('a', { model: 'gpt-4', prompt: 'x' })], '/v1/completions', 'failed', ['line 1, field body.model', "'gpt-4' does not exist"]],
  ['missing model (completions)', [ok('a'), bareLine('b', { prompt: 'x' })], '/v1/completions', 'failed', ['line 2, field body.model', 'is required']],
  ['missing model (chat)', [bareLine('a', { messages: [{ role: 'user', content: 'x' }] }, '/v1/chat/completions')], '/v1/chat/completions', 'failed', ['line 1, field body.model', 'is required']],
  ['model of the wrong type', [line('a', { model: 7, prompt: 'x' })], '/v1/completions', 'failed', ['line 1, field body.model', 'must be a string']],
  ['two prompts in one line', [line('a', { prompt: ['x', 'y'] })], '/v1/completions', 'failed', ['line 1, field body.prompt', 'holds 2 prompts']],
  ['token id out of the vocabulary', [line('a', { prompt: [1, 2, 99_999_999] })], '/v1/completions', 'failed', ['line 1, field body.prompt[2]', 'not a token id']],
  ['too many lines', [ok('a'), ok('b'), ok('c'), ok('d'), ok('e'), ok('f')], '/v1/completions', 400, ['6 requests', 'at most 5', 'FALCONQ_MAX_LINES']],
  ['empty file', ['', ''], '/v1/completions', 400, ['no requests']],
  // wrong types
  ['custom_id of the wrong type', [{ ...ok('a'), custom_id: 7 }], '/v1/completions', 'failed', ['line 1, field custom_id']],
  ['body of the wrong type', [{ custom_id: 'a', method: 'POST', url: '/v1/completions', body: 'Hello' }], '/v1/completions', 'failed', ['line 1, field body']],
  ['prompt of the wrong type', [line('a', { prompt: { text: 'x' } })], '/v1/completions', 'failed', ['line 1, field body.prompt']],
  ['stop of the wrong type', [line('a', { prompt: 'x', stop: 5 })], '/v1/completions', 'failed', ['line 1, field body.stop']],
  ['a JSON array instead of an object', [ok('a'), '["custom_id", "b"]'], '/v1/completions', 'failed', ['line 2']],
  // huge values
  ['max_tokens 1e12', [line('a', { prompt: 'x', max_tokens: 1e12 })], '/v1/completions', 'failed', ['line 1, field body.max_tokens']],
  ['max_tokens 1e400 (Infinity once parsed)', [rawLine('a', '"x"', ', "max_tokens": 1e400')], '/v1/completions', 'failed', ['line 1, field body.max_tokens']],
  ['temperature 1e308', [line('a', { prompt: 'x', temperature: 1e308 })], '/v1/completions', 'failed', ['line 1, field body.temperature']],
  ['seed 2^64 (not a safe integer)', [rawLine('a', '"x"', ', "seed": 18446744073709551616')], '/v1/completions', 'failed', ['line 1, field body.seed']],
  ['a line nested 30,000 levels deep', [`${'['.repeat(30_000)}${']'.repeat(30_000)}`], '/v1/completions', 'failed', ['line 1']],
  // unicode edge cases
  ['lone surrogate \\ud800 escaped in a prompt', [ok('a'), rawLine('b', '"bad \\ud800 here"')], '/v1/completions', 'failed', ['line 2, field body.prompt', 'surrogate']],
  ['lone surrogate \\udc00 escaped in a custom_id', [rawLine('a\\udc00', '"x"')], '/v1/completions', 'failed', ['line 1, field custom_id', 'surrogate']],
  ['raw NUL byte inside a JSON string', [rawLine('a', '"a\u0000b"')], '/v1/completions', 'failed', ['line 1', 'not valid JSON']],
  ['CRLF line endings, bad line 2', `${JSON.stringify(ok('a'))}\r\n{"custom_id": "b",\r\n`, '/v1/completions', 'failed', ['line 2', 'not valid JSON']],
  ['BOM in the middle of a line', [`{"custom_id": "a",\uFEFF "method": "POST", "url": "/v1/completions", "body": {"model": "falcon", "prompt": "x"}}`], '/v1/completions', 'failed', ['line 1', 'not valid JSON']],
];

describe('api validation', () => {
  it.each(fileCases)('%s', async (name, lines, endpoint, outcome, parts) => {
    const fileId = await uploaded(typeof lines === 'string' ? lines : jsonl(lines));
    const before = await keysUnder(client, redis.prefix);
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint, completion_window: '24h' });
    const after = await keysUnder(client, redis.prefix);
    if (outcome === 400) {
      record('JSONL file (POST /v1/batches)', name, response.status, response.body, sameKeys(before, after));
      expect(response.status).toBe(400);
      for (const part of parts) expect(response.body.error?.message).toContain(part);
      expect(after).toEqual(before);
      return;
    }
    const batch = response.body as unknown as FailedBatch;
    const [first] = batch.errors?.data ?? [];
    const described = first ? `line ${first.line}${first.param ? `, field ${first.param}` : ''}: ${first.message}` : '';
    record('JSONL file (POST /v1/batches)', name, response.status, { error: { message: described, param: first?.param ?? null, line: first?.line } }, sameKeys(before, after), true);
    expect(response.status).toBe(200);
    expect(batch).toMatchObject({ object: 'batch', status: 'failed', failed_at: expect.any(Number), request_counts: { total: 0 }, output_file_id: null, error_file_id: null });
    for (const part of parts) expect(described).toContain(part);
    // The failed batch is stored; nothing of it reached the queue.
    const added = after.filter((key) => !before.includes(key));
    expect(added.filter((key) => key.startsWith(`${redis.prefix}:generate`))).toEqual([]);
    expect(added.every((key) => !key.includes(':batch:') || key.includes(batch.id))).toBe(true);
  });

  it('lists every bad line of a file in errors.data, in line order, with code, line, param and message', async () => {
    const fileId = await uploaded(jsonl([ok('a'), line('b', { prompt: 'x', temperature: 5 }), 'not json', ok('d'), line('e', { prompt: longPrompt, max_tokens: 16 })]));
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' });
    expect(response.status).toBe(200);
    expect((response.body as unknown as FailedBatch).errors?.data).toEqual([
      { code: 'invalid_batch_line', line: 2, param: 'body.temperature', message: expect.stringContaining('between 0 and 2') },
      { code: 'invalid_batch_line', line: 3, param: null, message: expect.stringContaining('not valid JSON') },
      { code: 'context_length_exceeded', line: 5, param: 'body.prompt', message: expect.stringContaining('context') },
    ]);
  });

  // Files a production service must take as they are: [name, whole file, endpoint, expected request count]
  const emoji = '👩‍👩‍👧‍👦 🇺🇳 e\u0301 ';
  const rtl = 'مرحبا بالعالم שלום עולם';
  const acceptedFiles: [string, string, string, number][] = [
    ['emoji (ZWJ sequence, flag, combining accent) and RTL prompts', jsonl([line('a', { prompt: `${emoji}${rtl}`, max_tokens: 2 }), line('b', { prompt: rtl.repeat(20) }), line('c', { prompt: emoji.repeat(20) })]), '/v1/completions', 3],
    ['RTL chat messages', jsonl([line('a', { messages: [{ role: 'user', content: rtl }] }, '/v1/chat/completions')]), '/v1/chat/completions', 1],
    ['BOM at the start of the file', `\uFEFF${jsonl([ok('a'), ok('b')])}`, '/v1/completions', 2],
    ['CRLF line endings', [ok('a'), ok('b'), ok('c')].map((l) => JSON.stringify(l)).join('\r\n') + '\r\n', '/v1/completions', 3],
    ['escaped NUL (\\u0000) inside a prompt', jsonl([rawLine('a', '"a\\u0000b"')]), '/v1/completions', 1],
    ['an emoji as an escaped surrogate pair (\\ud83d\\ude00)', jsonl([rawLine('a', '"\\ud83d\\ude00 smile"')]), '/v1/completions', 1],
    ['no newline at the end, blank lines between', `${JSON.stringify(ok('a'))}\n\n  \n${JSON.stringify(ok('b'))}`, '/v1/completions', 2],
    ['n > 1 with temperature 0 (n greedy copies, as OpenAI)', jsonl([line('a', { prompt: 'x', n: 2, temperature: 0 })]), '/v1/completions', 1],
    ['a prompt of token ids, and a list of one prompt', jsonl([line('a', { prompt: [1, 2, 3] }), line('b', { prompt: ['x'] }), line('c', { prompt: [[4, 5]] })]), '/v1/completions', 3],
    ['the model by an alias (falcon)', jsonl([line('a', { model: 'falcon', prompt: 'x' })]), '/v1/completions', 1],
  ];

  it.each(acceptedFiles)('accepts %s, counted right, stored unchanged', async (name, content, endpoint, total) => {
    const fileId = await uploaded(content);
    const before = await keysUnder(client, redis.prefix);
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint, completion_window: '24h' });
    record('JSONL file (POST /v1/batches)', name, response.status, response.body, sameKeys(before, await keysUnder(client, redis.prefix)));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ request_counts: { total } });
    // Compared as bytes: Response.text() would drop a leading BOM.
    const stored = await fetch(`${api.url}/v1/files/${fileId}/content`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(Buffer.from(await stored.arrayBuffer()).toString('utf8')).toBe(content);
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
    ['online: bad temperature', '/v1/completions', { model: 'falcon', prompt: 'x', temperature: -1 }, 400, ['temperature']],
    ['online: chat without messages', '/v1/chat/completions', { model: 'falcon', messages: [] }, 400, ['messages']],
    ['online: prompt too long', '/v1/completions', { model: 'falcon', prompt: longPrompt.slice(0, 7000), max_tokens: 2000 }, 400, ['prompt']],
    ['online: completion without model', '/v1/completions', { prompt: 'x', max_tokens: 1 }, 400, ['model: is required']],
    ['online: chat without model', '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }, 400, ['model: is required']],
    // wrong types, one per top-level field of the native body
    ['native: prompts a string, not a list', '/batches', { prompts: 'a' }, 400, ['prompts']],
    ['native: template a number', '/batches', { template: 7, rows: [{ q: 1 }] }, 400, ['template']],
    ['native: rows an object, not a list', '/batches', { template: 'Q: {q}', rows: { q: 1 } }, 400, ['rows']],
    ['native: row value an object', '/batches', { template: 'Q: {q}', rows: [{ q: { deep: 1 } }] }, 400, ['rows[0].q']],
    ['native: metadata a string', '/batches', { prompts: ['a'], metadata: 'job' }, 400, ['metadata']],
    ['native: completion_window a number', '/batches', { prompts: ['a'], completion_window: 24 }, 400, ['completion_window']],
    ['native: max_new_tokens a string', '/batches', { prompts: ['a'], max_new_tokens: '4' }, 400, ['max_new_tokens']],
    ['native: do_sample a string', '/batches', { prompts: ['a'], do_sample: 'yes' }, 400, ['do_sample']],
    ['native: temperature a string', '/batches', { prompts: ['a'], temperature: 'hot' }, 400, ['temperature']],
    ['native: top_k not an integer', '/batches', { prompts: ['a'], top_k: 1.5 }, 400, ['top_k']],
    ['native: top_p a string', '/batches', { prompts: ['a'], top_p: '0.9' }, 400, ['top_p']],
    ['native: repetition_penalty a list', '/batches', { prompts: ['a'], repetition_penalty: [1.1] }, 400, ['repetition_penalty']],
    ['native: num_return_sequences a string', '/batches', { prompts: ['a'], num_return_sequences: '2' }, 400, ['num_return_sequences']],
    ['native: seed a string', '/batches', { prompts: ['a'], seed: 'abc' }, 400, ['seed']],
    ['native: stop a string, not a list', '/batches', { prompts: ['a'], stop: '\n' }, 400, ['stop']],
    ['native: return_full_text a number', '/batches', { prompts: ['a'], return_full_text: 1 }, 400, ['return_full_text']],
    ['native: ignore_eos a string', '/batches', { prompts: ['a'], ignore_eos: 'true' }, 400, ['ignore_eos']],
    ['native: truncate null', '/batches', { prompts: ['a'], truncate: null }, 400, ['truncate']],
    ['native: body a list', '/batches', ['a', 'b'], 400, []],
    // huge values
    ['native: max_new_tokens 1e12', '/batches', { prompts: ['a'], max_new_tokens: 1e12 }, 400, ['max_new_tokens']],
    ['native: temperature 1e400 (Infinity once parsed)', '/batches', '{"prompts": ["a"], "do_sample": true, "temperature": 1e400}', 400, ['temperature']],
    ['native: top_k 1e308', '/batches', { prompts: ['a'], do_sample: true, top_k: 1e308 }, 400, ['top_k']],
    ['native: metadata nested 1,000 levels deep', '/batches', { prompts: ['a'], metadata: nested(1000) }, 400, ['metadata.a']],
    ['openai: metadata nested 1,000 levels deep', '/v1/batches', { input_file_id: 'file-x', endpoint: '/v1/completions', completion_window: '24h', metadata: nested(1000) }, 400, ['metadata.a']],
    ['openai: metadata value over 512 characters', '/v1/batches', { input_file_id: 'file-x', endpoint: '/v1/completions', completion_window: '24h', metadata: { k: 'v'.repeat(513) } }, 400, ['metadata.k']],
    ['openai: input_file_id a number', '/v1/batches', { input_file_id: 42, endpoint: '/v1/completions', completion_window: '24h' }, 400, ['input_file_id']],
    ['online: max_tokens 1e12', '/v1/completions', { model: 'falcon', prompt: 'x', max_tokens: 1e12 }, 400, ['max_tokens']],
    // unicode edge cases
    ['native: lone surrogate \\ud800 escaped in a prompt', '/batches', '{"prompts": ["ok", "bad \\ud800"]}', 400, ['prompts[1]', 'surrogate']],
    ['native: lone surrogate in a template row', '/batches', '{"template": "Q: {q}", "rows": [{"q": "\\udfff"}]}', 400, ['rows[0].q', 'surrogate']],
    ['native: lone surrogate in a metadata value', '/batches', '{"prompts": ["a"], "metadata": {"k": "\\ud800"}}', 400, ['metadata.k', 'surrogate']],
    ['online: lone surrogate in a prompt', '/v1/completions', '{"model": "falcon", "prompt": "\\ud83d", "max_tokens": 1}', 400, ['prompt', 'surrogate']],
    ['native: raw NUL byte in the JSON body', '/batches', '{"prompts": ["a\u0000b"]}', 400, ['could not be parsed']],
  ];

  it.each(requestCases)('%s', async (name, path, body, status, parts) => {
    const before = await keysUnder(client, redis.prefix);
    const response = await post(path, body);
    const after = await keysUnder(client, redis.prefix);
    record(`JSON body (POST ${path})`, name, response.status, response.body, sameKeys(before, after));
    expect(response.status).toBe(status);
    for (const part of parts) expect(response.body.error?.message).toContain(part);
    expect(after).toEqual(before);
  });

  it('accepts a 1e308 temperature in a native batch (TGI semantics: any positive temperature; sampling becomes uniform)', async () => {
    const before = await keysUnder(client, redis.prefix);
    const response = await post('/batches', { prompts: ['a'], do_sample: true, temperature: 1e308, max_new_tokens: 2 });
    record('JSON body (POST /batches)', 'native: temperature 1e308 with do_sample', response.status, response.body, sameKeys(before, await keysUnder(client, redis.prefix)));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ request_counts: { total: 1 } });
  });

  it('accepts emoji, RTL and escaped NUL prompts in a native batch, counted right', async () => {
    const prompts = ['👩‍👩‍👧‍👦 🇺🇳', 'مرحبا بالعالم', 'שלום', 'a\u0000b'];
    const before = await keysUnder(client, redis.prefix);
    const response = await post('/batches', { prompts, max_new_tokens: 2, metadata: { label: '✓ ünïcödé' } });
    record('JSON body (POST /batches)', 'native: emoji, RTL and escaped NUL prompts', response.status, response.body, sameKeys(before, await keysUnder(client, redis.prefix)));
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ request_counts: { total: 4 }, metadata: { label: '✓ ünïcödé' } });
  });

  it('refuses an upload over FALCONQ_MAX_FILE_BYTES with 413 and stores nothing', async () => {
    const before = await keysUnder(client, redis.prefix);
    const response = await uploadFile(api.url, KEY, jsonl(Array.from({ length: 2000 }, (_, i) => ok(`id-${i}`))));
    const body = (await response.json()) as { error: { message: string } };
    const after = await keysUnder(client, redis.prefix);
    record('upload (POST /v1/files)', 'file over FALCONQ_MAX_FILE_BYTES (2,000 lines, 64 KiB limit)', response.status, body, sameKeys(before, after));
    expect(response.status).toBe(413);
    expect(body.error.message).toContain('FALCONQ_MAX_FILE_BYTES');
    expect(after).toEqual(before);
  });

  it('refuses an upload that is not valid UTF-8, naming the file, and stores nothing', async () => {
    const bytes = Buffer.concat([Buffer.from('{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "falcon", "prompt": "'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}}\n')]);
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set('file', new Blob([bytes], { type: 'application/jsonl' }), 'input.jsonl');
    const before = await keysUnder(client, redis.prefix);
    const response = await fetch(`${api.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEY}` } });
    const body = (await response.json()) as { error: { message: string; param: string } };
    const after = await keysUnder(client, redis.prefix);
    record('upload (POST /v1/files)', 'invalid UTF-8 bytes (C3 28 FF) in a line', response.status, body, sameKeys(before, after));
    expect(response.status).toBe(400);
    expect(body.error).toMatchObject({ param: 'file' });
    expect(body.error.message).toContain('UTF-8');
    expect(after).toEqual(before);
  });

  it('refuses an upload with another purpose or without a file', async () => {
    const before = await keysUnder(client, redis.prefix);
    const wrongPurpose = await uploadFile(api.url, KEY, jsonl([ok('a')]), 'fine-tune');
    const wrongPurposeBody = (await wrongPurpose.json()) as { error: { message: string } };
    record('upload (POST /v1/files)', 'purpose "fine-tune"', wrongPurpose.status, wrongPurposeBody, sameKeys(before, await keysUnder(client, redis.prefix)));
    expect(wrongPurpose.status).toBe(400);
    expect(wrongPurposeBody.error.message).toContain('purpose');
    const form = new FormData();
    form.set('purpose', 'batch');
    const noFile = await fetch(`${api.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEY}` } });
    record('upload (POST /v1/files)', 'no file field', noFile.status, await noFile.json(), sameKeys(before, await keysUnder(client, redis.prefix)));
    expect(noFile.status).toBe(400);
  });

  it('accepts a valid batch (the cases above fail for their own reason only)', async () => {
    const fileId = await uploaded(jsonl([ok('a'), line('b', { prompt: 'y', temperature: 0.7, top_p: 0.9, top_k: 20, seed: 3, stop: ['\n'] })]));
    const response = await post('/v1/batches', { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', metadata: { job: 'x' } });
    record('JSONL file (POST /v1/batches)', 'valid batch (positive control)', response.status, response.body, false);
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({ object: 'batch', status: 'in_progress', request_counts: { total: 2, completed: 0, failed: 0 }, metadata: { job: 'x' } });
    const native = await post('/batches', { template: "Question: {question}\nAnswer: Let's think step by step.", rows: [{ question: 'a' }, { question: 'b' }], max_new_tokens: 4 });
    record('JSON body (POST /batches)', 'valid native template batch (positive control)', native.status, native.body, false);
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
