// The Falcon decoder graph (docs/falcon-onnx.md §6): GroupQueryAttention with packed QKV and fused RoPE,
// LayerNormalization/SkipLayerNormalization, exact Gelu, MatMulNBits (int4) or MatMul (fp), in-graph gather of each
// row's last real token (§6.4, right padding) and a TopK per vocabulary group over its logits.
import type { ActivationDType, FalconShape, ModelIoNames, WeightDType } from './manifest';
import { float, int, type InitializerSpec, int64Tensor, type NodeSpec, TensorDataType, type ValueInfoSpec } from './onnx/model';

export const DEFAULT_TOP_K = 64;

export const DEFAULT_IO_NAMES: ModelIoNames = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  pastKey: 'past_key_values.%d.key',
  pastValue: 'past_key_values.%d.value',
  presentKey: 'present.%d.key',
  presentValue: 'present.%d.value',
  logits: 'logits',
  topLogits: 'top_logits',
  topIds: 'top_ids',
  topK: DEFAULT_TOP_K,
};

export const layerName = (pattern: string, layer: number): string => pattern.replace('%d', String(layer));

/** Checkpoint tensor names (the same in the `falcon` and the RW checkpoints). */
export const hfTensor = {
  embedding: 'transformer.word_embeddings.weight',
  inputNormWeight: (i: number) => `transformer.h.${i}.input_layernorm.weight`,
  inputNormBias: (i: number) => `transformer.h.${i}.input_layernorm.bias`,
  qkv: (i: number) => `transformer.h.${i}.self_attention.query_key_value.weight`,
  dense: (i: number) => `transformer.h.${i}.self_attention.dense.weight`,
  up: (i: number) => `transformer.h.${i}.mlp.dense_h_to_4h.weight`,
  down: (i: number) => `transformer.h.${i}.mlp.dense_4h_to_h.weight`,
  finalNormWeight: 'transformer.ln_f.weight',
  finalNormBias: 'transformer.ln_f.bias',
  lmHead: 'lm_head.weight',
};

/** A weight the converter must materialize into the external data file, in this order. */
export type WeightJob =
  | { kind: 'vector'; name: string; source: string; length: number }
  /**
   * [rows, k] -> uint8 [rows, kBlocks, blockSize/2] + scales [rows, kBlocks]: one checkpoint weight, or several with
   * the same k stacked along the rows (output features) for a fused projection. Quantization is per row, so a fused
   * weight holds exactly its parts' codes and scales.
   */
  | { kind: 'int4-linear'; weightName: string; scalesName: string; rows: number; k: number; parts: LinearPart[] }
  /** [rows, k] checkpoint weight -> [k, rows] (transposed, for MatMul) */
  | { kind: 'float-linear'; name: string; source: string; rows: number; k: number }
  /** [rows, k] checkpoint weight as is (Gather embedding) */
  | { kind: 'float-rows'; name: string; source: string; rows: number; k: number }
  | { kind: 'rotary'; cosName: string; sinName: string; contextLength: number; halfDim: number; theta: number };

/** One checkpoint weight [rows, k] of a (possibly fused) linear layer. */
export interface LinearPart {
  source: string;
  rows: number;
  k: number;
}

/** The checkpoint tensors a job reads, with the shapes they must have. */
export function jobSources(job: WeightJob): { source: string; shape: number[] }[] {
  switch (job.kind) {
    case 'rotary':
      return [];
    case 'vector':
      return [{ source: job.source, shape: [job.length] }];
    case 'int4-linear':
      return job.parts.map((part) => ({ source: part.source, shape: [part.rows, part.k] }));
    default:
      return [{ source: job.source, shape: [job.rows, job.k] }];
  }
}

