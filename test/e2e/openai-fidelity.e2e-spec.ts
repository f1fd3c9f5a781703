// OpenAI fidelity, field by field, through the official `openai` client against the whole service (api process,
// worker process, tiny model, private Redis). docs/api.md's compatibility table names these tests.
import OpenAI, { toFile } from 'openai';
import { Redis } from 'ioredis';
import { jsonl, settledKeysUnder } from '../support/api-process';
import { startServiceStack, type ServiceStack } from '../support/service-stack';

const KEY = 'fidelity-client-key-1';
let stack: ServiceStack;
let client: OpenAI;
let redis: Redis;

beforeAll(async () => {
  stack = await startServiceStack(KEY);
  client = new OpenAI({ apiKey: KEY, baseURL: `${stack.api.url}/v1`, maxRetries: 0 });
  redis = new Redis(stack.redis.url);
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

const auth = { authorization: `Bearer ${KEY}` };

async function api<T>(path: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(`${stack.api.url}${path}`, { ...init, headers: { ...auth, 'content-type': 'application/json', ...init.headers } });
  return { status: response.status, body: (await response.json()) as T };
}

async function waitForFinal(batchId: string): Promise<OpenAI.Batches.Batch> {
  for (let i = 0; i < 600; i++) {
    const batch = await client.batches.retrieve(batchId);
    if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) return batch;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`batch ${batchId} did not finish`);
}

async function uploadLines(lines: unknown[], name = 'input.jsonl'): Promise<string> {
  return (await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), name), purpose: 'batch' })).id;
}

const completionLine = (customId: string, body: Record<string, unknown>) => ({ custom_id: customId, method: 'POST', url: '/v1/completions', body: { model: 'falcon', ...body } });

