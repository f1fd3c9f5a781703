import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from './checkpoint';
import { FALCON_CONTEXT_LENGTH, falconConfigJson } from './config';
import { type BuildOptions, convertCheckpoint, type ConvertResult, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from './convert';
import { hfTensor } from './graph';
import type { FalconShape } from './manifest';
import { Prng } from './prng';
import { type SafetensorsDType, type TensorToWrite, writeSafetensors } from './safetensors';
import { FALCON_EOS_ID, falconTokenizerConfigJson, trainTinyTokenizer } from './tokenizer/falcon-tokenizer-json';

/** 2 layers, hidden 64, 4 query heads of 16, one kv head (multi-query), the real 2048 context. */
export const TINY_SHAPE: FalconShape = {
  hiddenSize: 64,
  numHeads: 4,
  numKvHeads: 1,
  headDim: 16,
  numLayers: 2,
  ffnHiddenSize: 256,
  vocabSize: 384,
  layerNormEpsilon: 1e-5,
  ropeTheta: 10000,
  contextLength: FALCON_CONTEXT_LENGTH,
};

export interface TinyCheckpointOptions {
  seed?: number;
  shape?: FalconShape;
  /** Element type of the safetensors. */
  dtype?: SafetensorsDType;
  /** Split the tensors over this many shards with model.safetensors.index.json (1 = a single file). */
  shards?: number;
  /** `falcon` (current transformers) or `rw` (old RefinedWeb: n_embed, n_head, n_layer). */
  configNaming?: 'falcon' | 'rw';
  /** Write lm_head.weight explicitly (untied copy) instead of relying on the tied embedding. */
  untiedLmHead?: boolean;
}

// Chosen so greedy decoding wanders instead of locking onto one token: sharp, position-dependent attention (large
// qkv weights) and layers that outweigh the tied embedding in the residual stream.
const QKV_STD = 0.4;
const LINEAR_STD = 0.1;
const EMBEDDING_STD = 0.1;

/** The tensors of a random Falcon, in checkpoint naming. */
export function randomFalconTensors(shape: FalconShape, seed: number, untiedLmHead = false): TensorToWrite[] {
  const prng = new Prng(seed);
  const H = shape.hiddenSize;
  const tensor = (name: string, dims: number[], std: number, mean = 0): TensorToWrite => ({
    name, shape: dims, values: prng.fillNormal(new Float32Array(dims.reduce((a, b) => a * b, 1)), std, mean),
  });
  const tensors = [tensor(hfTensor.embedding, [shape.vocabSize, H], EMBEDDING_STD)];
  const qkvRows = (shape.numHeads + 2 * shape.numKvHeads) * shape.headDim;
  for (let i = 0; i < shape.numLayers; i++) {
    tensors.push(
      tensor(hfTensor.inputNormWeight(i), [H], 0.1, 1),
      tensor(hfTensor.inputNormBias(i), [H], 0.05),
      tensor(hfTensor.qkv(i), [qkvRows, H], QKV_STD),
      tensor(hfTensor.dense(i), [H, H], LINEAR_STD),
      tensor(hfTensor.up(i), [shape.ffnHiddenSize, H], LINEAR_STD),
      tensor(hfTensor.down(i), [H, shape.ffnHiddenSize], LINEAR_STD),
    );
  }
  tensors.push(tensor(hfTensor.finalNormWeight, [H], 0.1, 1), tensor(hfTensor.finalNormBias, [H], 0.05));
  if (untiedLmHead) tensors.push(tensor(hfTensor.lmHead, [shape.vocabSize, H], EMBEDDING_STD));
  return tensors;
}

export function rwConfigJson(shape: FalconShape, eosTokenId = FALCON_EOS_ID): Record<string, unknown> {
  return {
    architectures: ['RWForCausalLM'],
    model_type: 'RefinedWebModel',
    n_embed: shape.hiddenSize,
    n_head: shape.numHeads,
    n_layer: shape.numLayers,
    multi_query: true,
    parallel_attn: true,
    alibi: false,
    bias: false,
    vocab_size: shape.vocabSize,
    layer_norm_epsilon: shape.layerNormEpsilon,
    bos_token_id: eosTokenId,
    eos_token_id: eosTokenId,
    torch_dtype: 'bfloat16',
  };
}

/** Writes a Hugging Face-style Falcon directory (config.json, safetensors, tokenizer files) with random weights. */
export function writeTinyCheckpoint(dir: string, options: TinyCheckpointOptions = {}): void {
  const shape = options.shape ?? TINY_SHAPE;
  if (shape.ffnHiddenSize !== 4 * shape.hiddenSize && options.configNaming === 'rw') {
    throw new Error('the RW config naming has no ffn_hidden_size: use ffn = 4 x hidden');
  }
  fs.mkdirSync(dir, { recursive: true });
  const dtype = options.dtype ?? 'F32';
  const config = options.configNaming === 'rw'
    ? rwConfigJson(shape)
    : falconConfigJson(shape, FALCON_EOS_ID, { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype]);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const tensors = randomFalconTensors(shape, options.seed ?? 0, options.untiedLmHead);
  const shards = options.shards ?? 1;
  if (shards <= 1) {
    writeSafetensors(path.join(dir, SINGLE_FILE), tensors, dtype);
  } else {
    const weightMap: Record<string, string> = {};
    const perShard = Math.ceil(tensors.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.slice(s * perShard, (s + 1) * perShard);
      writeSafetensors(path.join(dir, file), part, dtype);
      for (const tensor of part) weightMap[tensor.name] = file;
    }
    fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  }
  writeTinyTokenizer(dir, shape.vocabSize);
}

const tokenizerCache = new Map<number, string>();

export function writeTinyTokenizer(dir: string, vocabSize: number): void {
  let json = tokenizerCache.get(vocabSize);
  if (!json) {
    json = JSON.stringify(trainTinyTokenizer(vocabSize));
    tokenizerCache.set(vocabSize, json);
  }
  fs.writeFileSync(path.join(dir, TOKENIZER_FILE), json);
  fs.writeFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), JSON.stringify(falconTokenizerConfigJson(), null, 2));
}

export interface TinyModelOptions extends BuildOptions {
  out: string;
  seed?: number;
  shape?: FalconShape;
}

/** A small random Falcon converted with the normal converter (the checkpoint is written to a temp dir first). */
export async function createTinyModel(options: TinyModelOptions): Promise<ConvertResult> {
  const seed = options.seed ?? 0;
  const checkpointDir = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-tiny-hf-'));
  try {
    writeTinyCheckpoint(checkpointDir, { seed, shape: options.shape });
    return await convertCheckpoint(checkpointDir, { ...options, source: { kind: 'tiny', id: `tiny-falcon-seed-${seed}` } });
  } finally {
    fs.rmSync(checkpointDir, { recursive: true, force: true });
  }
}
