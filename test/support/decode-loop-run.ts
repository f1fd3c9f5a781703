// Runs a model directory's decode-loop graph directly (one greedy run from an empty cache), for graph-level tests.
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { readManifest } from '@app/model';

export interface DecodeLoopRun {
  /** The last step's logits of each row. */
  logits: number[];
  /** Each step's greedy token, [steps, batch] flattened. */
  tokens: number[];
}

/** The loop file `file` of `dir` (default: its decode-loop.onnx), prompt prefilled then `steps` greedy steps. */
export async function runDecodeLoop(dir: string, options: { file?: string; steps?: number; prompt?: number[]; sessionOptions?: ort.InferenceSession.SessionOptions } = {}): Promise<DecodeLoopRun> {
  const manifest = readManifest(dir);
  const { io, shape } = manifest;
  const loop = manifest.decodeLoop?.io as NonNullable<typeof manifest.decodeLoop>['io'];
  const session = await ort.InferenceSession.create(path.join(dir, options.file ?? (manifest.files.decodeLoop as string)), options.sessionOptions ?? {});
  try {
    const prompt = options.prompt ?? [5, 17, 42, 9, 300, 11];
    const steps = options.steps ?? 3;
    const batch = 1;
    const feeds: Record<string, ort.Tensor> = {
      [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from(prompt, BigInt), [batch, prompt.length]),
      [io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [batch, prompt.length]),
      [loop.steps]: new ort.Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
      [loop.doSample]: new ort.Tensor('bool', new Uint8Array(batch), [batch]),
      [loop.temperature]: new ort.Tensor('float32', new Float32Array(batch).fill(1), [batch]),
      [loop.topK]: new ort.Tensor('int64', new BigInt64Array(batch).fill(1n), [batch]),
      [loop.topP]: new ort.Tensor('float32', new Float32Array(batch).fill(2), [batch]),
      [loop.repetitionPenalty]: new ort.Tensor('float32', new Float32Array(batch).fill(1), [batch]),
      [loop.uniforms]: new ort.Tensor('float32', new Float32Array(steps * batch), [steps, batch]),
      [loop.seen]: new ort.Tensor('bool', new Uint8Array(batch * shape.vocabSize), [batch, shape.vocabSize]),
    };
    for (let layer = 0; layer < shape.numLayers; layer++) {
      for (const name of [io.pastKey, io.pastValue]) feeds[name.replace('%d', String(layer))] = new ort.Tensor('float32', new Float32Array(0), [batch, shape.numKvHeads, 0, shape.headDim]);
    }
    const out = await session.run(feeds);
    return { logits: Array.from(out[io.logits].data as Float32Array), tokens: Array.from(out[loop.tokens].data as BigInt64Array, Number) };
  } finally {
    await session.release();
  }
}