describe('OpenAI fidelity: model', () => {
  it('serves the model under its id and its aliases, and refuses an unknown model with 404 model_not_found', async () => {
    const [served] = (await client.models.list()).data;
    expect((await client.models.retrieve('falcon')).id).toBe(served.id);
    expect((await client.models.retrieve(served.id)).id).toBe(served.id);
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Hi', max_tokens: 2, temperature: 0 });
    expect(completion.model).toBe(served.id);
    await expect(client.completions.create({ model: 'gpt-4', prompt: 'Hi', max_tokens: 2 }))
      .rejects.toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
    await expect(client.models.retrieve('gpt-4')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('requires model, as OpenAI does: a request without it is a 400 naming model, a batch line without it fails the batch naming body.model', async () => {
    // The client's types require model; a caller that leaves it out (plain JavaScript, a cast) reaches the server.
    const withoutModel = <T>(body: Record<string, unknown>) => body as unknown as T;
    const completion = client.completions.create(withoutModel<OpenAI.CompletionCreateParamsNonStreaming>({ prompt: 'Hi', max_tokens: 2 }));
    await expect(completion).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(completion).rejects.toMatchObject({ status: 400, param: 'model', type: 'invalid_request_error', message: expect.stringContaining('model: is required') });
    const chat = client.chat.completions.create(withoutModel<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming>({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }));
    await expect(chat).rejects.toMatchObject({ status: 400, param: 'model', type: 'invalid_request_error' });
    const fileId = await uploadLines([completionLine('named', { prompt: 'x', max_tokens: 2 }), { custom_id: 'unnamed', method: 'POST', url: '/v1/completions', body: { prompt: 'x', max_tokens: 2 } }]);
    const batch = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' });
    expect(batch.status).toBe('failed');
    expect(batch.errors?.data).toEqual([{ code: 'invalid_batch_line', line: 2, param: 'body.model', message: expect.stringContaining('is required') }]);
  });
});

describe('OpenAI fidelity: parameters', () => {
  it('refuses unknown keys and unsupported parameters with a 400 naming them', async () => {
    const cases: [Record<string, unknown>, string, string][] = [
      [{ prompt: 'x', min_lenght: 3 }, 'min_lenght', 'unrecognized'],
      [{ prompt: 'x', min_p: 0.1 }, 'min_p', 'not supported'],
      [{ prompt: 'x', min_tokens: 4 }, 'min_tokens', 'not supported'],
      [{ prompt: 'x', stream_options: { include_usage: true, other: 1 } }, 'stream_options.other', 'unrecognized'],
    ];
    for (const [body, param, reason] of cases) {
      const response = await api<{ error: { param: string; message: string } }>('/v1/completions', { method: 'POST', body: JSON.stringify({ model: 'falcon', ...body }) });
      expect(response.status).toBe(400);
      expect(response.body.error).toMatchObject({ param, message: expect.stringContaining(reason) });
    }
    const chat: [Record<string, unknown>, string][] = [
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
      [{ tool_choice: 'auto' }, 'tool_choice'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ top_logprobs: 2 }, 'top_logprobs'],
    ];
    for (const [extra, param] of chat) {
      await expect(client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, ...extra } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming))
        .rejects.toMatchObject({ status: 400, param });
    }
    // Asking for nothing is not refused.
    const harmless = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, tools: [], tool_choice: 'none', response_format: { type: 'text' } });
    expect(harmless.choices).toHaveLength(1);
  });

  it('answers a list of prompts, and prompts of token ids, one choice per prompt in order, usage summed', async () => {
    const one = async (prompt: string | number[]) => client.completions.create({ model: 'falcon', prompt, max_tokens: 4, temperature: 0 });
    const [a, b, ids] = [await one('Hello'), await one('World'), await one([5, 6, 7])];
    const both = await client.completions.create({ model: 'falcon', prompt: ['Hello', 'World'], max_tokens: 4, temperature: 0 });
    expect(both.choices.map((c) => [c.index, c.text])).toEqual([[0, a.choices[0].text], [1, b.choices[0].text]]);
    expect(both.usage).toEqual({
      prompt_tokens: a.usage!.prompt_tokens + b.usage!.prompt_tokens,
      completion_tokens: a.usage!.completion_tokens + b.usage!.completion_tokens,
      total_tokens: a.usage!.total_tokens + b.usage!.total_tokens,
    });
    expect(ids.usage?.prompt_tokens).toBe(3);
    const idLists = await client.completions.create({ model: 'falcon', prompt: [[5, 6, 7], [8, 9]], max_tokens: 4, temperature: 0 });
    expect(idLists.choices.map((c) => c.text)[0]).toBe(ids.choices[0].text);
    expect(idLists.usage?.prompt_tokens).toBe(5);
  });

  it('gives n greedy copies for n > 1 with temperature 0, as OpenAI does', async () => {
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Hello', max_tokens: 5, temperature: 0, n: 3 });
    const single = await client.completions.create({ model: 'falcon', prompt: 'Hello', max_tokens: 5, temperature: 0 });
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(completion.choices.map((c) => c.text))).toEqual(new Set([single.choices[0].text]));
  });

  it('answers echo with max_tokens 0 with the prompt itself and no completion tokens', async () => {
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Score this sentence.', max_tokens: 0, echo: true });
    expect(completion.choices).toEqual([expect.objectContaining({ index: 0, text: 'Score this sentence.', finish_reason: 'length' })]);
    expect(completion.usage).toMatchObject({ completion_tokens: 0, total_tokens: completion.usage!.prompt_tokens });
    expect(completion.usage!.prompt_tokens).toBeGreaterThan(0);
    await expect(client.completions.create({ model: 'falcon', prompt: 'x', max_tokens: 0 })).rejects.toMatchObject({ status: 400, param: 'max_tokens' });
  });
});

