import type { EngineStats } from '@app/engine';
import { engineWindow } from './heartbeat';

const stats = (fields: Partial<EngineStats>): EngineStats => ({
  activeSequences: 0, waitingRequests: 0, slots: 64, steps: 0, generatedTokens: 0, promptTokens: 0, decodeMsTotal: 0,
  prefillMsTotal: 0, fullLogitsSteps: 0, decodeSteps: 0, decodeRuns: 0, decodeRows: 0, prefillRuns: 0, finishedSequences: 0, cancelledRequests: 0, ...fields,
});

describe('engineWindow (the heartbeat figures since the last beat)', () => {
  const last = { at: 10_000, generatedTokens: 1000, decodeSteps: 100, decodeRows: 4000, decodeMsTotal: 7000, prefillMsTotal: 500 };

  it('gives throughput, rows per decode step, ms per step and the prefill share of the window', () => {
    // 5 s: 40 steps of 75 ms over 48 rows each (+ 8 first tokens from prefills), 1 s of prefill runs.
    const window = engineWindow(last, stats({ generatedTokens: 1000 + 40 * 48 + 8, decodeSteps: 140, decodeRows: 4000 + 40 * 48, decodeMsTotal: 7000 + 40 * 75, prefillMsTotal: 1500 }), 15_000);
    expect(window).toEqual({ tokensPerSecond: 385.6, rowsPerDecodeStep: 48, decodeMsPerStep: 75, prefillShare: 0.2 });
  });

  it('leaves out the per-step figures when no step ran, and never reports negative throughput', () => {
    expect(engineWindow(last, stats({ generatedTokens: 1000, decodeSteps: 100, decodeMsTotal: 7000, prefillMsTotal: 500 }), 15_000))
      .toEqual({ tokensPerSecond: 0, prefillShare: 0 });
    // An engine restarted under the same worker starts its counters again.
    expect(engineWindow(last, stats({ generatedTokens: 10 }), 15_000)).toEqual({ tokensPerSecond: 0, prefillShare: 0 });
  });
});
