// KV cache in opaque (GPU) buffers, with joins by prefill: newcomers are prefilled in their own run (right-padded,
// past length 0; a long prompt chunk by chunk with B = 1), their presents stay on the device, and on their first
// decode a small merge graph (kv-merge-graph.ts, a second session on the same EP) scatters them into their rows of
// the batch cache. So a joiner costs one prefill run and one merge run instead of one decode step per prompt
// token (the 'device' strategy), and JS still never reads a GPU buffer.
//
// Like the 'device' strategy the cache has `rows` rows of `pastLength` positions, every decode runs all rows (free
// rows hold one pad token at position 0), and GQA reads only 0..seqlens_k[b], so stale data in a row is harmless.

import * as ort from 'onnxruntime-node';
import type { ForwardRunner, RowOutput, RowToken, RowTokens } from '../scheduler/forward-runner';
import { fetchNames, type GraphFacts, graphFactsOf, idsTensor, kvLayoutOf, maskTensor, rowOutputs } from './graph-io';
import { buildKvMergeGraph, mergeNames } from './kv-merge-graph';
import { type ModelSession, openAuxiliarySession } from './model-session';

interface CacheTensors {
  keys: ort.Tensor[];
  values: ort.Tensor[];
}

/** Presents of one prefill run: [members, kvHeads, width, headDim] per layer, waiting to be merged. */
interface StagedGroup {
  cache: CacheTensors;
  width: number;
  /** Batch row of each member; -1 once merged or released. */
  rows: number[];
  lengths: number[];
}

export class MergeKvRunner implements ForwardRunner {
  readonly placement = 'device-merge' as const;
  readonly joinMode = 'prefill' as const;
  readonly graphTopK: number;
  readonly contextLength: number;
  private readonly graph: GraphFacts;
  private readonly lengths: Int32Array;
  private readonly live: Uint8Array;
  private cache: CacheTensors | null = null;
  private zeroCache: ort.Tensor | null = null;
  private readonly staged = new Map<number, { group: StagedGroup; member: number }>();

  private constructor(
    private readonly model: ModelSession,
    private readonly merger: ort.InferenceSession,
    readonly rows: number,
    private readonly pastLength: number,
  ) {
    const { manifest } = model;
    this.graph = graphFactsOf(manifest);
    this.graphTopK = this.graph.topK;
    this.contextLength = Math.min(manifest.shape.contextLength, pastLength);
    this.lengths = new Int32Array(rows);
    this.live = new Uint8Array(rows);
  }

  static async create(model: ModelSession, rows: number, pastLength = model.manifest.shape.contextLength): Promise<MergeKvRunner> {
    const layout = kvLayoutOf(model.manifest);
    const tensors = 2 * layout.layers;
    const graph = buildKvMergeGraph({ tensors, kvType: layout.type, kvHeads: layout.kvHeads, headDim: layout.headDim });
    const merged = Array.from({ length: tensors }, (_, i) => mergeNames.merged(i));
    return new MergeKvRunner(model, await openAuxiliarySession(model, graph, merged), rows, pastLength);
  }