describe('OpenAI fidelity: prompt logprobs (echo with logprobs)', () => {
  const PROMPT_IDS = [40, 300, 77, 120, 5, 260];
  type LegacyLogprobs = { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] };

  it('scores a prompt with max_tokens 0: one entry per prompt token, the first null, each position\'s alternatives those of a completion of its prefix', async () => {
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Score this sentence.', max_tokens: 0, echo: true, logprobs: 2 });
    const [choice] = completion.choices;
    expect(choice).toMatchObject({ index: 0, text: 'Score this sentence.', finish_reason: 'length' });
    expect(completion.usage).toMatchObject({ completion_tokens: 0, total_tokens: completion.usage!.prompt_tokens });
    const logprobs = choice.logprobs as unknown as LegacyLogprobs;
    expect(logprobs.tokens).toHaveLength(completion.usage!.prompt_tokens);
    expect(logprobs.tokens.join('')).toBe('Score this sentence.');
    expect(logprobs.token_logprobs[0]).toBeNull();
    expect(logprobs.top_logprobs[0]).toBeNull();
    expect(logprobs.token_logprobs.slice(1).every((value) => typeof value === 'number' && value <= 0)).toBe(true);
    expect(logprobs.text_offset).toEqual(logprobs.tokens.map((_, i) => logprobs.tokens.slice(0, i).join('').length));

    // Token ids: each prompt token's entry equals what a completion of its prefix reports for its first token's step.
    const scored = (await client.completions.create({ model: 'falcon', prompt: PROMPT_IDS, max_tokens: 0, echo: true, logprobs: 3 })).choices[0].logprobs as unknown as LegacyLogprobs;
    expect(scored.tokens).toHaveLength(PROMPT_IDS.length);
    for (const at of [1, 3, PROMPT_IDS.length - 1]) {
      const next = (await client.completions.create({ model: 'falcon', prompt: PROMPT_IDS.slice(0, at), max_tokens: 1, temperature: 0, logprobs: 3 })).choices[0].logprobs as unknown as LegacyLogprobs;
      const expected = next.top_logprobs[0]!;
      expect(Object.keys(scored.top_logprobs[at]!)).toEqual(Object.keys(expected));
      for (const [text, value] of Object.entries(expected)) expect(scored.top_logprobs[at]![text]).toBeCloseTo(value, 4);
      // (The scored token's own value is checked by id against the reference model in test/model/logprobs-reference.spec.ts:
      // here tokens are keyed by text, and pieces of a character all read U+FFFD.)
      expect(scored.token_logprobs[at]).toBeLessThanOrEqual(Math.max(...Object.values(expected)) + 1e-6);
    }
  });

  it('with max_tokens > 0 gives the prompt\'s entries, then the generated tokens\' as without echo', async () => {
    const body = { model: 'falcon', prompt: PROMPT_IDS, max_tokens: 4, temperature: 0, ignore_eos: true, logprobs: 2 };
    const echoed = await client.completions.create({ ...body, echo: true });
    const plain = await client.completions.create(body);
    const all = echoed.choices[0].logprobs as unknown as LegacyLogprobs;
    const generated = plain.choices[0].logprobs as unknown as LegacyLogprobs;
    expect(echoed.choices[0].text.endsWith(plain.choices[0].text)).toBe(true);
    expect(all.tokens).toHaveLength(PROMPT_IDS.length + 4);
    expect(all.tokens.slice(PROMPT_IDS.length)).toEqual(generated.tokens);
    all.token_logprobs.slice(PROMPT_IDS.length).forEach((value, i) => expect(value).toBeCloseTo(generated.token_logprobs[i]!, 4));
    expect(all.text_offset[PROMPT_IDS.length]).toBe(all.tokens.slice(0, PROMPT_IDS.length).join('').length);
  });

  it('streamed, the prompt\'s entries ride on the finishing chunk with the prompt\'s text', async () => {
    const stream = await client.completions.create({ model: 'falcon', prompt: PROMPT_IDS, max_tokens: 0, echo: true, logprobs: 1, stream: true });
    const chunks: OpenAI.Completions.Completion[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const finishing = chunks.find((chunk) => chunk.choices[0]?.finish_reason)!;
    const logprobs = finishing.choices[0].logprobs as unknown as LegacyLogprobs;
    expect(logprobs.tokens).toHaveLength(PROMPT_IDS.length);
    expect(logprobs.token_logprobs[0]).toBeNull();
    const whole = await client.completions.create({ model: 'falcon', prompt: PROMPT_IDS, max_tokens: 0, echo: true, logprobs: 1 });
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('')).toBe(whole.choices[0].text);
    expect(logprobs).toEqual(whole.choices[0].logprobs);
  });

  it('streams echo with generated tokens: the prompt first, then the generated text, as the whole answer', async () => {
    const body = { model: 'falcon', prompt: 'Hello', max_tokens: 4, temperature: 0, ignore_eos: true, echo: true };
    const whole = await client.completions.create({ ...body, logprobs: 1 });
    const stream = await client.completions.create({ ...body, logprobs: 1, stream: true });
    const chunks: OpenAI.Completions.Completion[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0].choices[0].text.startsWith('Hello')).toBe(true);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('')).toBe(whole.choices[0].text);
    expect(chunks.find((chunk) => chunk.choices[0]?.finish_reason)!.choices[0].logprobs).toEqual(whole.choices[0].logprobs);
  });

  it('scores the prompt of a batch line with echo, logprobs and max_tokens 0', async () => {
    const fileId = await uploadLines([completionLine('score', { prompt: PROMPT_IDS, max_tokens: 0, echo: true, logprobs: 1 })]);
    const batch = await waitForFinal((await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' })).id);
    expect(batch.status).toBe('completed');
    const [line] = (await (await client.files.content(batch.output_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l) as { response: { body: { choices: { logprobs: LegacyLogprobs }[]; usage: { completion_tokens: number } } } });
    const { logprobs } = line.response.body.choices[0];
    expect(logprobs.tokens).toHaveLength(PROMPT_IDS.length);
    expect(logprobs.token_logprobs[0]).toBeNull();
    expect(logprobs.token_logprobs.slice(1).every((value) => typeof value === 'number')).toBe(true);
    expect(line.response.body.usage.completion_tokens).toBe(0);
  });

  it('chat has no prompt logprobs: echo is not a chat parameter', async () => {
    await expect(client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, logprobs: true, echo: true } as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming))
      .rejects.toMatchObject({ status: 400, param: 'echo' });
  });
});

