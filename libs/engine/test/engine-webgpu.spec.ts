// The GPU-buffer KV paths on a real WebGPU adapter. Skipped where onnxruntime finds none (CI); runs on a GPU host,
// or on a CPU host with a software Vulkan driver (Mesa >= 25 lavapipe; see docs/engine.md).
import { execFileSync } from 'node:child_process';
import { type EngineOptions, GenerationEngine, type GenerationResult } from '@app/engine';
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
