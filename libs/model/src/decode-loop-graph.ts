// The decode-loop graph (decode-loop.onnx): the decoder step of graph.ts wrapped in an ONNX Loop, with a token
// sampler in the loop body. One session.run decodes `loop_steps` tokens per row; the KV cache is loop-carried, so on
// an execution provider whose binding copies every input and output through the host (onnxruntime-node's CUDA EP)
// it crosses the host once per run instead of once per token. docs/engine.md ("Decode loop") explains the engine's
// side; the sampler below mirrors libs/engine's TokenSampler for the rows it is given (same candidates, same order,
// one uniform draw per token), so a seeded row gives the same tokens whichever path decodes it.
//
// With loop_steps = 1 the graph is a drop-in for model.onnx (same inputs and outputs, plus the loop's): the engine
// prefills and decodes single steps through it too, so one session (one copy of the weights) serves everything.
import type { DecodeLoopIoNames, FalconShape, ModelIoNames } from './manifest';
import { type FalconGraph, type FusedProjection, layerName, topKGroupsFor } from './graph';
import { unfuseProjections } from './projection-views';
import { type DequantizedWeight, dequantizationNodes, matMulsOverDequantizedWeights } from './dequantized-weights';
import { floatTensor, graphAttribute, int, int32Tensor, int64Tensor, type InitializerSpec, type NodeSpec, TensorDataType, type ValueInfoSpec } from './onnx/model';

export const DECODE_LOOP_FILE = 'decode-loop.onnx';
/** The same loop with its matmuls over weights dequantized once, at load (dequantized-weights.ts); int4 models only. */
export const DECODE_LOOP_DEQUANTIZED_FILE = 'decode-loop-dequantized.onnx';

/** The loop's own inputs and outputs (beside the step graph's, which keep their names). */
export const DECODE_LOOP_IO: DecodeLoopIoNames = {
  /** int64 []: decode steps in this run (>= 1). */
  steps: 'loop_steps',
  /** bool [B]: sample (true) or take the argmax (false). */
  doSample: 'sample_do',
  /** float [B] (> 0; 1 for greedy rows). */
  temperature: 'sample_temperature',
  /** int64 [B] in 1..candidates: greedy rows 1. */
  topK: 'sample_top_k',
  /** float [B] in (0, 1]; a value above 1 keeps every top-k candidate. */
  topP: 'sample_top_p',
  /** float [B] (1 = none). */
  repetitionPenalty: 'sample_repetition_penalty',
  /** float [steps, B] in [0, 1): each row's draws, in order (greedy rows: anything). */
  uniforms: 'sample_uniforms',
  /** bool [B, vocab]: tokens each row has seen (prompt and generated), for the repetition penalty. */
  seen: 'sample_seen',
  /** int64 [steps, B]: the token each row chose at each step. */
  tokens: 'tokens',
  writtenKey: 'written.%d.key',
  writtenValue: 'written.%d.value',
};

export interface DecodeLoopGraph {
  nodes: NodeSpec[];
  inputs: ValueInfoSpec[];
  outputs: ValueInfoSpec[];
  /** Small constants of the loop and its sampler (the step graph's initializers are shared as outer-scope values). */
  inlineInitializers: InitializerSpec[];
  /** How many top candidates the in-graph sampler draws from (rows with a larger top_k decode one step at a time). */
  candidates: number;
  /** Fused projections the loop runs part by part: the graph needs their view initializers (projection-views.ts). */
  projectionViews: FusedProjection[];
  /** Weights the loop reads dequantized: the graph needs their view initializers (dequantized-weights.ts). */
  dequantizedWeights: DequantizedWeight[];
}

export interface DecodeLoopOptions {
  /** Every MatMulNBits of the body as a FusedMatMul over its weight dequantized outside the loop (folded at load). */
  dequantizeWeights?: boolean;
}

const BODY_PREFIX = 'body.';

