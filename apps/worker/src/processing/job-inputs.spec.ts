// What a worker runs for a job, read from a real Redis store: version-2 jobs get their prompt from the item record and
// their parameters from the batch, through a bounded cache; version-1 jobs (stored before) carry both.
import { Redis } from 'ioredis';
import { jobOf, paramsIdOf, readJobData, type GenerateJobDataV1, type JobParams } from '@app/contracts';
import { BatchLedger, type BatchItemInput } from '@app/store';
import { startTestRedis, type TestRedis } from '../../../../test/support/redis';
import { JobInputs } from './job-inputs';

const params: JobParams = {
  maxNewTokens: 8, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: ['\n\n'],
  numReturnSequences: 1, returnFullText: false, ignoreEos: false, truncate: false,
};

let redis: TestRedis;
let client: Redis;
let ledger: BatchLedger;
let counter = 0;

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  ledger = new BatchLedger(client, { prefix: redis.prefix });
});
afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

async function createBatch(items: BatchItemInput[]): Promise<string> {
  const id = `batch_inputs${counter++}`;
  const outcome = await ledger.create({
    id, kind: 'openai', owner: 't', endpoint: '/v1/completions', model: 'tiny', completionWindow: '24h', completionWindowMs: 86_400_000,
    metadata: null, inputFileId: null, items, retentionSeconds: 0,
  });
  if (!('created' in outcome)) throw new Error('not created');
  return id;
}

const itemsOf = (count: number, paramsOf: (index: number) => JobParams = () => params): BatchItemInput[] =>
  Array.from({ length: count }, (_, index) => ({ index, customId: `line-${index}`, prompt: `prompt ${index}`, params: paramsOf(index) }));

it('reads a batch\'s shared parameters once for all its jobs, and each line\'s own set once', async () => {
  const inputs = new JobInputs(ledger);
  const items = itemsOf(500);
  const batchId = await createBatch(items);
  const resolved = await Promise.all(items.map((item) => inputs.resolve(readJobData(jobOf(batchId, 't', item)))));
  expect(resolved.map((input) => ({ index: input!.index, customId: input!.customId, prompt: input!.prompt, params: input!.params }))).toEqual(items);
  expect(inputs.cache.reads).toBe(1);

  const varied = itemsOf(100, (index) => ({ ...params, maxNewTokens: index % 2 === 0 ? 16 : 32 }));
  const variedId = await createBatch(varied);
  for (const item of varied) expect((await inputs.resolve(readJobData(jobOf(variedId, 't', item))))!.params).toEqual(item.params);
  expect(inputs.cache.reads).toBe(1 + 2);
});

it('renders a template batch\'s items from their rows and the template, read once', async () => {
  const inputs = new JobInputs(ledger);
  const template = 'Answer in one word, the first that comes to mind.\nQ: {q}\nA:';
  const items = Array.from({ length: 50 }, (_, index) => ({ index, customId: `item-${index}`, prompt: `Answer in one word, the first that comes to mind.\nQ: ${index}?\nA:`, params, row: { q: `${index}?` } }));
  const id = `batch_inputs${counter++}`;
  const outcome = await ledger.create({
    id, kind: 'native', owner: 't', endpoint: '/v1/completions', model: 'tiny', completionWindow: '24h', completionWindowMs: 86_400_000,
    metadata: null, inputFileId: null, items, template, retentionSeconds: 0,
  });
  expect('created' in outcome).toBe(true);
  const resolved = await Promise.all(items.map((item) => inputs.resolve(readJobData(jobOf(id, 't', item)))));
  expect(resolved.map((input) => input!.prompt)).toEqual(items.map((item) => item.prompt));
  expect(inputs.templates.reads).toBe(1);
});

it('keeps at most its capacity of parameter sets, least recently used out first', async () => {
  const inputs = new JobInputs(ledger, 2);
  const batches = await Promise.all([0, 1, 2].map(() => createBatch(itemsOf(2))));
  for (const batchId of batches) await inputs.resolve(readJobData(jobOf(batchId, 't', itemsOf(1)[0])));
  expect(inputs.cache.size).toBe(2);
  expect(inputs.cache.reads).toBe(3);
  await inputs.resolve(readJobData(jobOf(batches[2], 't', itemsOf(1)[0])));
  expect(inputs.cache.reads).toBe(3);
  await inputs.resolve(readJobData(jobOf(batches[0], 't', itemsOf(1)[0])));
  expect(inputs.cache.reads).toBe(4);
});

it('runs a version-1 job from what it carries, and an item stored with its parameters inline', async () => {
  const inputs = new JobInputs(ledger);
  const v1: GenerateJobDataV1 = { v: 1, kind: 'batch', batchId: 'batch_gone', index: 0, customId: 'c', prompt: 'carried', params, owner: 't', enqueuedAt: 1 };
  expect(await inputs.resolve(readJobData(v1))).toMatchObject({ prompt: 'carried', params });
  const { v: _v, ...unversioned } = v1;
  expect(await inputs.resolve(readJobData(unversioned))).toMatchObject({ prompt: 'carried', params });
  const batchId = await createBatch(itemsOf(1));
  const inline = { ...params, maxNewTokens: 3 };
  await client.hset(ledger.keys.items(batchId), '0', JSON.stringify({ index: 0, customId: 'line-0', prompt: 'old', params: inline }));
  expect(await inputs.resolve(readJobData(jobOf(batchId, 't', { index: 0, customId: 'line-0', params: inline })))).toMatchObject({ prompt: 'old', params: inline });
  expect(paramsIdOf(inline)).not.toBe(paramsIdOf(params));
});

it('gives null for an item its batch does not hold, and names a parameter set that is not stored', async () => {
  const inputs = new JobInputs(ledger);
  const batchId = await createBatch(itemsOf(1));
  expect(await inputs.resolve(readJobData(jobOf(batchId, 't', { index: 5, customId: 'x', params })))).toBeNull();
  await expect(inputs.resolve(readJobData(jobOf(batchId, 't', { index: 0, customId: 'line-0', params: { ...params, topK: 7 } })))).rejects.toThrow(/parameter set [0-9a-f]{16} is not stored/);
});
