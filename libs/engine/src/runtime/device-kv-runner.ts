// KV cache that JS never reads: on webgpu the present.* outputs stay in GPU buffers ('gpu-buffer' output location)
// and are fed back as the next step's past, then the previous ones are disposed. Reading such a tensor's data
// aborts the process in onnxruntime-node 1.30, so rows cannot be copied, compacted or merged from JS:
//
// - the cache always has `rows` rows (the slots) and a past length of the full context, so every step allocates
//   the same sizes (WebGPU's buffer cache reuses them) and a row can grow to the context without a copy;
// - a batch starts with one right-padded prefill of all admitted prompts (rows without a prompt hold one pad
//   token), only when no row is live;
// - a sequence that joins a running batch takes a free row and is fed its prompt one token per decode step at the
//   row's own position (GQA writes the token at seqlens_k[b] and reads only 0..seqlens_k[b]), so joining never
//   stalls the other rows and never needs another run shape;
// - free rows carry one pad token at position 0 (cheap, and their outputs are ignored).
//
// On cpu/cuda the same strategy runs with host tensors (used by the tests to cover this path without a GPU).

import * as ort from 'onnxruntime-node';
import type { ForwardRunner, RowOutput, RowToken, RowTokens } from '../scheduler/forward-runner';
import { fetchNames, type GraphFacts, graphFactsOf, idsTensor, maskTensor, rowOutputs } from './graph-io';
import type { ModelSession } from './model-session';

export class DeviceKvRunner implements ForwardRunner {
  readonly placement = 'device' as const;
  readonly joinMode = 'decode' as const;
  readonly graphTopK: number;
  readonly contextLength: number;
  private readonly graph: GraphFacts;
  /** Tokens in each row's cache (free rows hold one pad token once a batch exists). */
  private readonly lengths: Int32Array;
  private readonly live: Uint8Array;
  private past: { keys: ort.Tensor[]; values: ort.Tensor[] } | null = null;
  private zeroPast: ort.Tensor | null = null;

  constructor(
    private readonly model: ModelSession,
    readonly rows: number,
    /** Past length of the cache; the model's context unless a smaller bound is given (bench). */
    private readonly pastLength = model.manifest.shape.contextLength,
  ) {
    const { manifest } = model;
    this.graph = graphFactsOf(manifest);
    this.graphTopK = this.graph.topK;
    this.contextLength = Math.min(manifest.shape.contextLength, pastLength);
    this.lengths = new Int32Array(rows);
    this.live = new Uint8Array(rows);
  }

  async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
    if (this.live.some((flag) => flag === 1)) throw new Error('device KV: a batch can start only when no row is live');
    this.dropPast();
    const tokensOf = new Map(entries.map((entry) => [entry.row, entry.tokens]));
    const rowsTokens = Array.from({ length: this.rows }, (_, row) => tokensOf.get(row) ?? [this.graph.pad]);
    const width = Math.max(...rowsTokens.map((tokens) => tokens.length));
    rowsTokens.forEach((tokens, row) => (this.lengths[row] = tokens.length));
    for (const { row } of entries) this.live[row] = 1;
    const results = await this.run(idsTensor(rowsTokens, this.graph.pad), maskTensor(this.lengths, width), this.zeroPastTensors(), fullLogits);
    return rowOutputs(results, this.graph, entries.map((entry) => entry.row));
  }

  extend(): Promise<RowOutput> {
    return Promise.reject(new Error('device KV: a row cannot be extended by a chunk (GQA needs B = 1 for S > 1 with past)'));
  }

  async decode(entries: RowToken[], fullLogits: boolean): Promise<RowOutput[]> {
    const tokens = new Array<number>(this.rows).fill(this.graph.pad);
    const fresh = this.past === null;
    for (const { row, token } of entries) {
      if (!this.live[row]) {
        this.live[row] = 1;
        this.lengths[row] = 0;
      }
      tokens[row] = token;
    }
    for (let row = 0; row < this.rows; row++) {
      if (this.live[row]) this.lengths[row] += 1;
      else this.lengths[row] = 1; // a free row rewrites its position 0
    }
    const width = Math.max(...this.lengths);
    if (width > this.pastLength) throw new Error(`device KV: a row would exceed the cache length ${this.pastLength}`);
    const past = fresh ? this.zeroPastTensors() : (this.past as { keys: ort.Tensor[]; values: ort.Tensor[] });
    const results = await this.run(idsTensor(tokens.map((token) => [token]), this.graph.pad), maskTensor(this.lengths, width), past, fullLogits);
    return rowOutputs(results, this.graph, entries.map((entry) => entry.row));
  }

  release(row: number): void {
    this.live[row] = 0;
    if (!this.live.some((flag) => flag === 1)) {
      this.dropPast();
      this.lengths.fill(0);
    }
  }

  dispose(): void {
    this.dropPast();
    this.zeroPast = null;
  }

  private async run(ids: ort.Tensor, mask: ort.Tensor, past: { keys: ort.Tensor[]; values: ort.Tensor[] }, fullLogits: boolean): Promise<ort.InferenceSession.OnnxValueMapType> {
    const io = this.model.manifest.io;
    const feeds: Record<string, ort.Tensor> = { [io.inputIds]: ids, [io.attentionMask]: mask };
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      feeds[this.model.pastKeyNames[layer]] = past.keys[layer];
      feeds[this.model.pastValueNames[layer]] = past.values[layer];
    }
    const presents = [...this.model.presentKeyNames, ...this.model.presentValueNames];
    const results = await this.model.session.run(feeds, fetchNames(this.graph.outputs, fullLogits, presents));
    const previous = this.past;
    this.past = {
      keys: this.model.presentKeyNames.map((name) => results[name]),
      values: this.model.presentValueNames.map((name) => results[name]),
    };
    if (previous) for (const tensor of [...previous.keys, ...previous.values]) tensor.dispose();
    return results;
  }

  /** CPU zeros [rows, kvHeads, pastLength, headDim], shared by every layer; uploaded by ORT on the first step only. */
  private zeroPastTensors(): { keys: ort.Tensor[]; values: ort.Tensor[] } {
    if (!this.zeroPast) {
      const { kvHeads, headDim, type } = this.graph.layout;
      const data = this.graph.layout.allocate(this.rows * kvHeads * this.pastLength * headDim);
      this.zeroPast = new ort.Tensor(type, data, [this.rows, kvHeads, this.pastLength, headDim]);
    }
    const layers = Array.from({ length: this.graph.layout.layers }, () => this.zeroPast as ort.Tensor);
    return { keys: layers, values: layers };
  }

  private dropPast(): void {
    if (!this.past) return;
    for (const tensor of [...this.past.keys, ...this.past.values]) tensor.dispose();
    this.past = null;
  }
}
