// Figures for docs/reliability.md ("Hostile requests and outages"): what one client's heavy or malicious requests do to
// everyone else's, and what a Redis outage does to clients. Correctness is asserted; durations and sizes are printed
// and kept in .tmp/reliability/hardening.json (they depend on the machine).
// Run: npm run build && npx jest -c test/reliability/jest.config.cjs hardening
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { Redis } from 'ioredis';
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { readBatchEvents, type SseEvent } from '../support/sse';
import { reportFigures } from '../support/figures';

const KEY = 'hardening-bench-key-01';
const OUTAGE_MS = Number(process.env.FALCONQ_OUTAGE_MS ?? 20_000);
const OUTAGE_RUNS = Number(process.env.FALCONQ_OUTAGE_RUNS ?? 5);
const figures: Record<string, unknown> = {};

let redis: TestRedis;
let client: Redis;
let api: ApiProcess;
let worker: WorkerProcess;

const auth = { authorization: `Bearer ${KEY}` };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; ms: number; json: Record<string, any> }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const started = performance.now();
  const response = await fetch(`${api.url}${path}`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const json = (await response.json().catch(() => ({}))) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  return { status: response.status, ms: performance.now() - started, json };
}

function percentiles(samples: number[]): { n: number; p50: number; p99: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { n: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]) };
}

/**
 * The api's own event-loop delay while `load` ran (prom-client's monitorEventLoopDelay figures, which it resets at each
 * scrape of /metrics): what the api's loop did, apart from the test client's own stalls.
 */