export interface GraphOptions {
  shape: FalconShape;
  weights: WeightDType;
  activations: ActivationDType;
  blockSize: number;
  accuracyLevel: number;
  /** lm_head is the embedding (absent from the checkpoint or tie_word_embeddings): int4 shares one tensor. */
  tiedEmbedding: boolean;
  io?: ModelIoNames;
  tuning?: Partial<GraphTuning>;
}

/**
 * Shape choices that change which WebGPU kernels run, not what the model computes (docs/benchmarks.md has the
 * measurements behind the defaults).
 */
export interface GraphTuning {
  /**
   * TopK over groups of at most 2048 logits (one shared-memory sort each) instead of one 65024-wide sort; in the
   * decode loop also the greedy token (two TopK(k = 1) stages instead of ArgMax) and the sampler's candidates.
   */
  groupedTopK: boolean;
  /**
   * int4: QKV and MLP-up as one MatMulNBits (Falcon's parallel block feeds both the same normed input), split
   * after. WebGPU's matmul kernels are short of workgroups at N = 4672: one N = 22848 dispatch takes the time of
   * the up-projection alone.
   */
  fuseInputProjections: boolean;
  /**
   * Decode loop: the token sampler sits in an If decided once per run (greedy batches run a bare argmax). Off: the
   * full sampler runs every step and no If is in the loop body (a CUDA If reads its condition on the host).
   */
  samplerIf: boolean;
  /**
   * Decode loop (a CUDA graph): a fused projection runs as one MatMulNBits per part, over views of the fused weights
   * in the external data file, instead of one MatMulNBits and a Split. On an H100 the Split took 2.5 ms of host time
   * per step at batch 1 and 3.3 ms of GPU time at batch 256 (docs/benchmarks.md).
   */
  loopProjectionViews: boolean;
}

export const DEFAULT_GRAPH_TUNING: GraphTuning = { groupedTopK: true, fuseInputProjections: true, samplerIf: true, loopProjectionViews: true };

const GRAPH_TUNING_KEYS: Record<string, keyof GraphTuning> = {
  'grouped-top-k': 'groupedTopK',
  'fuse-in': 'fuseInputProjections',
  'sampler-if': 'samplerIf',
  'loop-views': 'loopProjectionViews',
};

/** Largest TopK sort the WebGPU kernel does in one dispatch (shared memory). */
const TOP_K_GROUP_LIMIT = 2048;

/** Groups G such that vocab = G x width, width <= 2048 and >= k (1 when the vocabulary is small or has no such split). */
export function topKGroupsFor(vocab: number, k: number): number {
  if (vocab <= TOP_K_GROUP_LIMIT) return 1;
  for (let groups = 2; groups <= vocab; groups++) {
    if (vocab % groups !== 0) continue;
    const width = vocab / groups;
    if (width <= TOP_K_GROUP_LIMIT) return width >= k ? groups : 1;
  }
  return 1;
}

/** One MatMulNBits over several weights stacked along N, and the Split of its output into the parts' outputs. */
export interface FusedProjection {
  node: string;
  split: string;
  weightName: string;
  scalesName: string;
  parts: ProjectionPart[];
}

/** A part of a fused projection: its rows of the stacked weight, and the name it has when it runs alone. */
export interface ProjectionPart {
  node: string;
  weightName: string;
  scalesName: string;
  rows: number;
  output: string;
}

export interface FalconGraph {
  nodes: NodeSpec[];
  fusedProjections: FusedProjection[];
  inputs: ValueInfoSpec[];
  outputs: ValueInfoSpec[];
  inlineInitializers: InitializerSpec[];
  jobs: WeightJob[];
  io: ModelIoNames;
  tuning: GraphTuning;
}

