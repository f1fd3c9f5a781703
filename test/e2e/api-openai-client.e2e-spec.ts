// The official `openai` client, pointed at falconq, works unchanged: files, batches, completions, chat (streamed).
// A real worker process generates with the tiny model.
import OpenAI, { toFile } from 'openai';
import { jsonl, type ApiProcess } from '../support/api-process';
import { startServiceStack, type ServiceStack } from '../support/service-stack';
import { readBatchEvents } from '../support/sse';

const KEY = 'openai-client-key-1';
let stack: ServiceStack;
let api: ApiProcess;
let client: OpenAI;

beforeAll(async () => {
  stack = await startServiceStack(KEY);
  api = stack.api;
  client = new OpenAI({ apiKey: KEY, baseURL: `${api.url}/v1`, maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function waitForFinal(batchId: string): Promise<OpenAI.Batches.Batch> {
  for (let i = 0; i < 300; i++) {
    const batch = await client.batches.retrieve(batchId);
    if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) return batch;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`batch ${batchId} did not finish`);
}

/** A batch's SSE stream to its end, as { event, data } (test/support/sse.ts reads the frames). */
async function readEvents(batchId: string): Promise<{ event: string; data: Record<string, unknown> }[]> {
  return (await readBatchEvents(api.url, KEY, batchId)).map(({ type, data }) => ({ event: type, data }));
}

describe('OpenAI client against falconq', () => {
  it('lists the served model', async () => {
    const models = await client.models.list();
    expect(models.data).toEqual([expect.objectContaining({ object: 'model', id: expect.any(String) })]);
  });

  it('runs a chat batch: upload, create, retrieve, list, output file in OpenAI batch format', async () => {
    const lines = ['a', 'b', 'c'].map((id, i) => ({
      custom_id: `req-${id}`, method: 'POST', url: '/v1/chat/completions',
      body: { model: 'falcon', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: `Question ${i}?` }], max_tokens: 4, temperature: 0 },
    }));
    const file = await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), 'chat.jsonl'), purpose: 'batch' });
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'chat.jsonl' });
    expect((await client.files.retrieve(file.id)).bytes).toBe(Buffer.byteLength(jsonl(lines)));

    const created = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { run: 'e2e' } });
    expect(created).toMatchObject({ object: 'batch', endpoint: '/v1/chat/completions', metadata: { run: 'e2e' }, request_counts: { total: 3 } });
    const events = await readEvents(created.id);
    expect(events[events.length - 1]).toMatchObject({ event: 'status', data: { status: 'completed', counts: { total: 3, completed: 3, failed: 0 } } });

    const done = await waitForFinal(created.id);
    expect(done).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 }, error_file_id: null });
    expect(done.completed_at).toEqual(expect.any(Number));
    const listed = await client.batches.list({ limit: 10 });
    expect(listed.data.map((b) => b.id)).toContain(created.id);

    const output = (await (await client.files.content(done.output_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(output.map((l) => l.custom_id)).toEqual(['req-a', 'req-b', 'req-c']);
    for (const line of output) {
      expect(line).toMatchObject({ id: expect.stringMatching(/^batch_req_/), error: null, response: { status_code: 200, body: { object: 'chat.completion' } } });
      expect(typeof line.response.body.choices[0].message.content).toBe('string');
      expect(line.response.body.usage.completion_tokens).toBeGreaterThan(0);
    }
  });

  it('streams live progress of a running native batch: snapshot, item events, throughput, final status, end', async () => {
    const created = await fetch(`${api.url}/batches`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ template: 'Question: {q}\nAnswer:', rows: Array.from({ length: 12 }, (_, i) => ({ q: `n${i}` })), max_new_tokens: 24, ignore_eos: true }),
    });
    const batchId = ((await created.json()) as { id: string }).id;
    const events = await readEvents(batchId);
    const snapshot = events[0];
    expect(snapshot.event).toBe('progress');
    const snapshotCounts = snapshot.data.counts as { completed: number; failed: number };
    const items = new Set(events.filter((e) => e.event === 'item').map((e) => e.data.customId));
    expect(items.size + snapshotCounts.completed + snapshotCounts.failed).toBeGreaterThanOrEqual(12);
    for (const progress of events.slice(1).filter((e) => e.event === 'progress')) {
      expect(progress.data).toMatchObject({ itemsPerSecond: expect.any(Number), tokensPerSecond: expect.any(Number) });
    }
    expect(events[events.length - 1]).toMatchObject({ event: 'status', data: { status: 'completed', counts: { total: 12, completed: 12, failed: 0 } } });
    const results = (await (await fetch(`${api.url}/batches/${batchId}/results?limit=12`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { data: { custom_id: string; status: string; usage: { completion_tokens: number } }[] };
    expect(results.data.map((r: { custom_id: string; status: string }) => [r.custom_id, r.status])).toEqual(Array.from({ length: 12 }, (_, i) => [`item-${i}`, 'succeeded']));
    expect(results.data[0].usage.completion_tokens).toBe(24);
  });

  it('cancels a batch', async () => {
    const lines = Array.from({ length: 40 }, (_, i) => ({ custom_id: `c${i}`, method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: `n${i}`, max_tokens: 64, ignore_eos: true, temperature: 0 } }));
    const file = await client.files.create({ file: await toFile(Buffer.from(jsonl(lines)), 'many.jsonl'), purpose: 'batch' });
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
    const cancelled = await client.batches.cancel(batch.id);
    expect(['cancelling', 'cancelled']).toContain(cancelled.status);
    const final = await waitForFinal(batch.id);
    expect(final.status).toBe('cancelled');
    const { completed, failed, total } = final.request_counts!;
    expect(completed + failed).toBe(total);
    expect(failed).toBeGreaterThan(0);
    const errors = (await (await client.files.content(final.error_file_id!)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(errors.length).toBe(failed);
    expect(errors[errors.length - 1]).toMatchObject({ response: null, error: { code: expect.stringMatching(/cancel/) } });
  });

  it('answers completions and streamed chat completions', async () => {
    const completion = await client.completions.create({ model: 'falcon', prompt: 'Hello', max_tokens: 5, temperature: 0 });
    expect(completion).toMatchObject({ object: 'text_completion', choices: [{ index: 0, text: expect.any(String) }] });
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);

    const chat = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0 });
    expect(chat.choices[0].message.role).toBe('assistant');

    const stream = await client.chat.completions.create({ model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    // Same prompt, greedy: the streamed text is the non-streamed one.
    expect(text).toBe(chat.choices[0].message.content);
    expect(finish).toEqual(chat.choices[0].finish_reason);
  });

  it('surfaces falconq errors as OpenAI errors', async () => {
    const empty = await client.files.create({ file: await toFile(Buffer.from('\n'), 'empty.jsonl'), purpose: 'batch' });
    await expect(client.batches.create({ input_file_id: empty.id, endpoint: '/v1/completions', completion_window: '24h' }))
      .rejects.toMatchObject({ status: 400, message: expect.stringContaining('no requests') });
    await expect(client.completions.create({ model: 'falcon', prompt: 'x', temperature: 9 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(client.batches.retrieve('batch_000000')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(new OpenAI({ apiKey: 'wrong-key-123', baseURL: `${api.url}/v1`, maxRetries: 0 }).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('reports health and Prometheus metrics with the worker seen', async () => {
    const health = await (await fetch(`${api.url}/health`)).json();
    expect(health).toMatchObject({ status: 'ok', redis: { status: 'up' }, workers: { alive: 1, ids: [stack.worker.workerId] } });
    const metrics = await (await fetch(`${api.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).text();
    expect(metrics).toMatch(/falconq_queue_jobs\{state="waiting"\} \d+/);
    expect(metrics).toMatch(/falconq_items_total\{outcome="succeeded"\} [1-9]/);
    expect(metrics).toMatch(/falconq_completion_tokens_total [1-9]/);
    expect(metrics).toContain(`falconq_worker_slots{worker="${stack.worker.workerId}"} 4`);
    expect(metrics).toMatch(new RegExp(`falconq_worker_prefill_share\\{worker="${stack.worker.workerId}"\\} [0-9.]+`));
    expect(metrics).toMatch(/falconq_http_request_duration_seconds_bucket\{.*route="\/v1\/batches\/:id"/);
    expect(metrics).toContain('falconq_online_request_duration_seconds');
  });
});
