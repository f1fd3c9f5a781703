// A streamed completion whose worker is SIGKILLed after it sent tokens: the client's text is the unstreamed answer
// (the retry resumes exactly after what was sent) or ends with an error event and [DONE]; never a repeated prefix.
// Real processes: a private Redis, the api, and workers on the tiny model; the job moves to a fresh worker when the
// dead one's lock runs out.
import { Redis } from 'ioredis';
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { sseFrames } from '../support/sse';
import { startWorker, type WorkerProcess } from '../support/worker-process';

const KEY = 'stream-faults-key-01';
const FAST_RECOVERY = { FALCONQ_LOCK_MS: '2000', FALCONQ_STALLED_INTERVAL_MS: '1000' };

let redis: TestRedis;
let client: Redis;
let api: ApiProcess;
const workers: WorkerProcess[] = [];
/** The worker that is alive now (each test kills it and leaves its replacement here). */
let current: WorkerProcess | undefined;

async function worker(): Promise<WorkerProcess> {
  const started = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(), slots: 2, env: FAST_RECOVERY });
  workers.push(started);
  return started;
}

interface StreamRead {
  text: string;
  events: Record<string, any>[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  keepalives: number;
  done: boolean;
  requestId: string;
}

/** Reads a streamed completion; `onFirstText` runs (not awaited) when the first generated text arrives. */
async function streamCompletion(body: Record<string, unknown>, onFirstText: () => void): Promise<StreamRead> {
  const response = await fetch(`${api.url}/v1/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }),
  });
  expect(response.status).toBe(200);
  const read: StreamRead = { text: '', events: [], keepalives: 0, done: false, requestId: '' };
  let fired = false;
  for await (const frame of sseFrames(response.body)) {
    if (frame.startsWith(':')) read.keepalives++;
    if (!frame.startsWith('data: ')) continue;
    const data = frame.slice(6);
    if (data === '[DONE]') {
      read.done = true;
      continue;
    }
    const event = JSON.parse(data) as StreamRead['events'][number];
    read.events.push(event);
    if (event.id) read.requestId = String(event.id).replace(/^cmpl-/, '');
    const text = event.choices?.[0]?.text ?? '';
    read.text += text;
    if (text && !fired) {
      fired = true;
      onFirstText();
    }
  }
  return read;
}

async function attemptsOf(requestId: string): Promise<number> {
  const raw = await client.hget(`${redis.prefix}:batch:${requestId}:results`, '0');
  return raw ? (JSON.parse(raw) as { attempts: number }).attempts : 0;
}

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  api = await startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_SSE_KEEPALIVE_MS: '200' },
  });
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

describe('worker SIGKILL during a streamed completion', () => {
  const prompt = 'The history of the river begins';

  it('resumes a greedy completion exactly: the client gets the unstreamed answer once, with keep-alives while it waited', async () => {
    const first = (current ??= await worker());
    let replacement: Promise<WorkerProcess> | undefined;
    const streamed = await streamCompletion({ model: 'falcon', prompt, max_tokens: 1500, temperature: 0, ignore_eos: true }, () => {
      replacement = first.kill().then(worker);
    });
    current = await replacement;
    expect(streamed.events.filter((event) => event.error)).toEqual([]);
    expect(streamed.done).toBe(true);
    // The kill came while the first worker was generating: the prompt ran twice.
    expect(await attemptsOf(streamed.requestId)).toBeGreaterThanOrEqual(2);
    expect(streamed.keepalives).toBeGreaterThan(0);

    const unstreamed = await fetch(`${api.url}/v1/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'falcon', prompt, max_tokens: 1500, temperature: 0, ignore_eos: true }),
    });
    const answer = ((await unstreamed.json()) as { choices: { text: string }[] }).choices[0].text;
    expect(streamed.text.length).toBe(answer.length);
    expect(streamed.text).toBe(answer);
  });

  it('ends a sampled completion whose retry generates other text with an error event and [DONE], not a spliced text', async () => {
    const first = (current ??= await worker());
    let replacement: Promise<WorkerProcess> | undefined;
    const streamed = await streamCompletion({ model: 'falcon', prompt, max_tokens: 1500, temperature: 1, ignore_eos: true }, () => {
      replacement = first.kill().then(worker);
    });
    current = await replacement;
    expect(streamed.done).toBe(true);
    const errors = streamed.events.filter((event) => event.error);
    expect(errors).toHaveLength(1);
    expect(errors[0].error.code).toBe('stream_interrupted');
    // No finishing chunk: the text the client holds is a prefix of the dead attempt, marked as cut short.
    expect(streamed.events.some((event) => event.choices?.[0]?.finish_reason)).toBe(false);
  });
});
