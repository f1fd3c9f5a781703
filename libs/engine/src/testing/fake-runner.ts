// A ForwardRunner for scheduler tests: the "KV cache" of a row is its token history, and the next-token logits are
// a hash of that history, so any bookkeeping mistake (wrong row, wrong order, a lost token) changes the output. It
// enforces the same rules as the ONNX graph (GQA): S > 1 with past needs B = 1; device KV starts batches only when
// no row is live.

import type { ForwardRunner, JoinMode, KvPlacement, RowOutput, RowToken, RowTokens } from '../scheduler/forward-runner';

export interface FakeRunnerOptions {
  placement: KvPlacement;
  rows: number;
  vocabSize?: number;
  graphTopK?: number;
  contextLength?: number;
}

export interface FakeRunCall {
  kind: 'prefill' | 'extend' | 'decode';
  rows: number[];
  tokens: number;
  fullLogits: boolean;
}

export class FakeRunner implements ForwardRunner {
  readonly placement: KvPlacement;
  readonly joinMode: JoinMode;
  readonly rows: number;
  readonly graphTopK: number;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly calls: FakeRunCall[] = [];
  private readonly history: (number[] | null)[];

  constructor(options: FakeRunnerOptions) {
    this.placement = options.placement;
    this.joinMode = options.placement === 'device' ? 'decode' : 'prefill';
    this.rows = options.rows;
    this.vocabSize = options.vocabSize ?? 40;
    this.graphTopK = options.graphTopK ?? 8;
    this.contextLength = options.contextLength ?? 256;
    this.history = Array.from({ length: this.rows }, () => null);
  }

  /** Logits that a model with this exact history would produce. */
  logitsFor(history: readonly number[]): Float32Array {
    let h = 2166136261;
    for (const token of history) h = Math.imul(h ^ (token + 1), 16777619) >>> 0;
    const logits = new Float32Array(this.vocabSize);
    for (let v = 0; v < this.vocabSize; v++) {
      const x = Math.imul(h ^ Math.imul(v + 7, 2654435761), 2246822519) >>> 0;
      logits[v] = ((x % 10007) / 10007) * 8 - 4;
    }
    return logits;
  }

  async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
    if (this.joinMode === 'decode' && this.history.some((row) => row !== null)) {
      throw new Error('device KV: prefill while rows are live');
    }
    for (const { row } of entries) {
      if (this.joinMode === 'prefill' && this.history[row] !== null) throw new Error(`prefill of live row ${row}`);
    }
    this.calls.push({ kind: 'prefill', rows: entries.map((e) => e.row), tokens: entries.reduce((n, e) => n + e.tokens.length, 0), fullLogits });
    return entries.map(({ row, tokens }) => {
      this.history[row] = [...tokens];
      return this.output(row, fullLogits);
    });
  }

  async extend(entry: RowTokens, fullLogits: boolean): Promise<RowOutput> {
    if (this.joinMode !== 'prefill') throw new Error('extend needs joins by prefill');
    const past = this.history[entry.row];
    if (!past) throw new Error(`extend of empty row ${entry.row}`);
    this.calls.push({ kind: 'extend', rows: [entry.row], tokens: entry.tokens.length, fullLogits });
    past.push(...entry.tokens);
    this.checkContext(entry.row);
    return this.output(entry.row, fullLogits);
  }

  async decode(entries: RowToken[], fullLogits: boolean): Promise<RowOutput[]> {
    this.calls.push({ kind: 'decode', rows: entries.map((e) => e.row), tokens: entries.length, fullLogits });
    return entries.map(({ row, token }) => {
      const past = this.history[row];
      if (!past && this.joinMode === 'prefill') throw new Error(`decode of empty row ${row}`);
      this.history[row] = [...(past ?? []), token];
      this.checkContext(row);
      return this.output(row, fullLogits);
    });
  }

  release(row: number): void {
    this.history[row] = null;
  }

  dispose(): void {}

  private checkContext(row: number): void {
    if ((this.history[row]?.length ?? 0) > this.contextLength) throw new Error(`row ${row} exceeds the context`);
  }

  private output(row: number, fullLogits: boolean): RowOutput {
    const logits = this.logitsFor(this.history[row] as number[]);
    const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
    const top = order.slice(0, this.graphTopK);
    return {
      top: { ids: top, logits: top.map((id) => logits[id]) },
      ...(fullLogits ? { full: logits } : {}),
    };
  }
}

/** Decoder for the fake vocabulary: id -> one or two letters, so stop strings can span tokens. */
export const fakeDecoder = {
  decode(ids: number[]): string {
    return ids.map((id) => (id % 3 === 0 ? String.fromCharCode(97 + (id % 26)) + 'x' : String.fromCharCode(97 + (id % 26)))).join('');
  },
};
