// Full-size Falcon-shaped int4 models with random weights, for GPU benchmarks where the real weights can't be had.
// Speed matters (3.6 GiB for Falcon-7B): packed nibbles and scales are written straight from a fast PRNG; no float
// weight matrix is ever built.
import * as path from 'node:path';
import { FALCON_CONTEXT_LENGTH, type FalconConfig } from './config';
import { type BuildOptions, type ConvertResult, resolveBuildOptions, writeModelDirectory } from './convert';
import { ModelInputError } from './errors';
import { buildFalconGraph } from './graph';
import type { FalconShape } from './manifest';
import type { WeightMaterializer } from './materialize';
import { kBlockCount, type Int4Rows } from './quantize';
import { writeTinyTokenizer, TINY_SHAPE } from './tiny';
import { FALCON_EOS_ID } from './tokenizer/falcon-tokenizer-json';

export const FALCON_7B_SHAPE: FalconShape = {
  hiddenSize: 4544,
  numHeads: 71,
  numKvHeads: 1,
  headDim: 64,
  numLayers: 32,
  ffnHiddenSize: 18176,
  vocabSize: 65024,
  layerNormEpsilon: 1e-5,
  ropeTheta: 10000,
  contextLength: FALCON_CONTEXT_LENGTH,
};

/** Falcon-like and small enough for CPU benchmarks of the engine and the service (a step costs tens of ms there). */
export const SMALL_SHAPE: FalconShape = {
  ...FALCON_7B_SHAPE,
  hiddenSize: 1024,
  numHeads: 16,
  numLayers: 4,
  ffnHiddenSize: 4096,
  vocabSize: 8192,
};

export const RANDOM_SHAPES: Record<string, FalconShape> = { 'falcon-7b': FALCON_7B_SHAPE, small: SMALL_SHAPE, tiny: TINY_SHAPE };

/** Dequantized weights get this standard deviation (uniform codes 0..15 around 8 have std ~4.6). */
const WEIGHT_STD = 0.02;
const CODE_STD = 4.61;

/** xorshift32 fill: ~1 GB/s of random nibbles in plain JS. */
function fillRandomBytes(target: Uint8Array, state: { s: number }): void {
  const words = new Uint32Array(target.buffer, target.byteOffset, target.byteLength >>> 2);
  let s = state.s;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s;
  }
  for (let i = words.length * 4; i < target.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    target[i] = s & 0xff;
  }
  state.s = s >>> 0 || 1;
}

export class RandomInt4Materializer implements WeightMaterializer {
  private readonly state: { s: number };

  constructor(seed: number) {
    this.state = { s: (seed * 2654435761) >>> 0 || 1 };
  }

  floatRows(source: string, expectedShape: number[], start: number, count: number): Float32Array {
    const length = count * (expectedShape[1] ?? 1);
    // LayerNorm: weight ~1, bias ~0, with a little noise so rows differ.
    const isWeight = source.endsWith('.weight');
    const noise = new Uint8Array(length);
    fillRandomBytes(noise, this.state);
    return Float32Array.from(noise, (byte) => (isWeight ? 1 : 0) + (byte - 127.5) / 2550);
  }

  int4Rows(_source: string, expectedShape: number[], _start: number, count: number, blockSize: number): Int4Rows {
    const kBlocks = kBlockCount(expectedShape[1], blockSize);
    const packed = new Uint8Array(count * kBlocks * (blockSize / 2));
    fillRandomBytes(packed, this.state);
    const scales = new Float32Array(count * kBlocks);
    const scaleNoise = new Uint8Array(scales.length);
    fillRandomBytes(scaleNoise, this.state);
    const base = WEIGHT_STD / CODE_STD;
    for (let i = 0; i < scales.length; i++) scales[i] = base * (0.75 + scaleNoise[i] / 510);
    return { packed, scales };
  }
}

export interface RandomModelOptions extends BuildOptions {
  out: string;
  shape: string | FalconShape;
  /** Override the number of layers (benchmarks that cut depth). */
  layers?: number;
  seed?: number;
}

/**
 * A Falcon-shaped int4 model with random weights. Its tokenizer is the tiny byte-level BPE (384 ids): model ids
 * beyond the tokenizer's vocabulary decode to nothing.
 */
export async function createRandomModel(options: RandomModelOptions): Promise<ConvertResult> {
  const started = Date.now();
  const base = typeof options.shape === 'string' ? RANDOM_SHAPES[options.shape] : options.shape;
  if (!base) throw new ModelInputError(`--shape ${String(options.shape)}: expected one of ${Object.keys(RANDOM_SHAPES).join(', ')}`);
  if (options.layers !== undefined && (!Number.isInteger(options.layers) || options.layers < 1)) {
    throw new ModelInputError(`--layers ${options.layers}: expected a positive integer`);
  }
  const shape = { ...base, numLayers: options.layers ?? base.numLayers };
  const build = resolveBuildOptions({ ...options, weights: options.weights ?? 'int4' }, shape.hiddenSize);
  if (build.weights !== 'int4') throw new ModelInputError('random models are int4 only (--weights int4)');
  const config: FalconConfig = { shape, bosTokenId: FALCON_EOS_ID, eosTokenId: FALCON_EOS_ID, tieWordEmbeddings: true };
  const graph = buildFalconGraph({
    shape,
    weights: 'int4',
    activations: build.target === 'gpu' ? 'fp16' : 'fp32',
    blockSize: build.blockSize,
    accuracyLevel: build.accuracyLevel,
    tiedEmbedding: true,
    tuning: build.tuning,
  });
  const seed = options.seed ?? 0;
  const manifest = await writeModelDirectory({
    out: options.out,
    force: options.force ?? false,
    config,
    graph,
    build,
    materializer: new RandomInt4Materializer(seed),
    copyTokenizer: (dir) => writeTinyTokenizer(dir, TINY_SHAPE.vocabSize),
    source: { kind: 'random', id: `${typeof options.shape === 'string' ? options.shape : 'custom'}-layers-${shape.numLayers}-seed-${seed}` },
    onProgress: options.onProgress,
    signal: options.signal,
  });
  return { dir: path.resolve(options.out), manifest, seconds: (Date.now() - started) / 1000 };
}

