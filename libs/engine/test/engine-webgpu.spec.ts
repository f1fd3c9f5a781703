// The GPU-buffer KV paths on a real WebGPU adapter. Skipped where onnxruntime finds none (CI); runs on a GPU host,
// or on a CPU host with a software Vulkan driver (Mesa >= 25 lavapipe; see docs/engine.md).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { type EngineOptions, GenerationEngine, type GenerationResult } from '@app/engine';
import { createRandomModel, TINY_SHAPE } from '@app/model';
import { mergeTopGroups } from '../src/runtime/graph-io';
import { tinyModelDir } from '../../../test/support/tiny-model';

function webgpuAdapterAvailable(): boolean {
  const probe = `require('onnxruntime-node').InferenceSession.create(new Uint8Array(0), { executionProviders: ['webgpu'] })
    .then(() => process.exit(0), (e) => process.exit(/adapter/i.test(String(e && e.message)) ? 1 : 0));`;
  try {
    execFileSync(process.execPath, ['-e', probe], { stdio: 'ignore', timeout: 60_000, cwd: __dirname });
    return true;
  } catch {
    return false;
  }
}

const available = webgpuAdapterAvailable();
if (!available) console.warn('engine-webgpu.spec: skipped, onnxruntime found no WebGPU adapter here');
const describeWebgpu = available ? describe : describe.skip;

const PROMPTS = ['Hello world', 'The quick brown fox jumps over the lazy dog', 'A'];

describeWebgpu.each(['device-merge', 'device', 'host'] as const)('webgpu, %s KV', (kvPlacement) => {
  it('gives each prompt the same greedy tokens alone and joining a running batch', async () => {
    const modelDir = await tinyModelDir();
    const start = (slots: number) => GenerationEngine.start({ modelDir, executionProvider: 'webgpu', kvPlacement, slots, inProcess: true, maxSequenceLength: 128 } as EngineOptions);
    const job = (i: number) => ({ id: `p${i}`, prompt: PROMPTS[i], params: { maxNewTokens: 4 + i, ignoreEos: true } });

    // One engine: each prompt first runs as the only live sequence, then all join a running batch.
    const engine = await start(3);
    const alone: GenerationResult[] = [];
    for (let i = 0; i < PROMPTS.length; i++) alone.push(await engine.submit(job(i)));
    expect(engine.info.kvPlacement).toBe(kvPlacement);
    const joined: Promise<GenerationResult>[] = [];
    await new Promise<void>((allIn) => {
      const submit = (i: number): void => {
        if (i === PROMPTS.length) return allIn();
        let tokens = 0;
        joined.push(engine.submit({ ...job(i), id: `joined-${i}` }, () => (++tokens === 2 ? submit(i + 1) : undefined)));
      };
      submit(0);
    });
    const results = await Promise.all(joined);
    await engine.close();
    results.forEach((result, i) => expect(result.sequences[0].tokens).toEqual(alone[i].sequences[0].tokens));
  });
});

describeWebgpu('webgpu, grouped top-k outputs', () => {
  it('merge into the top 64 of the same run\'s logits (WebGPU\'s own TopK kernel on groups of <= 2048)', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-wg-groups-'));
    try {
      const { manifest } = await createRandomModel({ out: path.join(work, 'm'), shape: { ...TINY_SHAPE, vocabSize: 6144 }, target: 'gpu', seed: 5 });
      const { io, shape } = manifest;
      const session = await ort.InferenceSession.create(path.join(work, 'm', manifest.files.model), { executionProviders: ['webgpu'] });
      const feeds: Record<string, ort.Tensor> = {
        [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from([5n, 6n, 7n, 0n, 9n, 10n, 11n, 12n]), [2, 4]),
        [io.attentionMask]: new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 0n, 1n, 1n, 1n, 1n]), [2, 4]),
      };
      for (let layer = 0; layer < shape.numLayers; layer++) {
        for (const pattern of [io.pastKey, io.pastValue]) {
          feeds[pattern.replace('%d', String(layer))] = new ort.Tensor('float16', new Uint16Array(0), [2, shape.numKvHeads, 0, shape.headDim]);
        }
      }
      const out = await session.run(feeds, [io.logits, io.topIds, io.topLogits]);
      await session.release();
      const groups = io.topGroups ?? 1;
      expect(groups).toBe(3);
      const logits = out[io.logits].data as Float32Array;
      for (let b = 0; b < 2; b++) {
        const merged = mergeTopGroups(out[io.topIds].data as BigInt64Array, out[io.topLogits].data as Float32Array, b, io.topK, groups, shape.vocabSize / groups);
        const row = logits.subarray(b * shape.vocabSize, (b + 1) * shape.vocabSize);
        const sorted = Array.from(row.keys()).sort((x, y) => row[y] - row[x] || x - y).slice(0, io.topK);
        expect(merged.ids).toEqual(sorted);
      }
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});
