// A plain float64 Falcon forward pass (modeling_falcon.py semantics), to check the ONNX graph on small models.
import { Checkpoint } from './checkpoint';
import { readFalconConfig } from './config';
import { hfTensor } from './graph';
import type { FalconShape } from './manifest';
import { rotaryCaches } from './materialize';
import { dequantizeRowsInt4, quantizeRowsInt4 } from './quantize';
import type { TensorToWrite } from './safetensors';

export interface ReferenceLayer {
  normWeight: Float64Array;
  normBias: Float64Array;
  /** [rows, hidden] in the checkpoint (PyTorch) layout */
  qkv: Float64Array;
  dense: Float64Array;
  up: Float64Array;
  down: Float64Array;
}

export interface ReferenceWeights {
  shape: FalconShape;
  embedding: Float64Array;
  layers: ReferenceLayer[];
  finalNormWeight: Float64Array;
  finalNormBias: Float64Array;
  lmHead: Float64Array;
}

export interface ReferenceWeightOptions {
  /** Replace every int4-quantized weight by its dequantized value (what an int4 ONNX model computes with). */
  int4BlockSize?: number;
}

type TensorLookup = (name: string) => Float32Array | undefined;

function buildWeights(shape: FalconShape, lookup: TensorLookup, options: ReferenceWeightOptions): ReferenceWeights {
  const get = (name: string): Float32Array => {
    const values = lookup(name);
    if (!values) throw new Error(`reference: tensor ${name} is missing`);
    return values;
  };
  const plain = (name: string) => Float64Array.from(get(name));
  const linear = (name: string, k: number): Float64Array => {
    const values = get(name);
    if (options.int4BlockSize === undefined) return Float64Array.from(values);
    const rows = values.length / k;
    return Float64Array.from(dequantizeRowsInt4(quantizeRowsInt4(values, rows, k, options.int4BlockSize), rows, k, options.int4BlockSize));
  };
  const H = shape.hiddenSize;
  const lmHeadName = lookup(hfTensor.lmHead) ? hfTensor.lmHead : hfTensor.embedding;
  const lmHead = linear(lmHeadName, H);
  // int4 models embed with the int4 rows (tied: lm_head's own), fp models with the plain embedding.
  const embedding = options.int4BlockSize === undefined ? plain(hfTensor.embedding) : lmHeadName === hfTensor.embedding ? lmHead : linear(hfTensor.embedding, H);
  const layers: ReferenceLayer[] = [];
  for (let i = 0; i < shape.numLayers; i++) {
    layers.push({
      normWeight: plain(hfTensor.inputNormWeight(i)),
      normBias: plain(hfTensor.inputNormBias(i)),
      qkv: linear(hfTensor.qkv(i), H),
      dense: linear(hfTensor.dense(i), H),
      up: linear(hfTensor.up(i), H),
      down: linear(hfTensor.down(i), shape.ffnHiddenSize),
    });
  }
  return { shape, embedding, layers, finalNormWeight: plain(hfTensor.finalNormWeight), finalNormBias: plain(hfTensor.finalNormBias), lmHead };
}

export function referenceWeightsFromTensors(shape: FalconShape, tensors: TensorToWrite[], options: ReferenceWeightOptions = {}): ReferenceWeights {
  const byName = new Map(tensors.map((t) => [t.name, t.values]));
  return buildWeights(shape, (name) => byName.get(name), options);
}

export function referenceWeightsFromCheckpoint(dir: string, options: ReferenceWeightOptions = {}): ReferenceWeights {
  const { shape } = readFalconConfig(dir);
  const checkpoint = Checkpoint.open(dir);
  try {
    return buildWeights(shape, (name) => {
      if (!checkpoint.has(name)) return undefined;
      const info = checkpoint.info(name).tensor;
      return checkpoint.readRows(name, info.shape, 0, info.shape[0]);
    }, options);
  } finally {
    checkpoint.close();
  }
}

/** y[r] = sum_k x[k] * W[r, k] for W in [rows, k] layout. */
function matVec(weight: Float64Array, x: Float64Array, rows: number, k: number): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    const base = r * k;
    for (let i = 0; i < k; i++) sum += weight[base + i] * x[i];
    y[r] = sum;
  }
  return y;
}

function layerNorm(x: Float64Array, weight: Float64Array, bias: Float64Array, epsilon: number): Float64Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const inv = 1 / Math.sqrt(variance + epsilon);
  return x.map((v, i) => (v - mean) * inv * weight[i] + bias[i]);
}

