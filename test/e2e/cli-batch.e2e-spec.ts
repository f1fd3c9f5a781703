// `falconq batch submit|status|watch|results|cancel` against a running falconq: the built CLI, a real api and worker
// on the tiny model, a private Redis.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/falconq.js');
const run = promisify(execFile);
const KEY = 'sk-cli-test';

interface Failure { code: number; stdout: string; stderr: string }

describe('falconq batch (built CLI, running api and worker)', () => {
  let redis: TestRedis;
  let api: ApiProcess;
  let worker: WorkerProcess | undefined;
  let work: string;
  let modelDir: string;
  const falconq = (...args: string[]) => run(process.execPath, [cli, 'batch', ...args, '--url', api.url, '--key', KEY]);

  function inputFile(name: string, count: number): string {
    const file = path.join(work, name);
    fs.writeFileSync(file, `${Array.from({ length: count }, (_, i) => JSON.stringify({
      custom_id: `${name}-${i}`, method: 'POST', url: '/v1/chat/completions', body: { model: 'falcon', messages: [{ role: 'user', content: `Question ${i}` }], max_tokens: 8, temperature: 0 },
    })).join('\n')}\n`);
    return file;
  }

  beforeAll(async () => {
    if (!fs.existsSync(path.join(root, 'dist/apps/cli/src/main.js'))) throw new Error('dist/ is missing: run "npm run build" first (npm test does it)');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-cli-batch-'));
    modelDir = await tinyModelDir();
    redis = await startTestRedis();
    // No worker at first: a submitted batch waits, so cancelling it does not race the model.
    api = await startApi({ redisUrl: redis.url, prefix: redis.prefix, modelDir, env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0' } });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await api?.stop();
    await redis?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('submits, cancels, watches to the end and writes the results by custom_id', async () => {
    const cancelled = JSON.parse((await falconq('submit', inputFile('waiting', 4), '--json')).stdout) as { id: string; status: string; endpoint: string };
    expect(cancelled.endpoint).toBe('/v1/chat/completions');
    const afterCancel = (await falconq('cancel', cancelled.id)).stdout;
    expect(afterCancel).toMatch(new RegExp(`^${cancelled.id}  (cancelling|cancelled)  `));
    const status = JSON.parse((await falconq('status', cancelled.id, '--json')).stdout) as { status: string };
    expect(['cancelling', 'cancelled']).toContain(status.status);

    worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4 });
    const submitted = (await falconq('submit', inputFile('run', 12), '--metadata', 'team=cli')).stdout;
    const id = /^(batch_\w+)  /.exec(submitted)![1];
    const watched = await falconq('watch', id);
    expect(watched.stdout).toMatch(new RegExp(`^${id}  completed  12 succeeded, 0 failed, 0 to go, of 12`));
    expect(watched.stderr).toContain('100%');

    const out = path.join(work, 'out.jsonl');
    const { stderr } = await falconq('results', id, '-o', out);
    expect(stderr).toContain(`12 output lines in ${out}`);
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { custom_id: string; response: { status_code: number } });
    expect(lines.map((line) => line.custom_id)).toEqual(Array.from({ length: 12 }, (_, i) => `run-${i}`));
    expect(lines.every((line) => line.response.status_code === 200)).toBe(true);
  }, 300_000);

  it('estimates a file with the api\'s dry run: counts, bad lines by number, tokens; no batch, no file left behind', async () => {
    const good = inputFile('estimate', 3);
    const valid = JSON.parse((await falconq('estimate', '-i', good, '--json')).stdout) as { valid: boolean; request_counts: { total: number; valid: number }; usage: { max_output_tokens: number; input_tokens: number } };
    expect(valid).toMatchObject({ valid: true, request_counts: { total: 3, valid: 3 }, usage: { max_output_tokens: 24 } });
    expect(valid.usage.input_tokens).toBeGreaterThan(0);

    const bad = path.join(work, 'bad.jsonl');
    const line = (customId: string, content: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body: { model: 'falcon', messages: [{ role: 'user', content }], max_tokens: 8, ...extra } });
    fs.writeFileSync(bad, `${[line('a', 'hi'), line('b', 'word '.repeat(3000)), line('c', 'hi', { temperature: 9 })].join('\n')}\n`);
    const batchesBefore = (await fetch(`${api.url}/batches`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as { data: unknown[] }).data.length;
    const filesBefore = (await fetch(`${api.url}/v1/files`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as { data: unknown[] }).data.length;
    const refused = await falconq('estimate', bad).catch((error: Failure) => error);
    expect((refused as Failure).code).toBe(1);
    expect((refused as Failure).stdout).toContain(`${bad}: 3 requests, 1 valid, 2 invalid`);
    expect((refused as Failure).stdout).toMatch(/line 2, body\.messages: .*context_length_exceeded/);
    expect((refused as Failure).stdout).toMatch(/line 3, body\.temperature: .*invalid_batch_line/);
    expect((refused as Failure).stdout).toContain('lines over the context: 2');
    const batchesAfter = (await fetch(`${api.url}/batches`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as { data: unknown[] }).data.length;
    const filesAfter = (await fetch(`${api.url}/v1/files`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as { data: unknown[] }).data.length;
    expect([batchesAfter, filesAfter]).toEqual([batchesBefore, filesBefore]);
  });

  it('names what is wrong: a missing key, an unknown batch, an unreachable server', async () => {
    const noKey = await run(process.execPath, [cli, 'batch', 'status', 'batch_x', '--url', api.url]).catch((error: Failure) => error);
    expect((noKey as Failure).code).toBe(1);
    expect((noKey as Failure).stderr).toMatch(/401 .*\(pass --key or set FALCONQ_KEY\)/);
    const unknown = await falconq('status', 'batch_does_not_exist').catch((error: Failure) => error);
    expect((unknown as Failure).stderr).toMatch(/GET \/v1\/batches\/batch_does_not_exist: 404/);
    const down = await run(process.execPath, [cli, 'batch', 'status', 'batch_x', '--url', 'http://127.0.0.1:9']).catch((error: Failure) => error);
    expect((down as Failure).stderr).toMatch(/cannot reach falconq at http:\/\/127\.0\.0\.1:9 .*is it running\?/);
  });
});
