// KV cache in opaque (GPU) buffers, with joins by prefill: newcomers are prefilled in their own run (right-padded,
// past length 0; a long prompt chunk by chunk with B = 1), their presents stay on the device, and on their first
// decode a small merge graph (kv-merge-graph.ts, a second session on the same EP) scatters them into rows of the
// batch cache. So a joiner costs one prefill run and one merge run instead of one decode step per prompt token (the
// 'device' strategy), and JS still never reads a GPU buffer.
//
// The cache holds `capacity` rows, a power of two between the live rows and the slots, and every decode runs all of
// them (free rows hold one pad token at position 0; GQA reads only 0..seqlens_k[b], so stale data in a row is
// harmless). Its rows are `cacheLength` positions long: a power of two (at least 64, at most `pastLength`) that
// holds the longest sequence a live row may grow to (prompt + max new tokens). Slots map to cache rows. A reorder
// run grows the cache before newcomers that do not fit (more rows, or longer ones) are merged, and shrinks it when
// the live rows need a quarter of it or less. So a lone request decodes at batch 1, not at batch `slots`, and short
// requests do not pay for a context-long cache.

import * as ort from 'onnxruntime-node';
import type { ForwardRunner, RowOutput, RowToken, RowTokens } from '../scheduler/forward-runner';
import { fetchNames, type GraphFacts, graphFactsOf, idsTensor, kvLayoutOf, maskTensor, rowOutputs } from './graph-io';
import { buildKvMergeGraph, buildKvReorderGraph, mergeNames } from './kv-merge-graph';
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
  /** The most tokens each member's row will hold. */
  maxLengths: number[];
}

/** The shortest cache rows worth a size of their own. */
const MIN_CACHE_LENGTH = 64;

export class MergeKvRunner implements ForwardRunner {
  readonly placement = 'device-merge' as const;
  readonly joinMode = 'prefill' as const;
  readonly graphTopK: number;
  readonly contextLength: number;
  private readonly graph: GraphFacts;
  /** Tokens in the cache of each slot's sequence, and the most it will hold (live slots only). */
  private readonly lengths: Int32Array;
  private readonly maxLengths: Int32Array;
  /** Positions of each cache row (0 while there is no cache). */
  private length = 0;
  /** Cache row of each slot (-1: none, the slot is not live), and the slot in each cache row (-1: free). */
  private readonly cacheRowOf: Int32Array;
  private occupants: number[] = [];
  private cache: CacheTensors | null = null;
  private zeroCache: ort.Tensor | null = null;
  private readonly staged = new Map<number, { group: StagedGroup; member: number }>();

  private constructor(
    private readonly model: ModelSession,
    private readonly merger: ort.InferenceSession,
    private readonly reorderer: ort.InferenceSession,
    readonly rows: number,
    private readonly pastLength: number,
  ) {
    const { manifest } = model;
    this.graph = graphFactsOf(manifest);
    this.graphTopK = this.graph.topK;
    this.contextLength = Math.min(manifest.shape.contextLength, pastLength);
    this.lengths = new Int32Array(rows);
    this.maxLengths = new Int32Array(rows);
    this.cacheRowOf = new Int32Array(rows).fill(-1);
  }

  static async create(model: ModelSession, rows: number, pastLength = model.manifest.shape.contextLength): Promise<MergeKvRunner> {
    const layout = kvLayoutOf(model.manifest);
    const tensors = 2 * layout.layers;
    const spec = { tensors, kvType: layout.type, kvHeads: layout.kvHeads, headDim: layout.headDim };
    const merged = Array.from({ length: tensors }, (_, i) => mergeNames.merged(i));
    const [merger, reorderer] = await Promise.all([
      openAuxiliarySession(model, buildKvMergeGraph(spec), merged),
      openAuxiliarySession(model, buildKvReorderGraph(spec), merged),
    ]);
    return new MergeKvRunner(model, merger, reorderer, rows, pastLength);
  }

  /** Rows of the batch cache: what a decode step runs over. */
  get capacity(): number {
    return this.occupants.length;
  }

  /** Positions of each cache row. */
  get cacheLength(): number {
    return this.length;
  }