/** erf to ~1e-15: Taylor series near 0, continued fraction for erfc in the tails. */
export function erf(x: number): number {
  const z = Math.abs(x);
  let result: number;
  if (z < 2.5) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 60; n++) {
      term *= (-z * z) / n;
      const contribution = term / (2 * n + 1);
      sum += contribution;
      if (Math.abs(contribution) < 1e-17 * Math.abs(sum)) break;
    }
    result = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))), evaluated bottom-up.
    let fraction = z;
    for (let n = 80; n >= 1; n--) fraction = z + n / 2 / fraction;
    result = 1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / fraction;
  }
  return x < 0 ? -result : result;
}

export function geluExact(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** Float64 Falcon; `logits(tokens)` recomputes the whole sequence (no cache), which is what the tests compare to. */
export class FalconReference {
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;

  constructor(readonly weights: ReferenceWeights) {
    const { shape } = weights;
    ({ cos: this.cos, sin: this.sin } = rotaryCaches(shape.contextLength, shape.headDim / 2, shape.ropeTheta));
  }

  /** Logits [tokens.length][vocab] for every position of one unpadded sequence. */
  allLogits(tokens: readonly number[]): Float64Array[] {
    const { shape } = this.weights;
    const H = shape.hiddenSize;
    const D = shape.headDim;
    const half = D / 2;
    let hidden = tokens.map((token) => {
      if (!Number.isInteger(token) || token < 0 || token >= shape.vocabSize) throw new Error(`reference: token ${token} out of range`);
      return this.weights.embedding.slice(token * H, (token + 1) * H);
    });
    const qkvRows = (shape.numHeads + 2 * shape.numKvHeads) * D;
    const rope = (vector: Float64Array, offset: number, position: number) => {
      for (let j = 0; j < half; j++) {
        const c = this.cos[position * half + j];
        const s = this.sin[position * half + j];
        const a = vector[offset + j];
        const b = vector[offset + j + half];
        vector[offset + j] = a * c - b * s;
        vector[offset + j + half] = b * c + a * s;
      }
    };
    for (const layer of this.weights.layers) {
      const normed = hidden.map((h) => layerNorm(h, layer.normWeight, layer.normBias, shape.layerNormEpsilon));
      const qkv = normed.map((x, position) => {
        const out = matVec(layer.qkv, x, qkvRows, H);
        for (let head = 0; head < shape.numHeads + shape.numKvHeads; head++) rope(out, head * D, position);
        return out;
      });
      const kOffset = shape.numHeads * D;
      const vOffset = kOffset + shape.numKvHeads * D;
      const headsPerKv = shape.numHeads / shape.numKvHeads;
      const scale = 1 / Math.sqrt(D);
      hidden = hidden.map((h, position) => {
        const attention = new Float64Array(H);
        for (let head = 0; head < shape.numHeads; head++) {
          const kvHead = Math.floor(head / headsPerKv);
          const scores = new Float64Array(position + 1);
          let max = -Infinity;
          for (let t = 0; t <= position; t++) {
            let dot = 0;
            for (let d = 0; d < D; d++) dot += qkv[position][head * D + d] * qkv[t][kOffset + kvHead * D + d];
            scores[t] = dot * scale;
            max = Math.max(max, scores[t]);
          }
          let total = 0;
          for (let t = 0; t <= position; t++) total += (scores[t] = Math.exp(scores[t] - max));
          for (let t = 0; t <= position; t++) {
            const p = scores[t] / total;
            for (let d = 0; d < D; d++) attention[head * D + d] += p * qkv[t][vOffset + kvHead * D + d];
          }
        }
        const attentionOut = matVec(layer.dense, attention, H, H);
        const up = matVec(layer.up, normed[position], shape.ffnHiddenSize, H).map(geluExact);
        const mlpOut = matVec(layer.down, up, H, shape.ffnHiddenSize);
        return h.map((v, i) => v + attentionOut[i] + mlpOut[i]);
      });
    }
    return hidden.map((h) => matVec(this.weights.lmHead, layerNorm(h, this.weights.finalNormWeight, this.weights.finalNormBias, shape.layerNormEpsilon), shape.vocabSize, H));
  }

  /** Logits of the last token of `tokens`. */
  logits(tokens: readonly number[]): Float64Array {
    const all = this.allLogits(tokens);
    return all[all.length - 1];
  }

  /** Greedy continuation by full recompute at each step. */
  greedy(tokens: readonly number[], steps: number): number[] {
    const sequence = [...tokens];
    const generated: number[] = [];
    for (let i = 0; i < steps; i++) {
      const logits = this.logits(sequence);
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
      generated.push(best);
      sequence.push(best);
    }
    return generated;
  }
}