async function eventLoopDuring<T>(load: () => Promise<T>): Promise<{ value: T; eventLoopDelayMs: { p50: number; p99: number; max: number } }> {
  const scrape = async () => (await (await fetch(`${api.url}/metrics`, { headers: auth })).text());
  await scrape();
  const value = await load();
  const text = await scrape();
  const seconds = (name: string) => Number(new RegExp(`^falconq_api_nodejs_eventloop_lag_${name}_seconds(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  const ms = (name: string) => Math.round(seconds(name) * 10000) / 10;
  return { value, eventLoopDelayMs: { p50: ms('p50'), p99: ms('p99'), max: ms('max') } };
}

/** /health answered one request at a time while `load` runs; the latencies of those answers. */
async function healthDuring(load: () => Promise<unknown>): Promise<number[]> {
  let done = false;
  const running = load().finally(() => (done = true));
  const samples: number[] = [];
  while (!done) {
    const started = performance.now();
    const response = await fetch(`${api.url}/health`, { headers: auth });
    await response.arrayBuffer();
    samples.push(performance.now() - started);
  }
  await running;
  return samples;
}

async function usedMemory(): Promise<number> {
  const info = await client.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

beforeAll(async () => {
  redis = await startTestRedis({ appendOnly: true });
  client = new Redis(redis.url);
  const modelDir = await tinyModelDir();
  [api, worker] = await Promise.all([
    startApi({ redisUrl: redis.url, prefix: redis.prefix, modelDir, env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0' } }),
    startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 8 }),
  ]);
});

afterAll(async () => {
  reportFigures('hardening', figures);
  await worker?.stop();
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

/**
 * Sends the body `bodyCode` (a JavaScript expression) `count` times, one after the other, from a process of its own:
 * building and sending 10 MiB stalls the sender's event loop, and the client that measures /health must not be it.
 */
function sendFromAnotherProcess(path: string, bodyCode: string, count: number): Promise<{ status: number; ms: number }[]> {
  const script = `
    const body = JSON.stringify(${bodyCode});
    (async () => {
      const results = [];
      for (let i = 0; i < ${count}; i++) {
        const started = performance.now();
        const response = await fetch(${JSON.stringify(`${api.url}${path}`)}, { method: 'POST', headers: { authorization: 'Bearer ${KEY}', 'content-type': 'application/json' }, body });
        await response.arrayBuffer();
        results.push({ status: response.status, ms: performance.now() - started });
      }
      process.stdout.write(JSON.stringify(results));
    })();`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { maxBuffer: 1024 * 1024 }, (error, stdout) => (error ? reject(error) : resolve(JSON.parse(stdout) as { status: number; ms: number }[])));
  });
}

it('/health stays fast while a 10 MiB prompt, the 24 KiB template bomb and a 2 MiB batch are checked', async () => {
  figures.healthIdle = percentiles(await healthDuring(() => sleep(3000)));
  const hugePrompt = "{ model: 'falcon', prompt: 'x'.repeat(10 * 1024 * 1024 - 200), max_tokens: 2 }";
  const bomb = "{ template: '{q}'.repeat(1000), rows: Array.from({ length: 200 }, () => ({ q: 'y'.repeat(220) })), truncate: true, max_new_tokens: 2 }";
  const refusals: { status: number; ms: number }[] = [];
  const { value: huge, eventLoopDelayMs: hugeLoop } = await eventLoopDuring(() => healthDuring(async () => {
    refusals.push(...(await sendFromAnotherProcess('/v1/completions', hugePrompt, 5)));
  }));
  const { value: bombs, eventLoopDelayMs: bombLoop } = await eventLoopDuring(() => healthDuring(async () => {
    refusals.push(...(await sendFromAnotherProcess('/batches', bomb, 5)));
  }));
  expect(refusals.map((r) => r.status)).toEqual(Array(10).fill(400));
  const bigBatch = { prompts: Array.from({ length: 20 }, (_, i) => `${i} ${'lorem ipsum dolor sit amet '.repeat(3800)}`), truncate: true, max_new_tokens: 1, metadata: { run: 'big' } };
  let accepted = { status: 0, ms: 0 };
  const checked = await healthDuring(async () => {
    accepted = await post('/batches', bigBatch);
  });
  expect(accepted.status).toBe(200);
  figures.loadAverage = loadavg().map((l) => Math.round(l * 10) / 10);
  figures.healthDuring10MiBPrompt = { ...percentiles(huge), refusalMs: percentiles(refusals.slice(0, 5).map((r) => r.ms)), apiEventLoopDelayMs: hugeLoop };
  figures.healthDuringTemplateBomb = { ...percentiles(bombs), refusalMs: percentiles(refusals.slice(5).map((r) => r.ms)), apiEventLoopDelayMs: bombLoop };
  figures.healthDuring2MiBBatchCheck = { ...percentiles(checked), acceptMs: Math.round(accepted.ms) };
});

/** Bytes Redis holds in the keys whose name contains this batch id (its store keys and its jobs), by MEMORY USAGE. */
async function batchKeyBytes(batchId: string): Promise<{ keys: number; bytes: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `*${batchId}*`, 'COUNT', 1000);
    for (const key of found) {
      keys += 1;
      bytes += Number(await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
    }
    cursor = next;
  } while (cursor !== '0');
  return { keys, bytes };
}

/**
 * Redis growth of one request, with no worker consuming (what creating the batch stored, not its results):
 * INFO used_memory before and after, and MEMORY USAGE over the batch's own keys.
 */
async function growthOf(send: () => Promise<{ status: number; json: Record<string, any> }>, requestBytes: number) { // eslint-disable-line @typescript-eslint/no-explicit-any
  const before = await usedMemory();
  const queueBefore = await queueBytes();
  const response = await send();
  const usedMemoryGrowth = (await usedMemory()) - before;
  const queueGrowth = (await queueBytes()) - queueBefore;
  const ratio = (bytes: number) => Math.round((bytes / requestBytes) * 10) / 10;
  const own = response.status === 200 ? await batchKeyBytes(response.json.id as string) : { keys: 0, bytes: 0 };
  const stored = own.bytes + queueGrowth;
  return {
    response,
    figures: {
      requestBytes, status: response.status, batchStatus: response.json.status, total: response.json.request_counts?.total,
      batchKeys: own.keys, batchKeyBytes: own.bytes, queueGrowth, stored, ratio: ratio(stored), usedMemoryGrowth,
    },
  };
}

/** The queue's shared structures a job adds to: the prioritized set and BullMQ's event stream (capped by BullMQ). */
async function queueBytes(): Promise<number> {
  const keys = ['prioritized', 'wait', 'events'].map((name) => `${redis.prefix}:generate:${name}`);
  const sizes = await Promise.all(keys.map((key) => client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')));
  return sizes.reduce<number>((sum, size) => sum + Number(size ?? 0), 0);
}

async function uploadJsonl(content: string): Promise<string> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([content]), 'input.jsonl');
  const response = await fetch(`${api.url}/v1/files`, { method: 'POST', headers: auth, body: form });
  expect(response.status).toBe(200);
  return ((await response.json()) as { id: string }).id;
}

it('Redis growth per accepted request: a 500-prompt template batch, a 500-line JSONL batch, the 203 KiB stop-string request', async () => {
  // Nothing consumes while this is measured: the growth is what creating the batch stored, not its results.
  await worker.stop();
  const created: string[] = [];
  // One small batch first: Redis loads BullMQ's and the store's scripts once, which is not a cost of any one request.
  const warm = await post('/batches', { prompts: ['warm-up'], max_new_tokens: 1 });
  expect(warm.status).toBe(200);
  created.push(warm.json.id);
  const stopBomb = { prompts: Array.from({ length: 500 }, (_, i) => `Q${i}: what is ${i} + ${i}?`), stop: Array.from({ length: 4 }, (_, i) => `${i}`.repeat(50 * 1024)), max_new_tokens: 1 };
  const refused = await growthOf(() => post('/batches', stopBomb), Buffer.byteLength(JSON.stringify(stopBomb)));
  expect(refused.response.status).toBe(400);
  // The largest accepted shape of the same request: four stop strings at the 256-byte limit, metadata at its limits.
  const largest = { ...stopBomb, stop: Array.from({ length: 4 }, (_, i) => `${i}`.repeat(256)), metadata: Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`.padEnd(64, 'k'), 'v'.repeat(512)])) };
  const accepted = await growthOf(() => post('/batches', largest), Buffer.byteLength(JSON.stringify(largest)));
  expect(accepted.response.status).toBe(200);
  created.push(accepted.response.json.id);
  const template = {
    template: 'Question: {question}\nAnswer:', rows: Array.from({ length: 500 }, (_, i) => ({ question: `what is ${i} + ${i}?` })),
    max_new_tokens: 16, temperature: 0.7, do_sample: true, stop: Array.from({ length: 4 }, (_, i) => `${i}`.repeat(256)),
  };
  const templateBatch = await growthOf(() => post('/batches', template), Buffer.byteLength(JSON.stringify(template)));
  expect(templateBatch.response.status).toBe(200);
  created.push(templateBatch.response.json.id);
  // A few-shot template of 1 KiB: its rows are what each item stores, not 500 rendered copies of the template.
  const fewShot = { ...template, template: `${Array.from({ length: 16 }, (_, i) => `Question: what is ${i} + ${i}?\nAnswer: ${2 * i}.\n`).join('').padEnd(1000, ' ')}Question: {question}\nAnswer:` };
  const fewShotBatch = await growthOf(() => post('/batches', fewShot), Buffer.byteLength(JSON.stringify(fewShot)));
  expect(fewShotBatch.response.status).toBe(200);
  created.push(fewShotBatch.response.json.id);
  // Two parameter sets among the 500 lines, as a client that varies max_tokens by line would send.
  const jsonl = Array.from({ length: 500 }, (_, i) => JSON.stringify({
    custom_id: `line-${i}`, method: 'POST', url: '/v1/completions',
    body: { model: 'falcon', prompt: `Q${i}: what is ${i} + ${i}?`, max_tokens: i % 2 === 0 ? 16 : 32, temperature: 0.7, stop: Array.from({ length: 4 }, (_, s) => `${s}`.repeat(256)) },
  })).join('\n');
  const fileId = await uploadJsonl(jsonl);
  const jsonlBatch = await growthOf(() => post('/v1/batches', { input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' }), Buffer.byteLength(jsonl));
  expect(jsonlBatch.response.status).toBe(200);
  created.push(jsonlBatch.response.json.id);
  // The same 500 lines with only their own prompt and two numbers each: the shape of most JSONL files.
  const shortJsonl = Array.from({ length: 500 }, (_, i) => JSON.stringify({
    custom_id: `line-${i}`, method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: `Q${i}: what is ${i} + ${i}?`, max_tokens: 16, temperature: 0.7 },
  })).join('\n');
  const shortFileId = await uploadJsonl(shortJsonl);
  const shortJsonlBatch = await growthOf(() => post('/v1/batches', { input_file_id: shortFileId, endpoint: '/v1/completions', completion_window: '24h' }), Buffer.byteLength(shortJsonl));
  expect(shortJsonlBatch.response.status).toBe(200);
  created.push(shortJsonlBatch.response.json.id);
  figures.redisGrowth = {
    loadAverage: loadavg().map((l) => Math.round(l * 10) / 10),
    shortJsonlBatch500: shortJsonlBatch.figures,
    stopStringRequest: refused.figures,
    largestAcceptedShape: accepted.figures,
    templateBatch500: templateBatch.figures,
    fewShotTemplateBatch500: fewShotBatch.figures,
    jsonlBatch500: jsonlBatch.figures,
  };
  for (const id of created) await post(`/batches/${id}/cancel`, '');
  worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(), slots: 8 });
});

