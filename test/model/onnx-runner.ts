// A minimal generation loop over the converted model for the parity tests (the engine has the real one).
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { type ModelManifest, readManifest } from '@app/model';

export class OnnxFalcon {
  private constructor(readonly manifest: ModelManifest, private readonly session: ort.InferenceSession) {}

  static async load(dir: string): Promise<OnnxFalcon> {
    const manifest = readManifest(dir);
    return new OnnxFalcon(manifest, await ort.InferenceSession.create(path.join(dir, manifest.files.model)));
  }

  private name(pattern: string, layer: number): string {
    return pattern.replace('%d', String(layer));
  }

  /** Runs right-padded prompts (all rows prefill together), then `steps` greedy decode steps with the KV cache. */
  async generate(prompts: number[][], steps: number): Promise<{ prefillLogits: Float32Array[]; stepLogits: Float32Array[][]; tokens: number[][] }> {
    const { shape, io } = this.manifest;
    const batch = prompts.length;
    const width = Math.max(...prompts.map((p) => p.length));
    const ids = new BigInt64Array(batch * width);
    let mask: number[][] = prompts.map((p) => Array.from({ length: width }, (_, i) => (i < p.length ? 1 : 0)));
    prompts.forEach((p, b) => p.forEach((t, i) => (ids[b * width + i] = BigInt(t))));
    const past: Record<string, ort.Tensor> = {};
    for (let layer = 0; layer < shape.numLayers; layer++) {
      for (const pattern of [io.pastKey, io.pastValue]) {
        past[this.name(pattern, layer)] = new ort.Tensor('float32', new Float32Array(0), [batch, shape.numKvHeads, 0, shape.headDim]);
      }
    }
    const run = async (inputIds: ort.Tensor) => {
      const flatMask = BigInt64Array.from(mask.flat(), BigInt);
      const out = await this.session.run({ [io.inputIds]: inputIds, [io.attentionMask]: new ort.Tensor('int64', flatMask, [batch, mask[0].length]), ...past });
      for (let layer = 0; layer < shape.numLayers; layer++) {
        past[this.name(io.pastKey, layer)] = out[this.name(io.presentKey, layer)];
        past[this.name(io.pastValue, layer)] = out[this.name(io.presentValue, layer)];
      }
      const logits = out[io.logits].data as Float32Array;
      return prompts.map((_, b) => logits.slice(b * shape.vocabSize, (b + 1) * shape.vocabSize));
    };
    const argmax = (values: Float32Array) => values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
    const prefillLogits = await run(new ort.Tensor('int64', ids, [batch, width]));
    const tokens = prompts.map(() => [] as number[]);
    const stepLogits: Float32Array[][] = [];
    let current = prefillLogits;
    for (let step = 0; step < steps; step++) {
      const next = current.map(argmax);
      next.forEach((t, b) => tokens[b].push(t));
      // Each row's new token lands right after its real tokens: GQA places it at index seqlens_k.
      const lengths = mask.map((row) => row.reduce((a, v) => a + v, 0));
      mask = mask.map((row, b) => {
        const extended = [...row, 0];
        extended[lengths[b]] = 1;
        return extended;
      });
      current = await run(new ort.Tensor('int64', BigInt64Array.from(next, BigInt), [batch, 1]));
      stepLogits.push(current);
    }
    return { prefillLogits, stepLogits, tokens };
  }
}

export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxDiff / maxRef;
}