describe('OpenAI fidelity: logprobs', () => {
  it('returns completions logprobs: one entry per generated token, the greedy token the most likely, alternatives by likelihood', async () => {
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Hello', max_tokens: 6, temperature: 0, logprobs: 3 });
    const logprobs = completion.choices[0].logprobs!;
    expect(logprobs.tokens).toHaveLength(completion.usage!.completion_tokens);
    expect(logprobs.token_logprobs).toHaveLength(logprobs.tokens!.length);
    logprobs.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top);
      expect(values.length).toBeGreaterThanOrEqual(1); // 3 alternatives; fewer when two tokens decode to the same text
      expect(values.length).toBeLessThanOrEqual(3);
      expect(values.every((v) => v <= 0)).toBe(true);
      expect(values.reduce((sum, v) => sum + Math.exp(v), 0)).toBeLessThanOrEqual(1 + 1e-6);
      // Greedy: the chosen token is the most likely one.
      expect(logprobs.token_logprobs![i]).toBeCloseTo(Math.max(...values), 5);
    });
    expect(logprobs.text_offset).toHaveLength(logprobs.tokens!.length);
  });

  it('returns chat logprobs with top_logprobs, also when streamed (on each choice\'s finishing chunk)', async () => {
    const chat = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2 });
    const content = chat.choices[0].logprobs!.content!;
    expect(content).toHaveLength(chat.usage!.completion_tokens);
    for (const entry of content) {
      expect(entry.top_logprobs).toHaveLength(2);
      expect(entry.top_logprobs[0].logprob).toBeGreaterThanOrEqual(entry.top_logprobs[1].logprob);
      expect(entry.logprob).toBeCloseTo(entry.top_logprobs[0].logprob, 5);
      expect(entry.bytes).toEqual(Array.from(Buffer.from(entry.token, 'utf8')));
    }
    const stream = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2, stream: true });
    const streamed: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed.map((e) => [e.token, e.logprob])).toEqual(content.map((e) => [e.token, e.logprob]));
    const plain = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
  });
});

describe('OpenAI fidelity: streaming', () => {
  it('sends usage in a last chunk with stream_options.include_usage, and the chat role only in each choice\'s first chunk', async () => {
    const plain = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, n: 2 });
    const stream = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, n: 2, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(plain.usage);
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    for (const index of [0, 1]) {
      const own = chunks.flatMap((chunk) => chunk.choices.filter((c) => c.index === index));
      expect(own.filter((c) => c.delta.role !== undefined).map((c) => c.delta.role)).toEqual(['assistant']);
      expect(own[0].delta.role).toBe('assistant');
      expect(own.map((c) => c.delta.content ?? '').join('')).toBe(plain.choices[index].message.content);
    }

    const completionStream = await client.completions.create({ model: 'falcon', prompt: ['Hello', 'World'], max_tokens: 3, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const texts = ['', ''];
    let usage: OpenAI.Completions.CompletionUsage | null | undefined;
    for await (const chunk of completionStream) {
      for (const choice of chunk.choices) texts[choice.index] += choice.text;
      usage = chunk.usage ?? usage;
    }
    const both = await client.completions.create({ model: 'falcon', prompt: ['Hello', 'World'], max_tokens: 3, temperature: 0 });
    expect(texts).toEqual(both.choices.map((c) => c.text));
    expect(usage).toEqual(both.usage);
  });
});