  async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
    for (const { row } of entries) {
      if (this.cacheRowOf[row] >= 0 || this.staged.has(row)) throw new Error(`device-merge KV: row ${row} is already live`);
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
      maxLengths: entries.map((entry) => Math.min(this.pastLength, entry.maxLength ?? this.pastLength)),
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
    const joining = entries.map((entry) => entry.row).filter((row) => this.staged.has(row));
    await this.shrinkIfSparse(joining);
    await this.mergeStaged(joining);
    const tokens = new Array<number>(this.capacity).fill(this.graph.pad);
    for (const { row, token } of entries) {
      if (this.cacheRowOf[row] < 0) throw new Error(`device-merge KV: decode of row ${row}, which holds no prompt`);
      tokens[this.cacheRowOf[row]] = token;
    }
    // A free cache row rewrites its position 0.
    const lengths = this.occupants.map((slot) => (slot >= 0 ? ++this.lengths[slot] : 1));
    const width = Math.max(...lengths);
    if (width > this.length) throw new Error(`device-merge KV: a row would exceed the cache length ${this.length}`);
    const previous = this.cache;
    if (!previous) throw new Error('device-merge KV: decode without a batch cache');
    const results = await this.run(idsTensor(tokens.map((token) => [token]), this.graph.pad), maskTensor(lengths, width), previous, fullLogits);
    this.cache = this.presentsOf(results);
    dispose(previous);
    return rowOutputs(results, this.graph, entries.map((entry) => this.cacheRowOf[entry.row]));
  }

  release(row: number): void {
    const cacheRow = this.cacheRowOf[row];
    if (cacheRow >= 0) {
      this.occupants[cacheRow] = -1;
      this.cacheRowOf[row] = -1;
    }
    const staged = this.staged.get(row);
    if (staged) {
      this.staged.delete(row);
      staged.group.rows[staged.member] = -1;
      this.disposeIfConsumed(staged.group);
    }
    if (this.liveCount() === 0 && this.cache) {
      dispose(this.cache);
      this.cache = null;
      this.occupants = [];
      this.length = 0;
    }
  }

  dispose(): void {
    if (this.cache) dispose(this.cache);
    this.cache = null;
    this.occupants = [];
    this.length = 0;
    const groups = new Set([...this.staged.values()].map((entry) => entry.group));
    for (const group of groups) dispose(group.cache);
    this.staged.clear();
    void this.merger.release();
    void this.reorderer.release();
  }

  private liveCount(): number {
    return this.occupants.reduce((count, slot) => count + (slot >= 0 ? 1 : 0), 0);
  }

  /** Cache rows for `needed` sequences: the next power of two, at most the slots. */
  private capacityFor(needed: number): number {
    return Math.min(this.rows, nextPowerOfTwo(needed));
  }

  /** Cache positions for rows that grow to `longest` tokens: the next power of two, at least 64, at most the past length. */
  private lengthFor(longest: number): number {
    return Math.min(this.pastLength, Math.max(MIN_CACHE_LENGTH, nextPowerOfTwo(longest)));
  }

  /** The longest the live rows and these joining ones will grow to. */
  private longestOf(joining: number[]): number {
    let longest = 1;
    for (const slot of this.occupants) if (slot >= 0) longest = Math.max(longest, this.maxLengths[slot]);
    for (const slot of joining) {
      const { group, member } = this.staged.get(slot) as { group: StagedGroup; member: number };
      longest = Math.max(longest, group.maxLengths[member]);
    }
    return longest;
  }

  /**
   * Shrinks the cache when the live rows and the joining ones need a quarter of its rows or of its length or less:
   * the live rows packed first, the length cut to what they will need.
   */
  private async shrinkIfSparse(joining: number[]): Promise<void> {
    if (!this.cache) return;
    const rows = this.capacityFor(this.liveCount() + joining.length);
    const length = this.lengthFor(this.longestOf(joining));
    const fewerRows = rows <= this.capacity / 4;
    const shorter = length <= this.length / 4;
    if (!fewerRows && !shorter) return;
    const order = fewerRows ? this.occupants.flatMap((slot, cacheRow) => (slot >= 0 ? [cacheRow] : [])) : this.occupants.map((_, cacheRow) => cacheRow);
    await this.reorder(order, fewerRows ? rows : this.capacity, shorter ? length : this.length);
  }

  /**
   * Rebuilds the cache with `capacity` rows of `length` positions: row i from row order[i] (the rest from row 0:
   * free rows, whose stale data is never read), the slots following their rows.
   */
  private async reorder(order: number[], capacity: number, length: number): Promise<void> {
    const occupants = order.map((cacheRow) => this.occupants[cacheRow]);
    const rows = [...order, ...new Array<number>(capacity - order.length).fill(0)];
    const feeds: Record<string, ort.Tensor> = {
      [mergeNames.order]: int64Tensor(rows, [capacity]),
      [mergeNames.pads]: int64Tensor([0, 0, 0, 0, 0, 0, Math.max(0, length - this.length), 0], [8]),
      [mergeNames.length]: int64Tensor([length], [1]),
      [mergeNames.starts]: int64Tensor([0], [1]),
      [mergeNames.axes]: int64Tensor([2], [1]),
    };
    this.feedCache(feeds, this.cache as CacheTensors);
    this.replaceCache(await this.reorderer.run(feeds));
    this.length = length;
    this.occupants = [...occupants, ...new Array<number>(capacity - occupants.length).fill(-1)];
    this.occupants.forEach((slot, cacheRow) => slot >= 0 && (this.cacheRowOf[slot] = cacheRow));
  }