export function buildFalconGraph(options: GraphOptions): FalconGraph {
  const { shape, blockSize, accuracyLevel } = options;
  const io = options.io ?? { ...DEFAULT_IO_NAMES, topK: Math.min(DEFAULT_TOP_K, shape.vocabSize) };
  const T = options.activations === 'fp16' ? TensorDataType.FLOAT16 : TensorDataType.FLOAT;
  const H = shape.hiddenSize;
  const nodes: NodeSpec[] = [];
  const jobs: WeightJob[] = [];
  const node = (name: string, opType: string, inputs: string[], outputs: string[], attributes?: NodeSpec['attributes'], domain?: string) =>
    nodes.push({ name, opType, inputs, outputs, attributes, domain });
  const ms = 'com.microsoft';

  const inlineInitializers: InitializerSpec[] = [
    int64Tensor('const.axes_1', [1], [1]),
    int64Tensor('const.one', [1], []),
    int64Tensor('const.zero', [0], []),
    int64Tensor('const.index_1', [1], []),
    int64Tensor('const.top_k', [io.topK], [1]),
  ];

  const tuning = { ...DEFAULT_GRAPH_TUNING, ...options.tuning };
  const int4 = options.weights === 'int4';
  /** y = x @ W^T, W = the parts' rows one after another (outputs side by side); int4 only. */
  const fusedProjections: FusedProjection[] = [];
  const int4Names = (nodeName: string) => {
    const base = nodeName.slice(1).replaceAll('/', '.');
    return { weightName: `${base}.weight_q4`, scalesName: `${base}.scales` };
  };
  const int4Linear = (nodeName: string, parts: LinearPart[], input: string, output: string) => {
    const { weightName, scalesName } = int4Names(nodeName);
    const rows = parts.reduce((sum, part) => sum + part.rows, 0);
    const k = parts[0].k;
    if (parts.some((part) => part.k !== k)) throw new Error(`${nodeName}: fused parts must share k`);
    jobs.push({ kind: 'int4-linear', weightName, scalesName, rows, k, parts });
    node(nodeName, 'MatMulNBits', [input, weightName, scalesName], [output], {
      K: int(k), N: int(rows), bits: int(4), block_size: int(blockSize), accuracy_level: int(accuracyLevel),
    }, ms);
  };
  /** y = x @ W^T for checkpoint weight `source` [rows, k]. */
  const linear = (nodeName: string, source: string, input: string, output: string, rows: number, k: number) => {
    if (int4) {
      int4Linear(nodeName, [{ source, rows, k }], input, output);
    } else {
      const base = nodeName.slice(1).replaceAll('/', '.');
      const name = `${base}.weight_t`;
      jobs.push({ kind: 'float-linear', name, source, rows, k });
      node(nodeName, 'MatMul', [input, name], [output]);
    }
  };
  const vector = (name: string, source: string, length: number) => {
    jobs.push({ kind: 'vector', name, source, length });
    return name;
  };

  // Attention-mask bookkeeping for GQA: seqlens_k = sum(mask) - 1 (int32), total_sequence_length = mask width.
  node('/mask/row_lengths', 'ReduceSum', [io.attentionMask, 'const.axes_1'], ['mask.row_lengths'], { keepdims: int(0) });
  node('/mask/seqlens_k_i64', 'Sub', ['mask.row_lengths', 'const.one'], ['mask.seqlens_k_i64']);
  node('/mask/seqlens_k', 'Cast', ['mask.seqlens_k_i64'], ['mask.seqlens_k'], { to: int(TensorDataType.INT32) });
  node('/mask/shape', 'Shape', [io.attentionMask], ['mask.shape']);
  node('/mask/total_length_i64', 'Gather', ['mask.shape', 'const.index_1'], ['mask.total_length_i64'], { axis: int(0) });
  node('/mask/total_length', 'Cast', ['mask.total_length_i64'], ['mask.total_length'], { to: int(TensorDataType.INT32) });

  jobs.push({ kind: 'rotary', cosName: 'cos_cache', sinName: 'sin_cache', contextLength: shape.contextLength, halfDim: shape.headDim / 2, theta: shape.ropeTheta });

  // lm_head first when it doubles as the int4 embedding (GatherBlockQuantized reads its packed weights).
  const lmHeadSource = options.tiedEmbedding ? hfTensor.embedding : hfTensor.lmHead;
  if (options.weights === 'int4') {
    const embedBase = options.tiedEmbedding ? 'lm_head' : 'embed';
    const table = { source: hfTensor.embedding, rows: shape.vocabSize, k: H };
    jobs.push({ kind: 'int4-linear', weightName: `${embedBase}.weight_q4`, scalesName: `${embedBase}.scales`, rows: table.rows, k: table.k, parts: [table] });
    inlineInitializers.push(int64Tensor('const.embed_packed_shape', [shape.vocabSize, (Math.ceil(H / blockSize) * blockSize) / 2], [2]));
    node('/embed/packed', 'Reshape', [`${embedBase}.weight_q4`, 'const.embed_packed_shape'], ['embed.packed']);
    node('/embed', 'GatherBlockQuantized', ['embed.packed', io.inputIds, `${embedBase}.scales`], ['embed.out'], {
      bits: int(4), block_size: int(blockSize), gather_axis: int(0), quantize_axis: int(1),
    }, ms);
  } else {
    jobs.push({ kind: 'float-rows', name: 'embed.weight', source: hfTensor.embedding, rows: shape.vocabSize, k: H });
    node('/embed', 'Gather', ['embed.weight', io.inputIds], ['embed.out'], { axis: int(0) });
  }

  let sum = '';
  let residual = 'embed.out';
  for (let layer = 0; layer < shape.numLayers; layer++) {
    const p = `/layers.${layer}`;
    const x = `layers.${layer}.norm.out`;
    const gamma = vector(`layers.${layer}.input_layernorm.weight`, hfTensor.inputNormWeight(layer), H);
    const beta = vector(`layers.${layer}.input_layernorm.bias`, hfTensor.inputNormBias(layer), H);
    if (layer === 0) {
      node(`${p}/input_layernorm`, 'LayerNormalization', [residual, gamma, beta], [x], { axis: int(-1), epsilon: float(shape.layerNormEpsilon), stash_type: int(1) });
    } else {
      const nextResidual = `layers.${layer}.residual`;
      node(`${p}/input_layernorm`, 'SkipLayerNormalization', [sum, residual, gamma, beta], [x, '', '', nextResidual], { epsilon: float(shape.layerNormEpsilon) }, ms);
      residual = nextResidual;
    }
    const qkvRows = (shape.numHeads + 2 * shape.numKvHeads) * shape.headDim;
    const qkvOut = `layers.${layer}.attn.qkv.out`;
    const upOut = `layers.${layer}.mlp.up.out`;
    if (int4 && tuning.fuseInputProjections) {
      const fused = `layers.${layer}.in_proj.out`;
      int4Linear(`${p}/in_proj`, [{ source: hfTensor.qkv(layer), rows: qkvRows, k: H }, { source: hfTensor.up(layer), rows: shape.ffnHiddenSize, k: H }], x, fused);
      const sizes = `const.in_proj_split`;
      if (layer === 0) inlineInitializers.push(int64Tensor(sizes, [qkvRows, shape.ffnHiddenSize], [2]));
      node(`${p}/in_proj/split`, 'Split', [fused, sizes], [qkvOut, upOut], { axis: int(-1) });
      const part = (partNode: string, rows: number, output: string): ProjectionPart => ({ node: partNode, ...int4Names(partNode), rows, output });
      fusedProjections.push({
        node: `${p}/in_proj`,
        split: `${p}/in_proj/split`,
        ...int4Names(`${p}/in_proj`),
        parts: [part(`${p}/attn/qkv`, qkvRows, qkvOut), part(`${p}/mlp/up`, shape.ffnHiddenSize, upOut)],
      });
    } else {
      linear(`${p}/attn/qkv`, hfTensor.qkv(layer), x, qkvOut, qkvRows, H);
      linear(`${p}/mlp/up`, hfTensor.up(layer), x, upOut, shape.ffnHiddenSize, H);
    }
    const attnOut = `layers.${layer}.attn.gqa.out`;
    node(`${p}/attn/gqa`, 'GroupQueryAttention', [
      qkvOut, '', '',
      layerName(io.pastKey, layer), layerName(io.pastValue, layer),
      'mask.seqlens_k', 'mask.total_length', 'cos_cache', 'sin_cache',
    ], [attnOut, layerName(io.presentKey, layer), layerName(io.presentValue, layer)], {
      num_heads: int(shape.numHeads), kv_num_heads: int(shape.numKvHeads), do_rotary: int(1), rotary_interleaved: int(0),
      scale: float(1 / Math.sqrt(shape.headDim)), local_window_size: int(-1),
    }, ms);
    const geluOut = `layers.${layer}.mlp.gelu.out`;
    node(`${p}/mlp/gelu`, 'Gelu', [upOut], [geluOut], { approximate: { string: 'none' } });
    linear(`${p}/attn/dense`, hfTensor.dense(layer), attnOut, `layers.${layer}.attn.out`, H, H);
    linear(`${p}/mlp/down`, hfTensor.down(layer), geluOut, `layers.${layer}.mlp.out`, H, shape.ffnHiddenSize);
    sum = `layers.${layer}.sum`;
    node(`${p}/add`, 'Add', [`layers.${layer}.attn.out`, `layers.${layer}.mlp.out`], [sum]);
  }
  const gamma = vector('final_layernorm.weight', hfTensor.finalNormWeight, H);
  const beta = vector('final_layernorm.bias', hfTensor.finalNormBias, H);
  node('/final_layernorm', 'SkipLayerNormalization', [sum, residual, gamma, beta], ['final.hidden'], { epsilon: float(shape.layerNormEpsilon) }, ms);

  // Row b's last real token sits at len_b - 1 in the prompt step (right padding) and at 0 in decode steps.
  node('/last_token/row_lengths', 'ReduceSum', [io.attentionMask, 'const.axes_1'], ['last.row_lengths'], { keepdims: int(1) });
  node('/last_token/ids_shape', 'Shape', [io.inputIds], ['last.ids_shape']);
  node('/last_token/new_length', 'Gather', ['last.ids_shape', 'const.index_1'], ['last.new_length'], { axis: int(0) });
  node('/last_token/past_length', 'Sub', ['mask.total_length_i64', 'last.new_length'], ['last.past_length']);
  node('/last_token/length_in_step', 'Sub', ['last.row_lengths', 'last.past_length'], ['last.length_in_step']);
  node('/last_token/raw_index', 'Sub', ['last.length_in_step', 'const.one'], ['last.raw_index']);
  node('/last_token/max_index', 'Sub', ['last.new_length', 'const.one'], ['last.max_index']);
  node('/last_token/index', 'Clip', ['last.raw_index', 'const.zero', 'last.max_index'], ['last.index']);
  node('/last_token/gather', 'GatherND', ['final.hidden', 'last.index'], ['last.hidden_2d'], { batch_dims: int(1) });
  node('/last_token/unsqueeze', 'Unsqueeze', ['last.hidden_2d', 'const.axes_1'], ['last.hidden']);

  const logitsT = options.activations === 'fp16' ? 'lm_head.out' : io.logits;
  if (options.weights === 'int4' && !options.tiedEmbedding) {
    linear('/lm_head', hfTensor.lmHead, 'last.hidden', logitsT, shape.vocabSize, H);
  } else if (options.weights === 'int4') {
    node('/lm_head', 'MatMulNBits', ['last.hidden', 'lm_head.weight_q4', 'lm_head.scales'], [logitsT], {
      K: int(H), N: int(shape.vocabSize), bits: int(4), block_size: int(blockSize), accuracy_level: int(accuracyLevel),
    }, ms);
  } else {
    linear('/lm_head', lmHeadSource, 'last.hidden', logitsT, shape.vocabSize, H);
  }
  if (options.activations === 'fp16') node('/lm_head/cast', 'Cast', [logitsT], [io.logits], { to: int(TensorDataType.FLOAT) });
  // TopK per group of the vocabulary ([B, 1, V] seen as [B, G, V/G]): WebGPU sorts a group of <= 2048 in one
  // shared-memory dispatch, while one 65024-wide row takes a 136-dispatch global bitonic sort.
  const groups = tuning.groupedTopK ? topKGroupsFor(shape.vocabSize, io.topK) : 1;
  inlineInitializers.push(int64Tensor('const.top_groups_shape', [0, groups, shape.vocabSize / groups], [3]));
  inlineInitializers.push(int64Tensor('const.top_flat_shape', [0, groups * io.topK], [2]));
  node('/top_k/groups', 'Reshape', [io.logits, 'const.top_groups_shape'], ['top.groups']);
  node('/top_k', 'TopK', ['top.groups', 'const.top_k'], ['top.values', 'top.indices'], { axis: int(-1), largest: int(1), sorted: int(1) });
  node('/top_k/values', 'Reshape', ['top.values', 'const.top_flat_shape'], [io.topLogits]);
  node('/top_k/indices', 'Reshape', ['top.indices', 'const.top_flat_shape'], [io.topIds]);
  const ioOut = { ...io, topGroups: groups };

  const kvDims = ['batch_size', shape.numKvHeads, 'past_sequence_length', shape.headDim];
  const presentDims = ['batch_size', shape.numKvHeads, 'total_sequence_length', shape.headDim];
  const inputs: ValueInfoSpec[] = [
    { name: io.inputIds, elemType: TensorDataType.INT64, dims: ['batch_size', 'sequence_length'] },
    { name: io.attentionMask, elemType: TensorDataType.INT64, dims: ['batch_size', 'total_sequence_length'] },
  ];
  const outputs: ValueInfoSpec[] = [
    { name: io.logits, elemType: TensorDataType.FLOAT, dims: ['batch_size', 1, shape.vocabSize] },
    { name: io.topLogits, elemType: TensorDataType.FLOAT, dims: ['batch_size', groups * io.topK] },
    { name: io.topIds, elemType: TensorDataType.INT64, dims: ['batch_size', groups * io.topK] },
  ];
  for (let layer = 0; layer < shape.numLayers; layer++) {
    inputs.push({ name: layerName(io.pastKey, layer), elemType: T, dims: kvDims });
    inputs.push({ name: layerName(io.pastValue, layer), elemType: T, dims: kvDims });
    outputs.push({ name: layerName(io.presentKey, layer), elemType: T, dims: presentDims });
    outputs.push({ name: layerName(io.presentValue, layer), elemType: T, dims: presentDims });
  }
  return { nodes, fusedProjections, inputs, outputs, inlineInitializers, jobs, io: ioOut, tuning };
}

/** `grouped-top-k=0,fuse-in=0,sampler-if=0,loop-views=0` (the CLI's hidden --graph-tuning, for baselines) -> GraphTuning fields. */
export function parseGraphTuning(text: string): Partial<GraphTuning> {
  const tuning: Partial<GraphTuning> = {};
  const expected = Object.keys(GRAPH_TUNING_KEYS).join(', ');
  for (const item of text.split(',').map((part) => part.trim()).filter(Boolean)) {
    const [key, value, extra] = item.split('=');
    const field = GRAPH_TUNING_KEYS[key];
    if (!field) throw new Error(`--graph-tuning ${key}: expected one of ${expected}`);
    if (extra !== undefined || (value !== '0' && value !== '1')) throw new Error(`--graph-tuning ${item}: expected ${key}=0 or ${key}=1`);
    tuning[field] = value === '1';
  }
  return tuning;
}