describe('OpenAI fidelity: batches and files', () => {
  it('fails a batch whose lines are bad, with errors.data naming each line; nothing is enqueued and it has no error file', async () => {
    const fileId = await uploadLines([
      completionLine('good', { prompt: 'x', max_tokens: 2 }),
      completionLine('hot', { prompt: 'x', temperature: 7 }),
      completionLine('tools', { prompt: 'x', frequency_penalty: 1 }),
    ]);
    const jobsBefore = (await settledKeysUnder(redis, stack.redis.prefix)).filter((k) => k.includes(':generate:'));
    const batch = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' });
    expect(batch).toMatchObject({ status: 'failed', request_counts: { total: 0, completed: 0, failed: 0 }, output_file_id: null, error_file_id: null });
    expect(batch.failed_at).toEqual(expect.any(Number));
    expect(batch.errors?.data).toEqual([
      { code: 'invalid_batch_line', line: 2, param: 'body.temperature', message: expect.stringContaining('between 0 and 2') },
      { code: 'invalid_batch_line', line: 3, param: 'body.frequency_penalty', message: expect.stringContaining('not supported') },
    ]);
    expect(await client.batches.retrieve(batch.id)).toMatchObject({ status: 'failed', errors: batch.errors });
    expect((await settledKeysUnder(redis, stack.redis.prefix)).filter((k) => k.includes(':generate:'))).toEqual(jobsBefore);
    await expect(client.files.content(`file-${batch.id}-errors`)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('reports batch usage (input, output, total tokens), lists output files with expires_at, honours output_expires_after', async () => {
    const fileId = await uploadLines([completionLine('a', { prompt: 'Hello', max_tokens: 3, temperature: 0 }), completionLine('b', { prompt: 'World', max_tokens: 3, temperature: 0 })]);
    const created = await client.batches.create({
      input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', output_expires_after: { anchor: 'created_at', seconds: 7200 },
    });
    const done = await waitForFinal(created.id);
    expect(done.status).toBe('completed');
    const lines = (await (await client.files.content(done.output_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l) as { response: { body: { usage: { prompt_tokens: number; completion_tokens: number } } } });
    const input = lines.reduce((sum, l) => sum + l.response.body.usage.prompt_tokens, 0);
    const output = lines.reduce((sum, l) => sum + l.response.body.usage.completion_tokens, 0);
    expect(done.usage).toMatchObject({ input_tokens: input, output_tokens: output, total_tokens: input + output, input_tokens_details: { cached_tokens: 0 } });

    const outputFile = await client.files.retrieve(done.output_file_id!);
    expect(outputFile).toMatchObject({ purpose: 'batch_output', created_at: done.completed_at });
    expect(outputFile.expires_at).toBe(done.completed_at! + 7200);
    const uploaded = await client.files.retrieve(fileId);
    expect(uploaded.expires_at).toBe(uploaded.created_at + 30 * 24 * 3600);
    const listed = (await client.files.list()).data.map((f) => f.id);
    expect(listed).toEqual(expect.arrayContaining([fileId, done.output_file_id!]));
    const outputsOnly = (await client.files.list({ purpose: 'batch_output' })).data;
    expect(outputsOnly.every((f) => f.purpose === 'batch_output')).toBe(true);
    // A completed batch without failures has no error file.
    expect(done.error_file_id).toBeNull();
    await expect(client.files.content(`file-${done.id}-errors`)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('lists only OpenAI batches at /v1/batches; native results give seconds and total_tokens; rates freeze when a batch ends', async () => {
    const native = await api<{ id: string }>('/batches', { method: 'POST', body: JSON.stringify({ prompts: ['a', 'b'], max_new_tokens: 2 }) });
    const finished = await waitForFinal(native.body.id);
    const ids = [];
    for await (const batch of client.batches.list({ limit: 100 })) ids.push(batch.id);
    expect(ids).not.toContain(native.body.id);
    const results = await api<{ data: { finished_at: number; usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } }[] }>(`/batches/${native.body.id}/results`);
    for (const result of results.body.data) {
      expect(result.finished_at).toBeGreaterThanOrEqual(finished.in_progress_at!);
      expect(result.finished_at).toBeLessThanOrEqual(finished.completed_at!);
      expect(result.usage.total_tokens).toBe(result.usage.prompt_tokens + result.usage.completion_tokens);
    }
    const rateOf = async () => {
      const text = await (await fetch(`${stack.api.url}/batches/${native.body.id}/events`, { headers: auth })).text();
      return (JSON.parse(text.split('\n').find((l) => l.startsWith('data: '))!.slice(6)) as { itemsPerSecond: number }).itemsPerSecond;
    };
    const first = await rateOf();
    await new Promise((r) => setTimeout(r, 1100));
    expect(await rateOf()).toBe(first);
  });

  it('counts cancelled items as cancelled in falconq_items_total, not as failed', async () => {
    const scrape = async () => {
      const text = await (await fetch(`${stack.api.url}/metrics`, { headers: auth })).text();
      const value = (outcome: string) => Number(new RegExp(`falconq_items_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
      return { failed: value('failed'), cancelled: value('cancelled') };
    };
    const before = await scrape();
    const fileId = await uploadLines(Array.from({ length: 30 }, (_, i) => completionLine(`c${i}`, { prompt: `n${i}`, max_tokens: 64, ignore_eos: true, temperature: 0 })));
    const batch = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' });
    await client.batches.cancel(batch.id);
    const final = await waitForFinal(batch.id);
    const after = await scrape();
    expect(final.request_counts!.failed).toBeGreaterThan(0);
    expect(after.cancelled - before.cancelled).toBe(final.request_counts!.failed);
    expect(after.failed).toBe(before.failed);
  });
});

describe('falconq extensions: dry run and search', () => {
  it('dry-runs a file: counts, prompt tokens, lines over the context with their numbers, an estimate; nothing stored or enqueued', async () => {
    const long = 'word '.repeat(3000);
    const fileId = await uploadLines([
      completionLine('a', { prompt: 'Hello', max_tokens: 8 }),
      completionLine('b', { prompt: long, max_tokens: 8 }),
      completionLine('c', { prompt: 'x', temperature: 9 }),
      completionLine('d', { prompt: 'World', max_tokens: 4, n: 2, temperature: 0.5 }),
    ]);
    const hello = (await client.completions.create({ model: 'falcon', prompt: 'Hello', max_tokens: 1 })).usage!.prompt_tokens;
    const world = (await client.completions.create({ model: 'falcon', prompt: 'World', max_tokens: 1 })).usage!.prompt_tokens;
    const before = await settledKeysUnder(redis, stack.redis.prefix);
    const dry = await api<Record<string, unknown>>('/v1/batches', { method: 'POST', body: JSON.stringify({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', dry_run: true }) });
    expect(await settledKeysUnder(redis, stack.redis.prefix)).toEqual(before);
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({
      object: 'batch.dry_run', valid: false, request_counts: { total: 4, valid: 2, invalid: 2 }, lines_over_context: [2],
      usage: { input_tokens: hello + world, max_output_tokens: 8 + 4 * 2 },
      errors: { total: 2, data: [{ code: 'context_length_exceeded', line: 2, param: 'body.prompt' }, { code: 'invalid_batch_line', line: 3, param: 'body.temperature' }] },
      estimate: { workers: 1 },
    });
    const native = await api<Record<string, unknown>>('/batches', { method: 'POST', body: JSON.stringify({ prompts: ['Hello', long], max_new_tokens: 8, dry_run: true }) });
    expect(native.body).toMatchObject({ request_counts: { total: 2, valid: 1, invalid: 1 }, lines_over_context: [2], usage: { input_tokens: hello, max_output_tokens: 8 } });
    expect(await settledKeysUnder(redis, stack.redis.prefix)).toEqual(before);
  });

  it('searches a tenant\'s batches by status and metadata, and a batch\'s items by custom_id prefix', async () => {
    const tag = `run-${Date.now()}`;
    const fileId = await uploadLines(['user-1', 'user-2', 'admin-1', 'user-10'].map((id) => completionLine(id, { prompt: id, max_tokens: 2 })));
    const nightly = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', metadata: { job: 'nightly', tag } });
    const hourly = await client.batches.create({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h', metadata: { job: 'hourly', tag } });
    await waitForFinal(nightly.id);
    await waitForFinal(hourly.id);
    const search = async (query: string) => (await api<{ data: { id: string }[] }>(`/v1/batches?${query}`)).body.data.map((b) => b.id);
    expect(await search(`metadata[tag]=${tag}`)).toEqual([hourly.id, nightly.id]);
    expect(await search(`metadata[tag]=${tag}&metadata[job]=nightly&status=completed`)).toEqual([nightly.id]);
    expect(await search(`metadata[tag]=${tag}&status=failed,cancelled`)).toEqual([]);
    expect((await api('/v1/batches?status=done')).status).toBe(400);
    const items = await api<{ data: { custom_id: string; status: string; index: number }[]; has_more: boolean }>(`/batches/${nightly.id}/results?custom_id_prefix=user-&limit=2`);
    expect(items.body.data.map((r) => [r.index, r.custom_id, r.status])).toEqual([[0, 'user-1', 'succeeded'], [1, 'user-2', 'succeeded']]);
    expect(items.body.has_more).toBe(true);
  });
});