  async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
    for (const { row } of entries) {
      if (this.live[row] || this.staged.has(row)) throw new Error(`device-merge KV: row ${row} is already live`);
    }
    const width = Math.max(...entries.map((entry) => entry.tokens.length));
    const empty = new ort.Tensor(this.graph.layout.type, this.graph.layout.allocate(0), [entries.length, this.graph.layout.kvHeads, 0, this.graph.layout.headDim]);
    const past = Array.from({ length: this.graph.layout.layers }, () => empty);
    const results = await this.run(
      idsTensor(entries.map((entry) => entry.tokens), this.graph.pad),
      maskTensor(entries.map((entry) => entry.tokens.length), width),
      { keys: past, values: past },
      fullLogits,
    );
    const group: StagedGroup = {
      cache: this.presentsOf(results),
      width,
      rows: entries.map((entry) => entry.row),
      lengths: entries.map((entry) => entry.tokens.length),
    };
    entries.forEach(({ row }, member) => this.staged.set(row, { group, member }));
    return rowOutputs(results, this.graph, entries.map((_, b) => b));
  }

  async extend(entry: RowTokens, fullLogits: boolean): Promise<RowOutput> {
    const staged = this.staged.get(entry.row);
    if (!staged || staged.group.rows.length !== 1) throw new Error(`device-merge KV: row ${entry.row} has no single staged prompt to extend`);
    const { group } = staged;
    const total = group.width + entry.tokens.length;
    const results = await this.run(idsTensor([entry.tokens], this.graph.pad), maskTensor([total], total), group.cache, fullLogits);
    dispose(group.cache);
    group.cache = this.presentsOf(results);
    group.width = total;
    group.lengths[0] = total;
    return rowOutputs(results, this.graph, [0])[0];
  }

  async decode(entries: RowToken[], fullLogits: boolean): Promise<RowOutput[]> {
    await this.mergeStaged(entries.map((entry) => entry.row).filter((row) => this.staged.has(row)));
    const tokens = new Array<number>(this.rows).fill(this.graph.pad);
    for (const { row, token } of entries) {
      if (!this.live[row]) throw new Error(`device-merge KV: decode of row ${row}, which holds no prompt`);
      tokens[row] = token;
    }
    for (let row = 0; row < this.rows; row++) this.lengths[row] = this.live[row] ? this.lengths[row] + 1 : 1;
    const width = Math.max(...this.lengths);
    if (width > this.pastLength) throw new Error(`device-merge KV: a row would exceed the cache length ${this.pastLength}`);
    const previous = this.cache;
    const results = await this.run(idsTensor(tokens.map((token) => [token]), this.graph.pad), maskTensor(this.lengths, width), previous ?? this.zeros(), fullLogits);
    this.cache = this.presentsOf(results);
    if (previous) dispose(previous);
    return rowOutputs(results, this.graph, entries.map((entry) => entry.row));
  }

  release(row: number): void {
    this.live[row] = 0;
    const staged = this.staged.get(row);
    if (staged) {
      this.staged.delete(row);
      staged.group.rows[staged.member] = -1;
      this.disposeIfConsumed(staged.group);
    }
    if (!this.live.some((flag) => flag === 1) && this.cache) {
      dispose(this.cache);
      this.cache = null;
    }
  }

  dispose(): void {
    if (this.cache) dispose(this.cache);
    this.cache = null;
    const groups = new Set([...this.staged.values()].map((entry) => entry.group));
    for (const group of groups) dispose(group.cache);
    this.staged.clear();
    void this.merger.release();
  }

  /** Writes the staged rows into the batch cache, one merge run per prefill group. */
  private async mergeStaged(rows: number[]): Promise<void> {
    const byGroup = new Map<StagedGroup, { member: number; row: number }[]>();
    for (const row of rows) {
      const { group, member } = this.staged.get(row) as { group: StagedGroup; member: number };
      byGroup.set(group, [...(byGroup.get(group) ?? []), { member, row }]);
    }
    for (const [group, members] of byGroup) {
      const base = this.cache ?? this.zeros();
      const feeds: Record<string, ort.Tensor> = {
        [mergeNames.select]: new ort.Tensor('int64', BigInt64Array.from(members, (m) => BigInt(m.member)), [members.length]),
        [mergeNames.rows]: new ort.Tensor('int64', BigInt64Array.from(members, (m) => BigInt(m.row)), [members.length, 1]),
        [mergeNames.pads]: new ort.Tensor('int64', BigInt64Array.from([0, 0, 0, 0, 0, 0, this.pastLength - group.width, 0], BigInt), [8]),
      };
      for (let layer = 0; layer < this.graph.layout.layers; layer++) {
        feeds[mergeNames.batch(2 * layer)] = base.keys[layer];
        feeds[mergeNames.batch(2 * layer + 1)] = base.values[layer];
        feeds[mergeNames.fresh(2 * layer)] = group.cache.keys[layer];
        feeds[mergeNames.fresh(2 * layer + 1)] = group.cache.values[layer];
      }
      const merged = await this.merger.run(feeds);
      const previous = this.cache;
      this.cache = {
        keys: Array.from({ length: this.graph.layout.layers }, (_, layer) => merged[mergeNames.merged(2 * layer)]),
        values: Array.from({ length: this.graph.layout.layers }, (_, layer) => merged[mergeNames.merged(2 * layer + 1)]),
      };
      if (previous) dispose(previous);
      for (const { member, row } of members) {
        this.live[row] = 1;
        this.lengths[row] = group.lengths[member];
        this.staged.delete(row);
        group.rows[member] = -1;
      }
      this.disposeIfConsumed(group);
    }
  }

  private disposeIfConsumed(group: StagedGroup): void {
    if (group.rows.every((row) => row === -1)) dispose(group.cache);
  }

  private async run(ids: ort.Tensor, mask: ort.Tensor, past: CacheTensors, fullLogits: boolean): Promise<ort.InferenceSession.OnnxValueMapType> {
    const io = this.model.manifest.io;
    const feeds: Record<string, ort.Tensor> = { [io.inputIds]: ids, [io.attentionMask]: mask };
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      feeds[this.model.pastKeyNames[layer]] = past.keys[layer];
      feeds[this.model.pastValueNames[layer]] = past.values[layer];
    }
    const presents = [...this.model.presentKeyNames, ...this.model.presentValueNames];
    return this.model.session.run(feeds, fetchNames(this.graph.outputs, fullLogits, presents));
  }

  private presentsOf(results: ort.InferenceSession.OnnxValueMapType): CacheTensors {
    return {
      keys: this.model.presentKeyNames.map((name) => results[name]),
      values: this.model.presentValueNames.map((name) => results[name]),
    };
  }

  /** CPU zeros [rows, kvHeads, pastLength, headDim], shared by every layer (uploaded by ORT when used). */
  private zeros(): CacheTensors {
    if (!this.zeroCache) {
      const { kvHeads, headDim, type } = this.graph.layout;
      this.zeroCache = new ort.Tensor(type, this.graph.layout.allocate(this.rows * kvHeads * this.pastLength * headDim), [this.rows, kvHeads, this.pastLength, headDim]);
    }
    const layers = Array.from({ length: this.graph.layout.layers }, () => this.zeroCache as ort.Tensor);
    return { keys: layers, values: layers };
  }
}

function dispose(cache: CacheTensors): void {
  for (const tensor of [...cache.keys, ...cache.values]) if (tensor.location === 'gpu-buffer') tensor.dispose();
}