/**
 * TopK(k, sorted, largest) over the last axis of a [B, V] float tensor in two stages: the k largest of each vocabulary
 * group of at most 2048, then the k largest of those. On an H100 onnxruntime's CUDA ArgMax took 8.8 ms over
 * [256, 65024] where a grouped TopK of the same tensor took under 1 ms (docs/benchmarks.md); WebGPU sorts a group in
 * one dispatch (graph.ts). TopK puts the lower index first among equal values, in both stages, so the order (ties
 * included) is the single TopK's. One group when the vocabulary is small: a plain TopK.
 */
export function groupedTopK(input: string, values: string, ids: string, vocab: number, k: number, prefix: string): { nodes: NodeSpec[]; initializers: InitializerSpec[] } {
  const groups = topKGroupsFor(vocab, k);
  const width = vocab / groups;
  const v = (name: string) => `${prefix}.${name}`;
  const c = (name: string) => `${prefix}.const.${name}`;
  const node = (name: string, opType: string, inputs: string[], outputs: string[], attributes?: NodeSpec['attributes']): NodeSpec => ({ name: `/${prefix}/${name}`, opType, inputs, outputs, attributes });
  const top = { axis: int(-1), largest: int(1), sorted: int(1) };
  if (groups === 1) return { nodes: [node('top', 'TopK', [input, c('k')], [values, ids], top)], initializers: [int64Tensor(c('k'), [k], [1])] };
  return {
    nodes: [
      node('groups', 'Reshape', [input, c('groups_shape')], [v('groups')]),
      node('group_top', 'TopK', [v('groups'), c('k')], [v('group_values'), v('group_local_ids')], top),
      node('group_ids', 'Add', [v('group_local_ids'), c('group_starts')], [v('group_ids')]),
      node('flat_values', 'Reshape', [v('group_values'), c('flat_shape')], [v('flat_values')]),
      node('flat_ids', 'Reshape', [v('group_ids'), c('flat_shape')], [v('flat_ids')]),
      node('top', 'TopK', [v('flat_values'), c('k')], [values, v('positions')], top),
      node('ids', 'GatherElements', [v('flat_ids'), v('positions')], [ids], { axis: int(1) }),
    ],
    initializers: [
      int64Tensor(c('groups_shape'), [0, groups, width], [3]),
      int64Tensor(c('k'), [k], [1]),
      int64Tensor(c('group_starts'), Array.from({ length: groups }, (_, g) => g * width), [1, groups, 1]),
      int64Tensor(c('flat_shape'), [0, groups * k], [2]),
    ],
  };
}

/** ArgMax (lowest id on ties) of a [B, V] float tensor as a grouped TopK(k = 1): [B] int64. */
export function groupedArgmax(input: string, output: string, vocab: number, prefix: string): { nodes: NodeSpec[]; initializers: InitializerSpec[] } {
  const top = groupedTopK(input, `${prefix}.best_value`, `${prefix}.best_id`, vocab, 1, prefix);
  return {
    nodes: [...top.nodes, { name: `/${prefix}/squeeze`, opType: 'Squeeze', inputs: [`${prefix}.best_id`, `${prefix}.const.axis_1`], outputs: [output] }],
    initializers: [...top.initializers, int64Tensor(`${prefix}.const.axis_1`, [1], [1])],
  };
}

/**
 * Wraps a step graph (buildFalconGraph) in a Loop. Every value the step graph computes or takes as an input is
 * renamed inside the body (`body.` prefix); its initializers stay outer-scope values, so the weights exist once.
 */
