// KV cache in host memory (cpu, and cuda: onnxruntime-node 1.30 has no GPU-buffer binding for CUDA).
//
// Live rows sit compacted at batch indices 0..B-1 of one buffer per layer and K/V, laid out [rows, kvHeads, cap,
// headDim]. A decode run feeds the first B rows as past [B,kvHeads,cap,headDim] and passes the same tensors as
// the present outputs, so ORT (1.30, CPU) writes each new position in place (GQA's share-buffer mode); if a
// binding copies instead, the returned presents are copied back. GQA reads only positions 0..seqlens_k[b] of a
// row, so whatever lies beyond a row's length is never used.
//
// Newcomers are prefilled in their own run (past length 0, right-padded) and staged; a long prompt is extended
// chunk by chunk with B = 1 (GQA allows S > 1 with past only for one row). A staged row joins the batch buffer on
// its first decode (one TypedArray.set per layer and head).
//
// On a decode-loop session (decode-loop.onnx, docs/engine.md "Decode loop") the same runner also decodes several
// steps per run (decodeChunk): the cache is fed once and grows inside the graph's Loop; only the positions the run
// wrote come back (the graph's written-window outputs), so on CUDA the KV crosses the host once per chunk instead of
// twice per token. Single steps run through the same graph with
// loop_steps = 1 (one session, one copy of the weights).

import * as ort from 'onnxruntime-node';
import type { ChunkEntry, ForwardRunner, RowOutput, RowSampling, RowToken, RowTokens } from '../scheduler/forward-runner';
import { fetchNames, type GraphFacts, graphFactsOf, idsTensor, type KvArray, maskTensor, rowOutputs } from './graph-io';
import { layerName, type ModelSession } from './model-session';
import type { DecodeLoopIoNames } from '@app/model';

interface StagedRow {
  length: number;
  /** Per layer, [kvHeads, length, headDim]. */
  key: KvArray[];
  value: KvArray[];
}

const CAPACITY_STEP = 64;

export class HostKvRunner implements ForwardRunner {
  readonly placement = 'host' as const;
  readonly joinMode = 'prefill' as const;
  readonly graphTopK: number;
  readonly contextLength: number;
  readonly chunkCandidates?: number;
  private readonly graph: GraphFacts;
  private capacity = 0;
  private keys: KvArray[] = [];
  private values: KvArray[] = [];
  private readonly batchRows: number[] = [];
  private readonly lengths = new Map<number, number>();
  private readonly staged = new Map<number, StagedRow>();
  /**
   * Whether the binding writes presents into the preallocated past tensors (onnxruntime-node 1.30 on CPU does, and
   * still returns a copy). Checked on the first decode; 'copy' stops preallocating and copies presents back.
   */
  private presentMode: 'unknown' | 'in-place' | 'copy' = 'unknown';
  /** The decode loop's per-layer outputs of the positions a run wrote, when the model has them. */
  private readonly written?: WrittenNames;

  constructor(
    private readonly model: ModelSession,
    readonly rows: number,
    contextLength = model.manifest.shape.contextLength,
  ) {
    const { manifest } = model;
    this.graph = graphFactsOf(manifest);
    this.graphTopK = this.graph.topK;
    this.contextLength = Math.min(contextLength, manifest.shape.contextLength);
    if (model.decodeLoop) this.chunkCandidates = manifest.decodeLoop?.candidates;
    this.written = writtenNames(manifest.decodeLoop?.io, this.graph.layout.layers);
  }