it(`a ${OUTAGE_MS / 1000} s Redis outage with event streams open, ${OUTAGE_RUNS} runs: every stream ends with the final status, no item lost`, async () => {
  const runs: Record<string, unknown>[] = [];
  for (let run = 0; run < OUTAGE_RUNS; run++) {
    const count = 300;
    const created = await post('/batches', { prompts: Array.from({ length: count }, (_, i) => `Run ${run} item ${i}`), max_new_tokens: 16, ignore_eos: true });
    expect(created.status).toBe(200);
    const batchId = created.json.id as string;
    let outage: Promise<{ during: { status: number; ms: number; retryAfter: string | null }[]; health: { status: number; ms: number } }> | undefined;
    const resumer = new AbortController();
    const connected = readBatchEvents(api.url, KEY, batchId, {
      onEvent: (event) => {
        if (event.type !== 'item' || outage) return;
        resumer.abort();
        outage = (async () => {
          await redis.down();
          const during: { status: number; ms: number; retryAfter: string | null }[] = [];
          const started = performance.now();
          const health = await fetch(`${api.url}/health`, { headers: auth }).then((r) => ({ status: r.status, ms: performance.now() - started }));
          while (performance.now() - started < OUTAGE_MS) {
            const t = performance.now();
            const response = await fetch(`${api.url}/batches/${batchId}`, { headers: auth });
            during.push({ status: response.status, ms: performance.now() - t, retryAfter: response.headers.get('retry-after') });
            await sleep(1000);
          }
          await redis.up();
          return { during, health };
        })();
      },
    });
    const interrupted = await readBatchEvents(api.url, KEY, batchId, { signal: resumer.signal });
    while (!outage) await sleep(50);
    const { during, health } = await outage;
    const lastSeen = interrupted.filter((e) => e.id !== undefined).pop()?.id ?? '0';
    const resumed = await readBatchEvents(api.url, KEY, batchId, { lastEventId: lastSeen, retriesOn503: 10 });
    const stayed = await connected;
    const items = (events: SseEvent[]) => events.filter((e) => e.type === 'item').map((e) => e.data.index as number);
    const all = Array.from({ length: count }, (_, i) => i);
    const resumedItems = [...items(interrupted), ...items(resumed)];
    expect(stayed[stayed.length - 1]).toMatchObject({ type: 'status', data: { status: 'completed' } });
    expect(resumed[resumed.length - 1]).toMatchObject({ type: 'status', data: { status: 'completed' } });
    expect([...items(stayed)].sort((a, b) => a - b)).toEqual(all);
    expect(resumedItems.sort((a, b) => a - b)).toEqual(all);
    expect(during.every((d) => d.status === 503 && d.retryAfter !== null)).toBe(true);
    runs.push({
      run, items: count, streamConnectedThrough: { items: items(stayed).length, endedWith: stayed[stayed.length - 1].data.status },
      streamResumed: { before: items(interrupted).length, after: items(resumed).length, lost: count - new Set(resumedItems).size, duplicated: resumedItems.length - new Set(resumedItems).size },
      healthDuringOutage: { status: health.status, ms: Math.round(health.ms) }, routeDuringOutage: { status: [...new Set(during.map((d) => d.status))], ...percentiles(during.map((d) => d.ms)) },
    });
  }
  figures.redisOutage = { outageMs: OUTAGE_MS, runs };
  expect(api.output()).not.toMatch(/\n\s+at /);
});
