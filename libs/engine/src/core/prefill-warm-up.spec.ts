import { FakeRunner } from '../testing/fake-runner';
import type { RowOutput, RowTokens } from '../scheduler/forward-runner';
import { prefillWarmUpShapes, TOKENS_PROFILED_AT_LOAD, warmsUpPrefill, warmUpPrefill } from './prefill-warm-up';

describe('prefillWarmUpShapes', () => {
  it('gives one all-slots shape per power-of-two bucket above 2048 tokens up to the prefill budget', () => {
    expect(prefillWarmUpShapes(256, 32768, 2048)).toEqual([
      { rows: 256, length: 16 },
      { rows: 256, length: 32 },
      { rows: 256, length: 64 },
      { rows: 256, length: 128 },
    ]);
    // A budget between two powers of two: its own bucket is warmed at the budget itself.
    expect(prefillWarmUpShapes(256, 20000, 2048).at(-1)).toEqual({ rows: 256, length: 78 });
  });

  it('skips what a run cannot reach: budgets of 2048 tokens or less, rows capped by the context', () => {
    expect(prefillWarmUpShapes(256, 2048, 2048)).toEqual([]);
    expect(prefillWarmUpShapes(256, 2049, 2048)).toEqual([]); // 256 x 8 = 2048 tokens: profiled at load
    expect(prefillWarmUpShapes(1, 32768, 2048)).toEqual([]);
    expect(prefillWarmUpShapes(4, 32768, 2048)).toEqual([{ rows: 4, length: 1024 }, { rows: 4, length: 2048 }]);
  });

  it('keeps every shape within the slots, the context and the budget, each in its own bucket above the load profile', () => {
    for (const slots of [1, 3, 17, 64, 256, 1024]) {
      for (const budget of [512, 2048, 3000, 4096, 10000, 32768, 65536]) {
        for (const context of [256, 2048]) {
          const shapes = prefillWarmUpShapes(slots, budget, context);
          const buckets = shapes.map(({ rows, length }) => 2 ** Math.ceil(Math.log2(rows * length)));
          expect(new Set(buckets).size).toBe(shapes.length);
          for (const { rows, length } of shapes) {
            expect(rows).toBeLessThanOrEqual(slots);
            expect(length).toBeLessThanOrEqual(context);
            expect(rows * length).toBeLessThanOrEqual(budget);
            expect(rows * length).toBeGreaterThan(TOKENS_PROFILED_AT_LOAD);
          }
        }
      }
    }
  });
});

describe('warmsUpPrefill', () => {
  it.each([
    [undefined, true, true],
    ['auto', true, true],
    ['auto', false, false],
    ['on', false, true],
    ['off', true, false],
  ] as const)('%s with the fpA_intB GEMM %s -> %s', (choice, fpaIntb, expected) => {
    expect(warmsUpPrefill(choice, fpaIntb)).toBe(expected);
  });
});

describe('warmUpPrefill', () => {
  it('prefills each shape over rows 0..rows-1 and leaves no row live', async () => {
    const runner = new FakeRunner({ placement: 'host', rows: 8, contextLength: 2048 });
    await warmUpPrefill(runner, [{ rows: 8, length: 512 }, { rows: 4, length: 2048 }], 11);
    expect(runner.calls).toEqual([
      { kind: 'prefill', rows: [0, 1, 2, 3, 4, 5, 6, 7], tokens: 8 * 512, fullLogits: false },
      { kind: 'prefill', rows: [0, 1, 2, 3], tokens: 4 * 2048, fullLogits: false },
    ]);
    // Live rows refuse a prefill (as the real runners do): every row is free again.
    await expect(runner.prefill(Array.from({ length: 8 }, (_, row) => ({ row, tokens: [1] })), false)).resolves.toHaveLength(8);
  });

  it('names the shape that failed and still frees its rows', async () => {
    class OutOfMemoryRunner extends FakeRunner {
      override async prefill(entries: RowTokens[], fullLogits: boolean): Promise<RowOutput[]> {
        await super.prefill(entries, fullLogits);
        throw new Error('Failed to allocate memory');
      }
    }
    const runner = new OutOfMemoryRunner({ placement: 'host', rows: 4, contextLength: 2048 });
    await expect(warmUpPrefill(runner, [{ rows: 4, length: 1024 }], 11)).rejects.toThrow(/prefill warm-up of 4 rows x 1024 tokens failed \(Failed to allocate memory\); lower prefillChunkTokens or slots/);
    await expect(FakeRunner.prototype.prefill.call(runner, [{ row: 0, tokens: [1] }], false)).resolves.toHaveLength(1);
  });
});