  /** Writes the staged rows into the batch cache (grown first when they do not fit), one merge run per prefill group. */
  private async mergeStaged(rows: number[]): Promise<void> {
    const byGroup = new Map<StagedGroup, { member: number; row: number }[]>();
    for (const row of rows) {
      const { group, member } = this.staged.get(row) as { group: StagedGroup; member: number };
      byGroup.set(group, [...(byGroup.get(group) ?? []), { member, row }]);
    }
    for (const [group, members] of byGroup) {
      const capacity = Math.max(this.capacity, this.capacityFor(this.liveCount() + members.length));
      const length = Math.max(this.length, this.lengthFor(this.longestOf(members.map((m) => m.row))));
      if (!this.cache) {
        this.cache = this.zeros(capacity, length);
        this.occupants = new Array<number>(capacity).fill(-1);
        this.length = length;
      } else if (capacity > this.capacity || length > this.length) {
        await this.reorder(this.occupants.map((_, cacheRow) => cacheRow), capacity, length);
      }
      const targets = members.map(({ row }) => {
        const cacheRow = this.occupants.indexOf(-1);
        this.occupants[cacheRow] = row;
        this.cacheRowOf[row] = cacheRow;
        return cacheRow;
      });
      const feeds: Record<string, ort.Tensor> = {
        [mergeNames.select]: int64Tensor(members.map((m) => m.member), [members.length]),
        [mergeNames.rows]: int64Tensor(targets, [members.length, 1]),
        [mergeNames.pads]: int64Tensor([0, 0, 0, 0, 0, 0, this.length - group.width, 0], [8]),
      };
      this.feedCache(feeds, this.cache);
      for (let layer = 0; layer < this.graph.layout.layers; layer++) {
        feeds[mergeNames.fresh(2 * layer)] = group.cache.keys[layer];
        feeds[mergeNames.fresh(2 * layer + 1)] = group.cache.values[layer];
      }
      this.replaceCache(await this.merger.run(feeds));
      for (const { member, row } of members) {
        this.lengths[row] = group.lengths[member];
        this.maxLengths[row] = group.maxLengths[member];
        this.staged.delete(row);
        group.rows[member] = -1;
      }
      this.disposeIfConsumed(group);
    }
  }

  private feedCache(feeds: Record<string, ort.Tensor>, cache: CacheTensors): void {
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      feeds[mergeNames.batch(2 * layer)] = cache.keys[layer];
      feeds[mergeNames.batch(2 * layer + 1)] = cache.values[layer];
    }
  }

  private replaceCache(merged: ort.InferenceSession.OnnxValueMapType): void {
    const previous = this.cache;
    this.cache = {
      keys: Array.from({ length: this.graph.layout.layers }, (_, layer) => merged[mergeNames.merged(2 * layer)]),
      values: Array.from({ length: this.graph.layout.layers }, (_, layer) => merged[mergeNames.merged(2 * layer + 1)]),
    };
    if (previous) dispose(previous);
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

  /** CPU zeros [rows, kvHeads, length, headDim], shared by every layer (uploaded by ORT when used). */
  private zeros(rows: number, length: number): CacheTensors {
    if (this.zeroCache?.dims[0] !== rows || this.zeroCache.dims[2] !== length) {
      const { kvHeads, headDim, type } = this.graph.layout;
      this.zeroCache = new ort.Tensor(type, this.graph.layout.allocate(rows * kvHeads * length * headDim), [rows, kvHeads, length, headDim]);
    }
    const layers = Array.from({ length: this.graph.layout.layers }, () => this.zeroCache as ort.Tensor);
    return { keys: layers, values: layers };
  }
}

function nextPowerOfTwo(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

function int64Tensor(values: number[], dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(values, BigInt), dims);
}

function dispose(cache: CacheTensors): void {
  for (const tensor of [...cache.keys, ...cache.values]) if (tensor.location === 'gpu-buffer') tensor.dispose();
}
