// The whole service: the api process, two worker processes, a private Redis and the tiny model, driven over HTTP
// the way users do (OpenAI-compatible JSONL batches, the native template endpoint, SSE, cancel).
import { jsonl, startApi, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { QueueHarness, sleep } from '../support/queue-harness';

jest.setTimeout(120_000);

interface BatchView {
  id: string;
  status: string;
  request_counts: { total: number; completed: number; failed: number };
  output_file_id: string | null;
  error_file_id: string | null;
}

describe('full flow: api + 2 workers + Redis + tiny model', () => {
  let redis: TestRedis;
  let api: ApiProcess;
  let harness: QueueHarness;
  let workers: WorkerProcess[] = [];
  let model: string;

  beforeAll(async () => {
    const modelDir = await tinyModelDir();
    redis = await startTestRedis();
    harness = QueueHarness.open(redis.url, redis.prefix);
    const options = { redisUrl: redis.url, prefix: redis.prefix, modelDir };
    [api, ...workers] = await Promise.all([startApi(options), startWorker({ ...options, slots: 4 }), startWorker({ ...options, slots: 4 })]);
    model = ((await (await fetch(`${api.url}/v1/models`)).json()) as { data: Array<{ id: string }> }).data[0].id;
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.kill()));
    await api?.stop();
    await harness?.close();
    await redis?.stop();
  });

  const getJson = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${api.url}${path}`);
    expect(response.status).toBe(200);
    return (await response.json()) as T;
  };
  const postJson = async <T>(path: string, body: unknown): Promise<T> => {
    const response = await fetch(`${api.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`POST ${path}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  };
  const waitFinal = async (path: string, timeoutMs = 60_000): Promise<BatchView> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const batch = await getJson<BatchView>(path);
      if (['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) return batch;
      if (Date.now() > deadline) throw new Error(`${path} still ${batch.status} after ${timeoutMs} ms`);
      await sleep(100);
    }
  };

  it('an OpenAI JSONL batch completes with one output line per request, right custom_ids and counts, shared by both workers', async () => {
    const total = 24;
    const lines = Array.from({ length: total }, (_, i) => ({
      custom_id: `task-${i}`, method: 'POST', url: '/v1/completions', body: { model, prompt: `Say ${i}:`, max_tokens: 4 },
    }));
    const uploaded = await uploadFile(api.url, null, jsonl(lines));
    expect(uploaded.status).toBe(200);
    const file = (await uploaded.json()) as { id: string };
    const created = await postJson<BatchView>('/v1/batches', { input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h' });
    const batch = await waitFinal(`/v1/batches/${created.id}`);

    expect(batch.status).toBe('completed');
    expect(batch.request_counts).toEqual({ total, completed: total, failed: 0 });
    const output = await (await fetch(`${api.url}/v1/files/${batch.output_file_id}/content`)).text();
    const outputLines = output.trim().split('\n').map((line) => JSON.parse(line) as { custom_id: string; response: { status_code: number; body: { choices: Array<{ text: string }> } } });
    expect(outputLines).toHaveLength(total);
    expect(outputLines.map((l) => l.custom_id).sort()).toEqual(lines.map((l) => l.custom_id).sort());
    for (const line of outputLines) {
      expect(line.response.status_code).toBe(200);
      expect(typeof line.response.body.choices[0].text).toBe('string');
    }
    // Both workers took part, and no prompt was generated twice.
    const results = await harness.results(created.id, total);
    expect(new Set(results.map((r) => r?.workerId))).toEqual(new Set(workers.map((w) => w.workerId)));
    expect(results.every((r) => r?.attempts === 1)).toBe(true);
    expect(workers.map((w) => w.output()).join('')).not.toContain('duplicate result ignored');
  });

  it('the native template endpoint renders each row and returns results in order', async () => {
    const rows = [{ question: 'Why is the sky blue?' }, { question: 'What is 2+2?' }, { question: 'Name a colour.' }];
    const created = await postJson<BatchView>('/batches', { template: 'Question: {question}\nAnswer:', rows, max_new_tokens: 3 });
    const batch = await waitFinal(`/batches/${created.id}`);
    expect(batch).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } });
    const results = await getJson<{ data: Array<{ index: number; custom_id: string; status: string }> }>(`/batches/${created.id}/results`);
    expect(results.data.map((r) => [r.index, r.status])).toEqual([[0, 'succeeded'], [1, 'succeeded'], [2, 'succeeded']]);
  });

  it('a template batch (stored as its template once and each row) runs the same prompts as the rendered list', async () => {
    // The template is longer than the row fields it names, so each item stores its row, not its prompt.
    // A repeated placeholder, a number, and a field the template does not use.
    const rows = [{ q: 'Why is the sky blue?', n: 1, unused: 'x'.repeat(100) }, { q: 'What is 2+2?', n: 2 }, { q: 'Name a colour.', n: 3 }];
    const template = 'Answer the question below in a few words, then stop.\nQ{n}: {q}\nAgain: {q}\nA:';
    const prompts = rows.map((row) => `Answer the question below in a few words, then stop.\nQ${row.n}: ${row.q}\nAgain: ${row.q}\nA:`);
    const params = { max_new_tokens: 4, ignore_eos: true, return_full_text: true };
    const fromTemplate = await postJson<BatchView>('/batches', { template, rows, ...params });
    const fromList = await postJson<BatchView>('/batches', { prompts, ...params });
    const texts = async (id: string) => {
      expect(await waitFinal(`/batches/${id}`)).toMatchObject({ status: 'completed', request_counts: { total: 3, completed: 3, failed: 0 } });
      return (await getJson<{ data: Array<{ text: string }> }>(`/batches/${id}/results`)).data.map((r) => r.text);
    };
    expect((await harness.store.batches.storedItems(fromTemplate.id, [0]))[0]).toMatchObject({ row: { q: rows[0].q, n: 1 }, templateId: expect.any(String) });
    const templated = await texts(fromTemplate.id);
    expect(templated).toEqual(await texts(fromList.id));
    templated.forEach((text, i) => expect(text.startsWith(prompts[i])).toBe(true));
  });

  it('SSE events arrive in order and end with the final status', async () => {
    const total = 12;
    const created = await postJson<BatchView>('/batches', { prompts: Array.from({ length: total }, (_, i) => `Count ${i}`), max_new_tokens: 6, ignore_eos: true });
    const response = await fetch(`${api.url}/batches/${created.id}/events`);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const body = await response.text(); // the server ends the stream after the final status
    const events = body.split('\n\n').filter((chunk) => chunk.startsWith('event:')).map((chunk) => JSON.parse(chunk.split('\ndata: ')[1]) as { type: string; status?: string; counts?: { completed: number }; index?: number });
    const last = events[events.length - 1];
    expect(last).toMatchObject({ type: 'status', status: 'completed' });
    const completedCounts = events.filter((e) => e.counts).map((e) => e.counts!.completed);
    expect(completedCounts).toEqual([...completedCounts].sort((a, b) => a - b));
    const items = events.filter((e) => e.type === 'item').map((e) => e.index);
    expect(new Set(items).size).toBe(items.length);
    expect(completedCounts[completedCounts.length - 1]).toBe(total);
  });

  it('an online streamed completion arrives as text deltas that add up to the non-streamed text', async () => {
    const body = { model, prompt: 'Once upon a time', max_tokens: 12, ignore_eos: true, seed: 1 };
    const plain = await postJson<{ choices: Array<{ text: string }> }>('/v1/completions', body);
    const response = await fetch(`${api.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const chunks = (await response.text()).split('\n\n').filter((c) => c.startsWith('data: ')).map((c) => c.slice(6));
    expect(chunks[chunks.length - 1]).toBe('[DONE]');
    const texts = chunks.slice(0, -1).map((c) => (JSON.parse(c) as { choices: Array<{ text?: string }> }).choices[0]?.text ?? '');
    expect(texts.filter(Boolean).length).toBeGreaterThan(1); // several deltas, not one final blob
    expect(texts.join('')).toBe(plain.choices[0].text);
  });

  it('cancel mid-batch stops the work and keeps the finished results', async () => {
    const total = 80;
    const created = await postJson<BatchView>('/batches', { prompts: Array.from({ length: total }, (_, i) => `Long story ${i}`), max_new_tokens: 48, ignore_eos: true });
    const deadline = Date.now() + 60_000;
    let before: BatchView;
    do {
      before = await getJson<BatchView>(`/batches/${created.id}`);
      await sleep(50);
    } while (before.request_counts.completed < 4 && Date.now() < deadline);
    const cancelled = await postJson<BatchView>(`/batches/${created.id}/cancel`, {});
    expect(['cancelling', 'cancelled']).toContain(cancelled.status);
    const batch = await waitFinal(`/batches/${created.id}`, 30_000);

    expect(batch.status).toBe('cancelled');
    const results = await harness.results(created.id, total);
    const succeeded = results.filter((r) => r?.status === 'succeeded').length;
    const stopped = results.filter((r) => r?.status === 'cancelled').length;
    expect(succeeded).toBeGreaterThanOrEqual(before.request_counts.completed);
    expect(succeeded).toBeLessThan(total);
    expect(succeeded + stopped).toBe(total);
    expect(batch.request_counts).toEqual({ total, completed: succeeded, failed: stopped });
    // Nothing of the cancelled batch is left in the queue.
    const counts = await harness.queue.counts();
    expect(counts.waiting + counts.prioritized + counts.active + counts.delayed).toBe(0);
  });
});