  async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
    for (const { row } of entries) {
      if (this.lengths.has(row) || this.staged.has(row)) throw new Error(`host KV: row ${row} is already live`);
    }
    const width = Math.max(...entries.map((entry) => entry.tokens.length));
    const feeds: Record<string, ort.Tensor> = {
      [this.model.manifest.io.inputIds]: idsTensor(entries.map((entry) => entry.tokens), this.graph.pad),
      [this.model.manifest.io.attentionMask]: maskTensor(entries.map((entry) => entry.tokens.length), width),
    };
    const emptyPast = this.kvTensor(this.graph.layout.allocate(0), entries.length, 0);
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      feeds[this.model.pastKeyNames[layer]] = emptyPast;
      feeds[this.model.pastValueNames[layer]] = emptyPast;
    }
    const results = await this.run(feeds, fetchNames(this.graph.outputs, fullLogits, this.presentNames()));
    entries.forEach(({ row, tokens }, b) => {
      const take = (name: string) => this.copyRow(results[name].data as KvArray, b, width, tokens.length);
      this.staged.set(row, {
        length: tokens.length,
        key: this.model.presentKeyNames.map(take),
        value: this.model.presentValueNames.map(take),
      });
    });
    return rowOutputs(results, this.graph, entries.map((_, b) => b));
  }

  async extend(entry: RowTokens, fullLogits: boolean): Promise<RowOutput> {
    const staged = this.staged.get(entry.row);
    if (!staged) throw new Error(`host KV: row ${entry.row} has no staged prompt to extend`);
    const total = staged.length + entry.tokens.length;
    const feeds: Record<string, ort.Tensor> = {
      [this.model.manifest.io.inputIds]: idsTensor([entry.tokens], this.graph.pad),
      [this.model.manifest.io.attentionMask]: maskTensor([total], total),
    };
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      feeds[this.model.pastKeyNames[layer]] = this.kvTensor(staged.key[layer], 1, staged.length);
      feeds[this.model.pastValueNames[layer]] = this.kvTensor(staged.value[layer], 1, staged.length);
    }
    const results = await this.run(feeds, fetchNames(this.graph.outputs, fullLogits, this.presentNames()));
    staged.key = this.model.presentKeyNames.map((name) => results[name].data as KvArray);
    staged.value = this.model.presentValueNames.map((name) => results[name].data as KvArray);
    staged.length = total;
    return rowOutputs(results, this.graph, [0])[0];
  }

  async decode(entries: RowToken[], fullLogits: boolean): Promise<RowOutput[]> {
    const batch = this.prepareDecode(entries, 1);
    const tokenOf = new Map(entries.map((entry) => [entry.row, entry.token]));
    const newLengths = this.batchRows.map((row) => (this.lengths.get(row) as number) + 1);
    const width = Math.max(...newLengths);
    const feeds: Record<string, ort.Tensor> = {
      [this.model.manifest.io.inputIds]: idsTensor(this.batchRows.map((row) => [tokenOf.get(row) as number]), this.graph.pad),
      [this.model.manifest.io.attentionMask]: maskTensor(newLengths, width),
    };
    const fetches: Record<string, ort.Tensor | null> = {};
    for (const name of fetchNames(this.graph.outputs, fullLogits, [])) fetches[name] = null;
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      const key = this.kvTensor(this.keys[layer].subarray(0, batch * this.rowStride()), batch, this.capacity);
      const value = this.kvTensor(this.values[layer].subarray(0, batch * this.rowStride()), batch, this.capacity);
      feeds[this.model.pastKeyNames[layer]] = key;
      feeds[this.model.pastValueNames[layer]] = value;
      fetches[this.model.presentKeyNames[layer]] = this.presentMode === 'copy' ? null : key;
      fetches[this.model.presentValueNames[layer]] = this.presentMode === 'copy' ? null : value;
    }
    Object.assign(feeds, this.loopFeeds(batch, 1));
    let results: ort.InferenceSession.OnnxValueMapType;
    try {
      results = await this.session.run(feeds, fetches);
    } catch (error) {
      // An EP that refuses preallocated host outputs (only tried on the first decode): run again, copy from then on.
      if (this.presentMode !== 'unknown') throw error;
      this.presentMode = 'copy';
      for (const name of [...this.model.presentKeyNames, ...this.model.presentValueNames]) fetches[name] = null;
      results = await this.session.run(feeds, fetches);
    }
    this.adoptPresents(results, batch);
    this.batchRows.forEach((row, b) => this.lengths.set(row, newLengths[b]));
    const indexOf = new Map(this.batchRows.map((row, b) => [row, b]));
    return rowOutputs(results, this.graph, entries.map((entry) => indexOf.get(entry.row) as number));
  }

  async decodeChunk(entries: ChunkEntry[], steps: number): Promise<number[][]> {
    const names = this.model.manifest.decodeLoop?.io;
    if (!this.model.decodeLoop || !names) throw new Error('host KV: decodeChunk needs a decode-loop session');
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`host KV: decodeChunk steps must be a positive integer, got ${steps}`);
    const batch = this.prepareDecode(entries, steps);
    const byRow = new Map(entries.map((entry) => [entry.row, entry]));
    const ordered = this.batchRows.map((row) => byRow.get(row) as ChunkEntry);
    const newLengths = this.batchRows.map((row) => (this.lengths.get(row) as number) + 1);
    const feeds: Record<string, ort.Tensor> = {
      [this.model.manifest.io.inputIds]: idsTensor(ordered.map((entry) => [entry.token]), this.graph.pad),
      [this.model.manifest.io.attentionMask]: maskTensor(newLengths, Math.max(...newLengths)),
      ...this.loopFeeds(batch, steps, ordered.map((entry) => entry.sampling)),
    };
    const written = this.written;
    const fetches: Record<string, ort.Tensor | null> = { [names.tokens]: null };
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      const key = this.kvTensor(this.keys[layer].subarray(0, batch * this.rowStride()), batch, this.capacity);
      const value = this.kvTensor(this.values[layer].subarray(0, batch * this.rowStride()), batch, this.capacity);
      feeds[this.model.pastKeyNames[layer]] = key;
      feeds[this.model.pastValueNames[layer]] = value;
      if (written) {
        // Only the positions this run wrote come back, and go into each row's place in the cache.
        fetches[written.keys[layer]] = null;
        fetches[written.values[layer]] = null;
      } else {
        // Models without those outputs: the whole presents come back into the cache buffers themselves.
        fetches[this.model.presentKeyNames[layer]] = key;
        fetches[this.model.presentValueNames[layer]] = value;
      }
    }
    const results = await this.session.run(feeds, fetches);
    if (written) this.adoptWritten(results, written, batch, steps);
    else this.adoptPresents(results, batch);
    for (const row of this.batchRows) this.lengths.set(row, (this.lengths.get(row) as number) + steps);
    const tokens = results[names.tokens].data as BigInt64Array;
    const indexOf = new Map(this.batchRows.map((row, b) => [row, b]));
    return entries.map((entry) => {
      const b = indexOf.get(entry.row) as number;
      return Array.from({ length: steps }, (_, step) => Number(tokens[step * batch + b]));
    });
  }

  release(row: number): void {
    this.staged.delete(row);
    if (!this.lengths.has(row)) return;
    this.lengths.delete(row);
    const index = this.batchRows.indexOf(row);
    const last = this.batchRows.length - 1;
    if (index !== last) {
      // Compact: the last row moves into the hole.
      const stride = this.rowStride();
      for (const buffer of [...this.keys, ...this.values]) buffer.copyWithin(index * stride, last * stride, (last + 1) * stride);
      this.batchRows[index] = this.batchRows[last];
    }
    this.batchRows.pop();
  }

  dispose(): void {
    this.keys = [];
    this.values = [];
    this.staged.clear();
  }

  // --- internals ---

  /** Joins staged rows and makes room for `steps` more positions in every row; returns the batch size. */
  private prepareDecode(entries: RowToken[], steps: number): number {
    const joining = entries.filter((entry) => this.staged.has(entry.row)).map((entry) => entry.row);
    const longest = Math.max(
      0,
      ...[...this.lengths.values()],
      ...joining.map((row) => (this.staged.get(row) as StagedRow).length),
    );
    this.fitCapacity(longest + steps);
    for (const row of joining) this.join(row);
    if (entries.length !== this.batchRows.length) {
      throw new Error(`host KV: decode must feed every live row (${this.batchRows.length}), got ${entries.length}`);
    }
    return this.batchRows.length;
  }

  private get session(): ort.InferenceSession {
    return this.model.session;
  }

  private run(feeds: Record<string, ort.Tensor>, fetch: string[]): Promise<ort.InferenceSession.OnnxValueMapType> {
    const batch = feeds[this.model.manifest.io.inputIds].dims[0];
    return this.session.run({ ...feeds, ...this.loopFeeds(batch, 1) }, fetch);
  }

  /**
   * The decode-loop graph's own inputs for `batch` rows and `steps` steps: each row's sampling, or (single steps,
   * whose tokens the scheduler samples itself from the returned scores) greedy placeholders. Empty for model.onnx.
   */
  private loopFeeds(batch: number, steps: number, rows?: RowSampling[]): Record<string, ort.Tensor> {
    const names = this.model.manifest.decodeLoop?.io;
    if (!this.model.decodeLoop || !names) return {};
    const vocab = this.graph.vocab;
    const doSample = new Uint8Array(batch);
    const temperature = new Float32Array(batch).fill(1);
    const topK = new BigInt64Array(batch).fill(1n);
    const topP = new Float32Array(batch).fill(2);
    const penalty = new Float32Array(batch).fill(1);
    const uniforms = new Float32Array(steps * batch);
    const seen = new Uint8Array(batch * vocab);
    rows?.forEach((row, b) => {
      doSample[b] = row.doSample ? 1 : 0;
      temperature[b] = row.doSample ? row.temperature : 1;
      topK[b] = BigInt(row.doSample ? row.topK : 1);
      // top_p >= 1 keeps every candidate (2 leaves no doubt about rounding of the running mass).
      topP[b] = row.topP >= 1 ? 2 : row.topP;
      penalty[b] = row.repetitionPenalty;
      if (row.doSample) for (let step = 0; step < steps; step++) uniforms[step * batch + b] = row.uniforms[step];
      if (row.repetitionPenalty !== 1) for (const id of row.seen) if (id >= 0 && id < vocab) seen[b * vocab + id] = 1;
    });
    return {
      [names.steps]: new ort.Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
      [names.doSample]: new ort.Tensor('bool', doSample, [batch]),
      [names.temperature]: new ort.Tensor('float32', temperature, [batch]),
      [names.topK]: new ort.Tensor('int64', topK, [batch]),
      [names.topP]: new ort.Tensor('float32', topP, [batch]),
      [names.repetitionPenalty]: new ort.Tensor('float32', penalty, [batch]),
      [names.uniforms]: new ort.Tensor('float32', uniforms, [steps, batch]),
      [names.seen]: new ort.Tensor('bool', seen, [batch, vocab]),
    };
  }

  private presentNames(): string[] {
    return [...this.model.presentKeyNames, ...this.model.presentValueNames];
  }

  private rowStride(capacity = this.capacity): number {
    return this.graph.layout.kvHeads * capacity * this.graph.layout.headDim;
  }

  private kvTensor(data: KvArray, batch: number, length: number): ort.Tensor {
    return new ort.Tensor(this.graph.layout.type, data, [batch, this.graph.layout.kvHeads, length, this.graph.layout.headDim]);
  }

  /** Row b of a present [B, kvHeads, width, headDim], first `length` positions, as [kvHeads, length, headDim]. */
  private copyRow(present: KvArray, b: number, width: number, length: number): KvArray {
    const { kvHeads, headDim } = this.graph.layout;
    const out = this.graph.layout.allocate(kvHeads * length * headDim);
    for (let h = 0; h < kvHeads; h++) {
      const from = ((b * kvHeads + h) * width) * headDim;
      out.set(present.subarray(from, from + length * headDim), h * length * headDim);
    }
    return out;
  }

  private join(row: number): void {
    const staged = this.staged.get(row) as StagedRow;
    this.staged.delete(row);
    const index = this.batchRows.length;
    const { kvHeads, headDim } = this.graph.layout;
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      for (let h = 0; h < kvHeads; h++) {
        const to = (index * kvHeads + h) * this.capacity * headDim;
        const from = h * staged.length * headDim;
        this.keys[layer].set(staged.key[layer].subarray(from, from + staged.length * headDim), to);
        this.values[layer].set(staged.value[layer].subarray(from, from + staged.length * headDim), to);
      }
    }
    this.batchRows.push(row);
    this.lengths.set(row, staged.length);
  }

  /** Grows (x1.5) or shrinks (when 4x too big) the per-row capacity so that `needed` positions fit. */
  private fitCapacity(needed: number): void {
    const roundUp = (n: number) => Math.min(this.contextLength, Math.ceil(n / CAPACITY_STEP) * CAPACITY_STEP);
    let target = this.capacity;
    if (needed > this.capacity) target = roundUp(Math.max(needed, Math.ceil(this.capacity * 1.5)));
    else if (this.capacity > 4 * CAPACITY_STEP && needed * 4 < this.capacity) target = roundUp(needed * 2);
    if (target !== this.capacity) this.relayout(target);
  }

  private relayout(capacity: number): void {
    const { kvHeads, headDim, layers } = this.graph.layout;
    const move = (old: KvArray | undefined): KvArray => {
      const next = this.graph.layout.allocate(this.rows * kvHeads * capacity * headDim);
      if (!old) return next;
      this.batchRows.forEach((row, b) => {
        const length = (this.lengths.get(row) as number) * headDim;
        for (let h = 0; h < kvHeads; h++) {
          const from = (b * kvHeads + h) * this.capacity * headDim;
          next.set(old.subarray(from, from + length), (b * kvHeads + h) * capacity * headDim);
        }
      });
      return next;
    };
    this.keys = Array.from({ length: layers }, (_, layer) => move(this.keys[layer]));
    this.values = Array.from({ length: layers }, (_, layer) => move(this.values[layer]));
    this.capacity = capacity;
  }

  /** Each row's `steps` new positions ([B, kvHeads, steps, headDim]) into its cache, after its current length. */
  private adoptWritten(results: ort.InferenceSession.OnnxValueMapType, written: WrittenNames, batch: number, steps: number): void {
    const { kvHeads, headDim, layers } = this.graph.layout;
    const span = steps * headDim;
    for (let layer = 0; layer < layers; layer++) {
      for (const [cache, name] of [[this.keys[layer], written.keys[layer]], [this.values[layer], written.values[layer]]] as const) {
        const window = results[name];
        if (window.dims.join(',') !== `${batch},${kvHeads},${steps},${headDim}`) {
          throw new Error(`host KV: ${name} has dims [${window.dims.join(',')}], expected [${batch},${kvHeads},${steps},${headDim}]`);
        }
        const data = window.data as KvArray;
        this.batchRows.forEach((row, b) => {
          const at = (this.lengths.get(row) as number) * headDim;
          for (let h = 0; h < kvHeads; h++) {
            const from = (b * kvHeads + h) * span;
            cache.set(data.subarray(from, from + span), (b * kvHeads + h) * this.capacity * headDim + at);
          }
        });
      }
    }
  }

  private adoptPresents(results: ort.InferenceSession.OnnxValueMapType, batch: number): void {
    if (this.presentMode === 'in-place') return;
    const elements = batch * this.rowStride();
    const pairs: [KvArray, ort.Tensor][] = [];
    for (let layer = 0; layer < this.graph.layout.layers; layer++) {
      pairs.push([this.keys[layer], results[this.model.presentKeyNames[layer]]], [this.values[layer], results[this.model.presentValueNames[layer]]]);
    }
    for (const [, present] of pairs) {
      if (present.dims[2] !== this.capacity || (present.data as KvArray).length !== elements) {
        throw new Error(`host KV: a present has dims [${present.dims.join(',')}], expected [${batch},${this.graph.layout.kvHeads},${this.capacity},${this.graph.layout.headDim}]`);
      }
    }
    if (this.presentMode === 'unknown') {
      const [ours, present] = pairs[0];
      const returned = present.data as KvArray;
      const mine = ours.subarray(0, elements);
      this.presentMode = Buffer.compare(bytesOf(mine), bytesOf(returned)) === 0 ? 'in-place' : 'copy';
      if (this.presentMode === 'in-place') return;
    }
    for (const [ours, present] of pairs) ours.set(present.data as KvArray, 0);
  }
}

interface WrittenNames {
  keys: string[];
  values: string[];
}

function writtenNames(io: DecodeLoopIoNames | undefined, layers: number): WrittenNames | undefined {
  if (!io?.writtenKey || !io.writtenValue) return undefined;
  const { writtenKey, writtenValue } = io;
  const each = (pattern: string) => Array.from({ length: layers }, (_, layer) => layerName(pattern, layer));
  return { keys: each(writtenKey), values: each(writtenValue) };
}

function bytesOf(array: KvArray): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