export function buildDecodeLoopGraph(step: FalconGraph, shape: FalconShape, options: DecodeLoopOptions = {}): DecodeLoopGraph {
  const io: ModelIoNames = step.io;
  const L = DECODE_LOOP_IO;
  const V = shape.vocabSize;
  const C = Math.min(io.topK, V);
  const local = new Set<string>([...step.inputs.map((input) => input.name), ...step.nodes.flatMap((node) => node.outputs)]);
  const inBody = (name: string) => (name !== '' && local.has(name) ? BODY_PREFIX + name : name);
  const b = (name: string) => BODY_PREFIX + name;

  // The step graph's top-k of the logits is needed only after the last step: it runs outside the loop.
  const isTopK = (node: NodeSpec) => node.name === '/top_k' || node.name.startsWith('/top_k/');
  const projectionViews = step.tuning.loopProjectionViews ? step.fusedProjections : [];
  const unfused = unfuseProjections(step.nodes.filter((node) => !isTopK(node)), projectionViews);
  const { nodes: stepNodes, weights: dequantizedWeights } = options.dequantizeWeights ? matMulsOverDequantizedWeights(unfused) : { nodes: unfused, weights: [] };
  const dequantization = dequantizationNodes(dequantizedWeights);
  const body: NodeSpec[] = stepNodes.map((node) => ({ ...node, inputs: node.inputs.map(inBody), outputs: node.outputs.map(inBody) }));
  const s = (name: string) => b(`sample.${name}`);
  const into = (nodes: NodeSpec[]) => (name: string, opType: string, inputs: string[], outputs: string[], attributes?: NodeSpec['attributes']) =>
    nodes.push({ name: `/sample/${name}`, opType, inputs, outputs, attributes });
  const add = into(body);
  add('rows_vocab', 'Reshape', [b(io.logits), 'loop.const.rows_vocab'], [s('logits')]);

  // Rows that sample or penalise repetition: the full sampler (one If branch, decided once per run outside the loop).
  const sampler: NodeSpec[] = [];
  const addS = into(sampler);
  // Repetition penalty (transformers' CTRL rule), then greedy = argmax (lowest id on ties).
  addS('penalty', 'Unsqueeze', [L.repetitionPenalty, 'loop.const.axis_1'], [s('penalty')]);
  addS('negative', 'Less', [s('logits'), 'loop.const.zero_f'], [s('negative')]);
  addS('times', 'Mul', [s('logits'), s('penalty')], [s('times')]);
  addS('divided', 'Div', [s('logits'), s('penalty')], [s('divided')]);
  addS('penalised_all', 'Where', [s('negative'), s('times'), s('divided')], [s('penalised_all')]);
  addS('penalised', 'Where', [b('seen'), s('penalised_all'), s('logits')], [s('penalised')]);
  // Over vocabulary groups unless the model is built with grouped-top-k=0 (one ArgMax, one vocabulary-wide TopK).
  const groupedInitializers: InitializerSpec[] = [];
  const grouped = (nodes: NodeSpec[], built: { nodes: NodeSpec[]; initializers: InitializerSpec[] }) => {
    nodes.push(...built.nodes);
    groupedInitializers.push(...built.initializers);
  };
  const argmax = (nodes: NodeSpec[], input: string, output: string, name: string) => {
    if (step.tuning.groupedTopK) grouped(nodes, groupedArgmax(input, output, V, b(`sample.${name}`)));
    else nodes.push({ name: `/sample/${name}`, opType: 'ArgMax', inputs: [input], outputs: [output], attributes: { axis: int(1), keepdims: int(0), select_last_index: int(0) } });
  };
  argmax(sampler, s('penalised'), s('greedy'), 'greedy');
  // Temperature, top-k candidates (sorted), top-p over them, then one draw by inverse CDF.
  addS('temperature', 'Unsqueeze', [L.temperature, 'loop.const.axis_1'], [s('temperature')]);
  addS('scaled', 'Div', [s('penalised'), s('temperature')], [s('scaled')]);
  if (step.tuning.groupedTopK) grouped(sampler, groupedTopK(s('scaled'), s('cand_logits'), s('cand_ids'), V, C, b('sample.top')));
  else addS('top', 'TopK', [s('scaled'), 'loop.const.candidates'], [s('cand_logits'), s('cand_ids')], { axis: int(-1), largest: int(1), sorted: int(1) });
  addS('top_k', 'Unsqueeze', [L.topK, 'loop.const.axis_1'], [s('top_k')]);
  addS('in_top_k', 'Less', ['loop.const.positions', s('top_k')], [s('in_top_k')]);
  addS('k_logits', 'Where', [s('in_top_k'), s('cand_logits'), 'loop.const.minus_inf'], [s('k_logits')]);
  addS('k_probs', 'Softmax', [s('k_logits')], [s('k_probs')], { axis: int(-1) });
  addS('k_mass', 'CumSum', [s('k_probs'), 'loop.const.axis_1_scalar'], [s('k_mass')]);
  addS('mass_before', 'Sub', [s('k_mass'), s('k_probs')], [s('mass_before')]);
  addS('top_p', 'Unsqueeze', [L.topP, 'loop.const.axis_1'], [s('top_p')]);
  addS('in_top_p', 'Less', [s('mass_before'), s('top_p')], [s('in_top_p')]);
  addS('kept', 'And', [s('in_top_k'), s('in_top_p')], [s('kept')]);
  addS('kept_logits', 'Where', [s('kept'), s('cand_logits'), 'loop.const.minus_inf'], [s('kept_logits')]);
  addS('probs', 'Softmax', [s('kept_logits')], [s('probs')], { axis: int(-1) });
  addS('cdf', 'CumSum', [s('probs'), 'loop.const.axis_1_scalar'], [s('cdf')]);
  addS('uniform', 'Gather', [L.uniforms, b('iter')], [s('uniform_row')], { axis: int(0) });
  addS('uniform_col', 'Unsqueeze', [s('uniform_row'), 'loop.const.axis_1'], [s('uniform')]);
  addS('below', 'LessOrEqual', [s('cdf'), s('uniform')], [s('below')]);
  addS('below_count', 'Cast', [s('below')], [s('below_i64')], { to: int(TensorDataType.INT64) });
  addS('passed', 'ReduceSum', [s('below_i64'), 'loop.const.axis_1'], [s('passed')], { keepdims: int(1) });
  addS('kept_count_i64', 'Cast', [s('kept')], [s('kept_i64')], { to: int(TensorDataType.INT64) });
  addS('kept_count', 'ReduceSum', [s('kept_i64'), 'loop.const.axis_1'], [s('kept_count')], { keepdims: int(1) });
  addS('last_kept', 'Sub', [s('kept_count'), 'loop.const.one_i64'], [s('last_kept')]);
  addS('pick', 'Min', [s('passed'), s('last_kept')], [s('pick')]);
  addS('drawn_col', 'GatherElements', [s('cand_ids'), s('pick')], [s('drawn_col')], { axis: int(1) });
  addS('drawn', 'Squeeze', [s('drawn_col'), 'loop.const.axis_1'], [s('drawn')]);
  addS('token', 'Where', [L.doSample, s('drawn'), s('greedy')], [s('token_sampled')]);
  // Greedy rows without a penalty only (the common batch): the argmax, nothing else.
  const greedy: NodeSpec[] = [];
  argmax(greedy, s('logits'), s('token_greedy'), 'argmax');
  const tokenInfo = (name: string): ValueInfoSpec => ({ name, elemType: TensorDataType.INT64, dims: ['batch_size'] });
  if (step.tuning.samplerIf) {
    add('choose', 'If', ['loop.needs_sampler'], [b('token')], {
      then_branch: graphAttribute({ graphName: 'sampler', nodes: sampler, initializers: [], inputs: [], outputs: [tokenInfo(s('token_sampled'))] }),
      else_branch: graphAttribute({ graphName: 'argmax', nodes: greedy, initializers: [], inputs: [], outputs: [tokenInfo(s('token_greedy'))] }),
    });
  } else {
    body.push(...sampler);
    add('choose', 'Identity', [s('token_sampled')], [b('token')]);
  }
  // The next iteration's inputs: the token, one more mask column, the token marked seen.
  add('next_ids', 'Unsqueeze', [b('token'), 'loop.const.axis_1'], [b('next_ids')]);
  add('column_shape', 'Shape', [b('next_ids')], [s('column_shape')]);
  add('ones', 'Expand', ['loop.const.one_2d', s('column_shape')], [s('ones')]);
  add('next_mask', 'Concat', [b(io.attentionMask), s('ones')], [b('next_mask')], { axis: int(1) });
  add('trues', 'Expand', ['loop.const.true_2d', s('column_shape')], [s('trues')]);
  add('next_seen', 'ScatterElements', [b('seen'), b('next_ids'), s('trues')], [b('next_seen')], { axis: int(1) });
  add('scan_token', 'Identity', [b('token')], [b('scan_token')]);

  const pastNames = step.inputs.filter((input) => input.name !== io.inputIds && input.name !== io.attentionMask);
  const presentNames = step.outputs.filter((output) => ![io.logits, io.topLogits, io.topIds].includes(output.name));
  const scoreOutputs = step.outputs.filter((output) => output.name === io.logits);
  const relabel = (info: ValueInfoSpec, name: string, dims = info.dims): ValueInfoSpec => ({ name, elemType: info.elemType, dims });
  const anyDims = (info: ValueInfoSpec) => info.dims.map((_, i) => `${info.name}_d${i}`);
  const byName = (name: string) => step.inputs.find((input) => input.name === name) as ValueInfoSpec;

  // Carried: ids, mask, KV, seen, and the last step's scores (so steps = 1 returns what model.onnx returns).
  const bodyInputs: ValueInfoSpec[] = [
    { name: b('iter'), elemType: TensorDataType.INT64, dims: [] },
    { name: b('cond'), elemType: TensorDataType.BOOL, dims: [] },
    relabel(byName(io.inputIds), b(io.inputIds), ['batch_size', 'sequence_length']),
    relabel(byName(io.attentionMask), b(io.attentionMask), ['batch_size', 'total_sequence_length']),
    ...pastNames.map((info) => relabel(info, b(info.name))),
    { name: b('seen'), elemType: TensorDataType.BOOL, dims: ['batch_size', V] },
    ...scoreOutputs.map((info) => relabel(info, b(`carried.${info.name}`), anyDims(info))),
  ];
  const bodyOutputs: ValueInfoSpec[] = [
    // The condition passes straight through: it stays in host memory (a node would put it on the device and the
    // Loop would read it back, a stream sync every step on CUDA).
    { name: b('cond'), elemType: TensorDataType.BOOL, dims: [] },
    { name: b('next_ids'), elemType: TensorDataType.INT64, dims: ['batch_size', 1] },
    { name: b('next_mask'), elemType: TensorDataType.INT64, dims: ['batch_size', 'next_total_sequence_length'] },
    ...presentNames.map((info) => relabel(info, b(info.name))),
    { name: b('next_seen'), elemType: TensorDataType.BOOL, dims: ['batch_size', V] },
    ...scoreOutputs.map((info) => relabel(info, b(info.name))),
    { name: b('scan_token'), elemType: TensorDataType.INT64, dims: ['batch_size'] },
  ];

  const inlineInitializers: InitializerSpec[] = [
    int64Tensor('loop.const.rows_vocab', [0, V], [2]),
    int64Tensor('loop.const.axis_1', [1], [1]),
    int64Tensor('loop.const.axis_1_scalar', [1], []),
    int64Tensor('loop.const.positions', Array.from({ length: C }, (_, i) => i), [1, C]),
    int64Tensor('loop.const.one_i64', [1], []),
    int64Tensor('loop.const.one_2d', [1], [1, 1]),
    floatTensor('loop.const.zero_f', [0], []),
    floatTensor('loop.const.minus_inf', [-Infinity], []),
    { name: 'loop.const.true_2d', dataType: TensorDataType.BOOL, dims: [1, 1], raw: Buffer.from([1]) },
    { name: 'loop.const.cond', dataType: TensorDataType.BOOL, dims: [], raw: Buffer.from([1]) },
    // Empty first values of the carried scores: every iteration replaces them.
    { name: 'loop.const.no_logits', dataType: TensorDataType.FLOAT, dims: [0, 1, V], raw: Buffer.alloc(0) },
  ];
  // Once per run: does any row sample or penalise repetition? (Else every step is a plain argmax.)
  const outer: NodeSpec[] = !step.tuning.samplerIf ? [] : [
    { name: '/loop/any_sample_i32', opType: 'Cast', inputs: [L.doSample], outputs: ['loop.do_sample_i32'], attributes: { to: int(TensorDataType.INT32) } },
    { name: '/loop/any_sample', opType: 'ReduceMax', inputs: ['loop.do_sample_i32'], outputs: ['loop.any_sample_i32'], attributes: { keepdims: int(0) } },
    { name: '/loop/penalised_rows', opType: 'Equal', inputs: [L.repetitionPenalty, 'loop.const.one_f'], outputs: ['loop.no_penalty'] },
    { name: '/loop/penalised_rows_i32', opType: 'Cast', inputs: ['loop.no_penalty'], outputs: ['loop.no_penalty_i32'], attributes: { to: int(TensorDataType.INT32) } },
    { name: '/loop/all_unpenalised', opType: 'ReduceMin', inputs: ['loop.no_penalty_i32'], outputs: ['loop.all_unpenalised_i32'], attributes: { keepdims: int(0) } },
    { name: '/loop/needs_sampler_i32', opType: 'Sub', inputs: ['loop.any_sample_i32', 'loop.all_unpenalised_i32'], outputs: ['loop.needs_sampler_score'] },
    // any_sample - all_unpenalised is -1 only when no row samples and none is penalised.
    { name: '/loop/needs_sampler', opType: 'Greater', inputs: ['loop.needs_sampler_score', 'loop.const.minus_one_i32'], outputs: ['loop.needs_sampler'] },
  ];
  inlineInitializers.push(...groupedInitializers, ...dequantization.initializers);
  if (!step.tuning.groupedTopK) inlineInitializers.push(int64Tensor('loop.const.candidates', [C], [1]));
  if (step.tuning.samplerIf) inlineInitializers.push(floatTensor('loop.const.one_f', [1], []), int32Tensor('loop.const.minus_one_i32', [-1], []));
  const emptyScore = () => 'loop.const.no_logits';

  const loopNode: NodeSpec = {
    name: '/decode_loop',
    opType: 'Loop',
    inputs: [
      L.steps, 'loop.const.cond', io.inputIds, io.attentionMask, ...pastNames.map((info) => info.name), L.seen,
      ...scoreOutputs.map(() => emptyScore()),
    ],
    outputs: ['loop.last_ids', 'loop.last_mask', ...presentNames.map((info) => info.name), 'loop.last_seen', ...scoreOutputs.map((info) => info.name), L.tokens],
    attributes: {
      body: graphAttribute({ graphName: 'decode_step', nodes: body, initializers: [], inputs: bodyInputs, outputs: bodyOutputs }),
    },
  };

  const inputs: ValueInfoSpec[] = [
    ...step.inputs,
    { name: L.steps, elemType: TensorDataType.INT64, dims: [] },
    { name: L.doSample, elemType: TensorDataType.BOOL, dims: ['batch_size'] },
    { name: L.temperature, elemType: TensorDataType.FLOAT, dims: ['batch_size'] },
    { name: L.topK, elemType: TensorDataType.INT64, dims: ['batch_size'] },
    { name: L.topP, elemType: TensorDataType.FLOAT, dims: ['batch_size'] },
    { name: L.repetitionPenalty, elemType: TensorDataType.FLOAT, dims: ['batch_size'] },
    { name: L.uniforms, elemType: TensorDataType.FLOAT, dims: ['steps', 'batch_size'] },
    { name: L.seen, elemType: TensorDataType.BOOL, dims: ['batch_size', V] },
  ];
  const outputs: ValueInfoSpec[] = [
    ...step.outputs.map((info) => relabel(info, info.name, info.dims.map((dim, i) => (typeof dim === 'string' ? dim : i === 0 ? 'batch_size' : dim)))),
    { name: L.tokens, elemType: TensorDataType.INT64, dims: ['steps', 'batch_size'] },
  ];
  // Presents come out as long as the longest of past and total: keep their dims symbolic.
  for (const output of outputs) if (presentNames.some((info) => info.name === output.name)) output.dims = output.dims.map((d, i) => (i === 2 ? 'present_sequence_length' : d));
  const written = writtenWindows(step, shape);
  outputs.push(...written.outputs);
  inlineInitializers.push(...written.initializers);
  const topK = step.nodes.filter(isTopK);
  return { nodes: [...dequantization.nodes, ...outer, loopNode, ...written.nodes, ...topK], inputs, outputs, inlineInitializers, candidates: C, projectionViews, dequantizedWeights };
}

