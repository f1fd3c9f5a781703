import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRandomModel, FALCON_7B_SHAPE, inspectModel, parseGraphTuning, TINY_SHAPE } from '@app/model';
import { OnnxFalcon } from './onnx-runner';

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-random-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function spread(values: Float32Array): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}

describe('random Falcon-shaped int4 models', () => {
  it('builds a Falcon-7B-shaped model cut to one layer that runs with finite, varied logits', async () => {
    const out = path.join(work, 'falcon-7b-1-layer');
    const { manifest } = await createRandomModel({ out, shape: 'falcon-7b', layers: 1, target: 'cpu' });
    expect(manifest.shape).toEqual({ ...FALCON_7B_SHAPE, numLayers: 1 });
    expect(manifest.source.kind).toBe('random');
    const inspection = inspectModel(out);
    // QKV + MLP-up fused (split after), dense, down, lm_head.
    expect(inspection.ops['com.microsoft::MatMulNBits']).toBe(4);
    expect(inspection.ops.Split).toBe(1);
    expect(inspection.ops['com.microsoft::GatherBlockQuantized']).toBe(1);
    const model = await OnnxFalcon.load(out);
    const { prefillLogits, tokens } = await model.generate([[11, 500, 4000, 65000], [7, 8]], 2);
    for (const logits of prefillLogits) {
      expect(logits.length).toBe(65024);
      expect(logits.every(Number.isFinite)).toBe(true);
      expect(spread(logits)).toBeGreaterThan(0.05);
    }
    expect(tokens[0]).not.toEqual(tokens[1]);
  });

  it('is deterministic for a seed and differs across seeds', async () => {
    const build = async (name: string, seed: number) => {
      const out = path.join(work, name);
      await createRandomModel({ out, shape: 'tiny', seed });
      return fs.readFileSync(path.join(out, 'model.onnx.data'));
    };
    const a = await build('seed-1-a', 1);
    expect(a.equals(await build('seed-1-b', 1))).toBe(true);
    expect(a.equals(await build('seed-2', 2))).toBe(false);
  });

  it('rejects an unknown shape and a bad layer count', async () => {
    await expect(createRandomModel({ out: path.join(work, 'x'), shape: 'falcon-180b' })).rejects.toThrow(/--shape falcon-180b: expected one of falcon-7b, small, tiny/);
    await expect(createRandomModel({ out: path.join(work, 'x'), shape: 'tiny', layers: 0 })).rejects.toThrow(/--layers 0/);
    expect(fs.existsSync(path.join(work, 'x'))).toBe(false);
  });

  it('builds the single-TopK head of earlier models when asked (baselines), and refuses unknown tuning', async () => {
    const shape = { ...TINY_SHAPE, vocabSize: 6144 };
    const grouped = await createRandomModel({ out: path.join(work, 'grouped'), shape });
    const single = await createRandomModel({ out: path.join(work, 'single'), shape, tuning: parseGraphTuning('grouped-top-k=0') });
    expect(grouped.manifest.io.topGroups).toBe(3);
    expect(single.manifest.io.topGroups).toBe(1);
    expect(() => parseGraphTuning('pad-k=128')).toThrow(/--graph-tuning pad-k: expected one of grouped-top-k, fuse-in/);
    expect(() => parseGraphTuning('grouped-top-k=2')).toThrow(/expected grouped-top-k=0 or grouped-top-k=1/);
  });
});
