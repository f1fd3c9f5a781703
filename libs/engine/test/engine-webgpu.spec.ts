// The GPU-buffer KV paths on a real WebGPU adapter. Skipped where onnxruntime finds none (CI); runs on a GPU host,
// or on a CPU host with a software Vulkan driver (Mesa >= 25 lavapipe; see docs/engine.md).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type EngineOptions, GenerationEngine, type GenerationResult } from '@app/engine';
import { convertCheckpoint, writeTinyCheckpoint } from '@app/model';
import { mergeTopGroups } from '../src/runtime/graph-io';
import { bruteTopK, runWideVocabModel, WIDE_VOCAB } from '../src/testing/wide-vocab-model';
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

describeWebgpu('webgpu, device-merge cache sized to the live rows', () => {
  it('keeps every sequence\'s tokens while the cache grows (1 -> 4 rows) and is packed again (-> 1)', async () => {
    const modelDir = await tinyModelDir();
    const engine = await GenerationEngine.start({ modelDir, executionProvider: 'webgpu', kvPlacement: 'device-merge', slots: 8, inProcess: true, maxSequenceLength: 128 });
    let submitted = 0;
    const job = (i: number, maxNewTokens: number) => ({ id: `c${submitted++}`, prompt: PROMPTS[i], params: { maxNewTokens, ignoreEos: true } });
    try {
      const alone = [await engine.submit(job(0, 12)), await engine.submit(job(1, 3)), await engine.submit(job(2, 5))];
      // Three short ones end while the long one still decodes alone in a cache of four rows, which is then packed.
      const together = await Promise.all([engine.submit(job(0, 12)), engine.submit(job(1, 3)), engine.submit(job(2, 5)), engine.submit(job(1, 3))]);
      expect(together.map((result) => result.sequences[0].tokens)).toEqual([...alone, alone[1]].map((result) => result.sequences[0].tokens));
    } finally {
      await engine.close();
    }
  });
});

describeWebgpu('webgpu, grouped top-k outputs', () => {
  it('merge into the top 64 of the same run\'s logits (WebGPU\'s own TopK kernel on groups of <= 2048)', async () => {
    const run = await runWideVocabModel('gpu', 5);
    const { io } = run.manifest;
    const groups = io.topGroups ?? 1;
    expect(groups).toBe(3);
    for (let b = 0; b < 2; b++) {
      const merged = mergeTopGroups(run.topIds, run.topLogits, b, io.topK, groups, WIDE_VOCAB / groups);
      expect(merged.ids).toEqual(bruteTopK(run.logits.subarray(b * WIDE_VOCAB, (b + 1) * WIDE_VOCAB), io.topK).ids);
    }
  });
});

describeWebgpu('webgpu, fused input projection', () => {
  it('gives the same greedy tokens as the separate QKV and MLP-up matmuls (fp16, gpu target)', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-fused-'));
    try {
      writeTinyCheckpoint(path.join(work, 'checkpoint'), { seed: 7, dtype: 'F16' });
      const generate = async (name: string, tuning: { fuseInputProjections: boolean }) => {
        const out = path.join(work, name);
        await convertCheckpoint(path.join(work, 'checkpoint'), { out, weights: 'int4', target: 'gpu', accuracyLevel: 0, tuning });
        const engine = await GenerationEngine.start({ modelDir: out, executionProvider: 'webgpu', slots: 3, inProcess: true, maxSequenceLength: 64 });
        try {
          const prompts = [[40, 300, 77, 120], [61, 62, 63], [5, 6, 7, 8, 9, 10]];
          const results = await Promise.all(prompts.map((promptIds, i) => engine.submit({ id: `r${i}`, prompt: '', promptIds, params: { maxNewTokens: 12, ignoreEos: true } })));
          return results.map((result) => result.sequences[0].tokens);
        } finally {
          await engine.close();
        }
      };
      expect(await generate('fused', { fuseInputProjections: true })).toEqual(await generate('separate', { fuseInputProjections: false }));
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});
