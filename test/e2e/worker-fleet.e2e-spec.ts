// `falconq worker --gpus 0,1`: one worker process per device, pinned through its environment, restarted when it
// dies, all stopped by one SIGTERM. CPU stands in for the GPUs (the device id still reaches each process).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { QueueHarness, promptsOf, sleep } from '../support/queue-harness';

jest.setTimeout(120_000);

const CLI = join(__dirname, '..', '..', 'bin', 'falconq.js');

describe('falconq worker (fleet supervisor)', () => {
  let redis: TestRedis;
  let harness: QueueHarness;
  let fleet: ChildProcess | undefined;
  let output = '';

  beforeAll(async () => {
    redis = await startTestRedis();
    harness = QueueHarness.open(redis.url, redis.prefix);
  });
  afterAll(async () => {
    fleet?.kill('SIGKILL');
    await harness?.close();
    await redis?.stop();
  });

  const readyCount = () => output.split('falconq worker ready').length - 1;
  async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms:\n${output}`);
      await sleep(100);
    }
  }

  it('runs one process per device, restarts one that dies, and stops all on SIGTERM', async () => {
    const modelDir = await tinyModelDir();
    fleet = spawn(process.execPath, [CLI, 'worker', '--gpus', '0,1', '--ep', 'cpu', '--slots', '2', '--model', modelDir, '--redis', redis.url], {
      env: { PATH: process.env.PATH ?? '', FALCONQ_REDIS_PREFIX: redis.prefix, FALCONQ_WORKER_ID: 'fleet', FALCONQ_HEARTBEAT_MS: '300', FALCONQ_RESTART_BASE_MS: '200', FALCONQ_INTRA_OP_THREADS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    fleet.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    fleet.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => fleet!.once('exit', (code) => resolve(code)));

    await until(() => readyCount() === 2, 'two workers ready');
    await until(async () => (await harness.store.workers.list(5_000)).length === 2, 'two heartbeats');
    const heartbeats = await harness.store.workers.list(5_000);
    expect(heartbeats.map((h) => [h.workerId, h.deviceId, h.executionProvider, h.slots]).sort()).toEqual([
      ['fleet-gpu0-0', 0, 'cpu', 2],
      ['fleet-gpu1-0', 1, 'cpu', 2],
    ]);

    // Both processes work on the same batch.
    const batchId = await harness.submitBatch(promptsOf(16), { maxNewTokens: 3 });
    const batch = await harness.waitForFinal(batchId, 60_000);
    expect(batch.requestCounts.completed).toBe(16);

    // A worker that dies unexpectedly is started again under the same id.
    const victim = heartbeats.find((h) => h.workerId === 'fleet-gpu1-0')!;
    process.kill(victim.pid!, 'SIGKILL');
    await until(() => readyCount() === 3, 'the killed worker restarted');
    expect(output).toContain('fleet-gpu1-0 died unexpectedly (signal SIGKILL)');
    await until(async () => (await harness.store.workers.list(60_000)).some((h) => h.workerId === 'fleet-gpu1-0' && h.pid !== victim.pid), 'a heartbeat from the new process');

    const pids = (await harness.store.workers.list(60_000)).map((h) => h.pid!);
    fleet.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('leaves down a worker whose engine cannot start with its configuration, and stops when every one has', async () => {
    const notAModel = mkdtempSync(join(tmpdir(), 'falconq-not-a-model-'));
    try {
      const run = spawn(process.execPath, [CLI, 'worker', '--gpus', '0,1', '--ep', 'cpu', '--slots', '1', '--model', notAModel, '--redis', redis.url], {
        env: { PATH: process.env.PATH ?? '', FALCONQ_REDIS_PREFIX: redis.prefix, FALCONQ_RESTART_BASE_MS: '100' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      run.stdout!.on('data', (c: Buffer) => (text += c.toString()));
      run.stderr!.on('data', (c: Buffer) => (text += c.toString()));
      const code = await new Promise<number | null>((resolve) => run.once('exit', (c) => resolve(c)));
      expect(code).toBe(2);
      expect(text).toContain(`${notAModel} is not a converted falconq model directory`);
      expect(text).toContain('refused its configuration (code 2); not restarting it');
      expect(text).toContain('every worker refused its configuration');
      expect(text).not.toContain('died unexpectedly');
    } finally {
      rmSync(notAModel, { recursive: true, force: true });
    }
  });

  it('refuses a bad device list naming the flag', async () => {
    const run = spawn(process.execPath, [CLI, 'worker', '--gpus', 'zero'], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    run.stderr!.on('data', (c: Buffer) => (text += c.toString()));
    const code = await new Promise<number | null>((resolve) => run.once('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(text).toContain('--gpus / FALCONQ_GPUS');
  });
});
