import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelInputError } from './errors';
import type { FalconShape } from './manifest';

export const FALCON_CONTEXT_LENGTH = 2048;

/** What the converter needs from a Falcon config.json, in either the `falcon` or the older RW naming. */
export interface FalconConfig {
  shape: FalconShape;
  bosTokenId: number;
  eosTokenId: number;
  /** Checkpoint dtype as declared (informational; tensors carry their own dtype). */
  declaredDType?: string;
  tieWordEmbeddings: boolean;
}

type Json = Record<string, unknown>;

export function readFalconConfig(dir: string): FalconConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new ModelInputError(`${file}: missing (a Hugging Face Falcon checkpoint directory needs config.json)`);
  }
  let json: Json;
  try {
    json = JSON.parse(text) as Json;
  } catch (error) {
    throw new ModelInputError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  return parseFalconConfig(json, file);
}

export function parseFalconConfig(json: Json, file = 'config.json'): FalconConfig {
  const fail = (message: string): never => {
    throw new ModelInputError(`${file}: ${message}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('expected a JSON object');
  const modelType = json.model_type;
  if (modelType !== undefined && modelType !== 'falcon' && modelType !== 'RefinedWebModel' && modelType !== 'RefinedWeb') {
    fail(`model_type "${String(modelType)}" is not a Falcon model (expected "falcon" or "RefinedWebModel")`);
  }
  const integer = (names: string[], fallback?: number): number => {
    for (const name of names) {
      const value = json[name];
      if (value === undefined || value === null) continue;
      if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
      return value as number;
    }
    if (fallback !== undefined) return fallback;
    return fail(`missing ${names.join(' / ')}`);
  };
  const flag = (names: string[], fallback: boolean): boolean => {
    for (const name of names) {
      const value = json[name];
      if (value === undefined || value === null) continue;
      if (typeof value !== 'boolean') fail(`${name} must be true or false, got ${JSON.stringify(value)}`);
      return value as boolean;
    }
    return fallback;
  };
  const number = (value: unknown, name: string): number | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail(`${name} must be a positive number, got ${JSON.stringify(value)}`);
    return value as number;
  };

  if (flag(['new_decoder_architecture'], false)) {
    fail('new_decoder_architecture (Falcon-40B/180B layout) is not supported; falconq converts Falcon-7B-style models');
  }
  if (flag(['alibi'], false)) fail('alibi positional encoding is not supported; falconq needs RoPE (alibi: false)');
  if (!flag(['parallel_attn'], true)) fail('parallel_attn: false is not supported; falconq needs the parallel attention/MLP block');
  if (flag(['bias'], false)) fail('bias: true (Linear biases) is not supported');
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) fail('rope_scaling is not supported');

  const hiddenSize = integer(['hidden_size', 'n_embed']);
  const numHeads = integer(['num_attention_heads', 'n_head']);
  const numLayers = integer(['num_hidden_layers', 'n_layer']);
  const vocabSize = integer(['vocab_size']);
  if (hiddenSize % numHeads !== 0) fail(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  const headDim = hiddenSize / numHeads;
  if (headDim % 16 !== 0) fail(`head_dim ${headDim} must be a multiple of 16 (GroupQueryAttention with rotary)`);
  // Falcon-7B trap: with multi_query and the old decoder layout there is ONE kv head whatever num_kv_heads says.
  const multiQuery = flag(['multi_query'], true);
  const numKvHeads = multiQuery ? 1 : integer(['num_kv_heads', 'n_head_kv'], numHeads);
  if (numKvHeads !== 1 && numKvHeads !== numHeads) fail(`num_kv_heads ${numKvHeads} is not supported without new_decoder_architecture`);
  if (numKvHeads !== 1) fail('multi_query: false (one kv head per query head) is not supported; falconq packs QKV in the multi-query layout');
  const ffnHiddenSize = integer(['ffn_hidden_size'], 4 * hiddenSize);
  const layerNormEpsilon = number(json.layer_norm_epsilon, 'layer_norm_epsilon') ?? 1e-5;
  const ropeParameters = json.rope_parameters as Json | undefined;
  const ropeTheta = number(ropeParameters?.rope_theta, 'rope_parameters.rope_theta') ?? number(json.rope_theta, 'rope_theta') ?? 10000;
  const activation = json.activation;
  if (activation !== undefined && activation !== 'gelu') fail(`activation "${String(activation)}" is not supported (expected "gelu")`);
  const maxPositions = json.max_position_embeddings;
  if (maxPositions !== undefined && maxPositions !== null && maxPositions !== FALCON_CONTEXT_LENGTH) {
    fail(`max_position_embeddings ${String(maxPositions)} is not supported (Falcon with RoPE: ${FALCON_CONTEXT_LENGTH})`);
  }
  const eos = json.eos_token_id;
  const bos = json.bos_token_id;
  const tokenId = (value: unknown, name: string, fallback: number): number => {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= vocabSize) fail(`${name} ${JSON.stringify(value)} is not a token id below vocab_size ${vocabSize}`);
    return value as number;
  };
  const eosTokenId = tokenId(Array.isArray(eos) ? eos[0] : eos, 'eos_token_id', 11);
  const declared = json.dtype ?? json.torch_dtype;
  return {
    shape: {
      hiddenSize,
      numHeads,
      numKvHeads,
      headDim,
      numLayers,
      ffnHiddenSize,
      vocabSize,
      layerNormEpsilon,
      ropeTheta,
      contextLength: FALCON_CONTEXT_LENGTH,
    },
    bosTokenId: tokenId(bos, 'bos_token_id', eosTokenId),
    eosTokenId,
    declaredDType: typeof declared === 'string' ? declared : undefined,
    tieWordEmbeddings: flag(['tie_word_embeddings'], true),
  };
}

/** A config.json in the current transformers `falcon` naming, for a given shape. */
export function falconConfigJson(shape: FalconShape, eosTokenId = 11, torchDtype = 'float32'): Json {
  return {
    architectures: ['FalconForCausalLM'],
    model_type: 'falcon',
    hidden_size: shape.hiddenSize,
    num_attention_heads: shape.numHeads,
    num_hidden_layers: shape.numLayers,
    num_kv_heads: shape.numHeads,
    multi_query: true,
    new_decoder_architecture: false,
    parallel_attn: true,
    alibi: false,
    bias: false,
    ffn_hidden_size: shape.ffnHiddenSize,
    layer_norm_epsilon: shape.layerNormEpsilon,
    rope_theta: shape.ropeTheta,
    vocab_size: shape.vocabSize,
    bos_token_id: eosTokenId,
    eos_token_id: eosTokenId,
    torch_dtype: torchDtype,
    tie_word_embeddings: true,
  };
}