/**
 * The KV positions a decode run wrote (one token per row fed, loop_steps steps): row b's from its mask length - 1 on,
 * gathered from the final presents. A host that keeps the cache fetches these instead of the whole presents, so a
 * run's results cross back to the host as steps positions per row, not the row's whole cache.
 */
function writtenWindows(step: FalconGraph, shape: FalconShape): { nodes: NodeSpec[]; outputs: ValueInfoSpec[]; initializers: InitializerSpec[] } {
  const io = step.io;
  const L = DECODE_LOOP_IO;
  const c = (name: string) => `written.const.${name}`;
  const node = (name: string, opType: string, inputs: string[], outputs: string[], attributes?: NodeSpec['attributes']): NodeSpec => ({ name: `/written/${name}`, opType, inputs, outputs, attributes });
  const nodes: NodeSpec[] = [
    node('row_lengths', 'ReduceSum', [io.attentionMask, c('axis_1')], ['written.row_lengths'], { keepdims: int(1) }),
    node('start', 'Sub', ['written.row_lengths', c('one')], ['written.start']),
    node('offsets', 'Range', [c('zero'), L.steps, c('one')], ['written.offsets']),
    node('positions', 'Add', ['written.start', 'written.offsets'], ['written.positions']),
    node('positions_4d', 'Unsqueeze', ['written.positions', c('axes_1_3')], ['written.positions_4d']),
    node('index', 'Expand', ['written.positions_4d', c('heads_dims')], ['written.index']),
  ];
  const outputs: ValueInfoSpec[] = [];
  const presentType = step.outputs.find((output) => output.name === layerName(io.presentKey, 0))?.elemType as number;
  for (let layer = 0; layer < shape.numLayers; layer++) {
    for (const [present, written] of [[io.presentKey, L.writtenKey], [io.presentValue, L.writtenValue]] as const) {
      const name = layerName(written as string, layer);
      nodes.push(node(`${layer}/${present === io.presentKey ? 'key' : 'value'}`, 'GatherElements', [layerName(present, layer), 'written.index'], [name], { axis: int(2) }));
      outputs.push({ name, elemType: presentType, dims: ['batch_size', shape.numKvHeads, 'steps', shape.headDim] });
    }
  }
  return {
    nodes,
    outputs,
    initializers: [
      int64Tensor(c('axis_1'), [1], [1]),
      int64Tensor(c('one'), [1], []),
      int64Tensor(c('zero'), [0], []),
      int64Tensor(c('axes_1_3'), [1, 3], [2]),
      int64Tensor(c('heads_dims'), [1, shape.numKvHeads, 1, shape.headDim], [4]),
    ],
  };
}
