import { dequantizeRowsInt4, INT4_ZERO_POINT, kBlockCount, quantizeRowsInt4 } from '@app/model';
import { Prng } from '@app/model';

describe('int4 symmetric RTN quantizer (MatMulNBits layout)', () => {
  it('packs element k of a block into byte k/2, even k in the low nibble', () => {
    // One row, one block of 16: values chosen so q = x + 8 exactly (scale = -8 / -8 = 1... with m = -8).
    const values = Float32Array.from([-8, -7, 0, 1, 2, 3, 4, 5, 6, 7, -1, -2, -3, -4, -5, -6]);
    const { packed, scales } = quantizeRowsInt4(values, 1, 16, 16);
    expect(scales[0]).toBe(1); // m = -8 -> scale = -8 / -8
    expect(Array.from(packed)).toEqual([
      (1 << 4) | 0, // k0 = -8 -> q0, k1 = -7 -> q1
      (9 << 4) | 8,
      (11 << 4) | 10,
      (13 << 4) | 12,
      (15 << 4) | 14,
      (6 << 4) | 7,
      (4 << 4) | 5,
      (2 << 4) | 3,
    ]);
  });

  it('takes the scale from the element with the largest magnitude, keeping its sign (scale = m / -8)', () => {
    const positive = quantizeRowsInt4(Float32Array.from([0.5, -1, 4, 2, ...new Array(12).fill(0)]), 1, 16, 16);
    expect(positive.scales[0]).toBeCloseTo(-0.5, 7);
    // x = 4 -> round(4 / -0.5) + 8 = 0: the largest positive value maps to code 0 exactly.
    expect(positive.packed[1] & 0x0f).toBe(0);
    const negative = quantizeRowsInt4(Float32Array.from([0.5, -4, 1, 2, ...new Array(12).fill(0)]), 1, 16, 16);
    expect(negative.scales[0]).toBeCloseTo(0.5, 7);
    expect(negative.packed[0] >> 4).toBe(0); // -4 / 0.5 + 8 = 0
    // +x_max would need q = 16: clamped to 15 (the asymmetry of the symmetric int4 range).
    const clamped = quantizeRowsInt4(Float32Array.from([4, -4, ...new Array(14).fill(0)]), 1, 16, 16);
    expect(clamped.scales[0]).toBeCloseTo(-0.5, 7);
    expect(clamped.packed[0] & 0x0f).toBe(0);
    expect(clamped.packed[0] >> 4).toBe(15);
  });

  it('quantizes each block of each row with its own scale, [rows, kBlocks] scales and [rows, kBlocks, bs/2] bytes', () => {
    const rows = 3;
    const k = 64;
    const values = new Float32Array(rows * k);
    for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) values[r * k + i] = (r + 1) * (Math.floor(i / 32) + 1) * (i % 2 ? 1 : -1) * ((i % 7) + 1);
    const { packed, scales } = quantizeRowsInt4(values, rows, k, 32);
    expect(scales.length).toBe(rows * 2);
    expect(packed.length).toBe(rows * 2 * 16);
    for (let r = 0; r < rows; r++) {
      for (let b = 0; b < 2; b++) {
        const block = values.slice(r * k + b * 32, r * k + (b + 1) * 32);
        const extreme = block.reduce((m, x) => (Math.abs(x) > Math.abs(m) ? x : m), 0);
        expect(scales[r * 2 + b]).toBeCloseTo(extreme / -8, 6);
      }
    }
  });

  it.each([16, 32, 64, 128])('stays within half a step, or one step where the code clamps at 15 (block %i)', (blockSize) => {
    const prng = new Prng(7);
    const rows = 5;
    const k = 256;
    const values = prng.fillNormal(new Float32Array(rows * k), 0.05);
    const quantized = quantizeRowsInt4(values, rows, k, blockSize);
    const restored = dequantizeRowsInt4(quantized, rows, k, blockSize);
    const kBlocks = kBlockCount(k, blockSize);
    let clampedCount = 0;
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < k; i++) {
        const scale = quantized.scales[r * kBlocks + Math.floor(i / blockSize)];
        const x = values[r * k + i];
        // Values of the opposite sign to the block's extreme, beyond 7.5 steps, clamp to code 15.
        const clamped = x / scale + INT4_ZERO_POINT > 15.5;
        const bound = clamped ? Math.abs(scale) : Math.abs(scale) / 2;
        expect(Math.abs(x - restored[r * k + i])).toBeLessThanOrEqual(bound + 1e-7);
        if (clamped) clampedCount++;
      }
    }
    expect(clampedCount).toBeLessThan((rows * k) / 50);
  });

  it('pads a last partial block with the zero point and handles an all-zero block', () => {
    const values = Float32Array.from([1, 2, 3, ...new Array(16).fill(0)]); // k = 19 -> 2 blocks of 16
    const quantized = quantizeRowsInt4(values, 1, 19, 16);
    expect(quantized.scales.length).toBe(2);
    expect(Math.abs(quantized.scales[1])).toBe(0);
    // Second block: 3 real zeros then 13 padding elements, all code 8.
    expect(Array.from(quantized.packed.slice(8))).toEqual(new Array(8).fill((INT4_ZERO_POINT << 4) | INT4_ZERO_POINT));
    expect(Array.from(dequantizeRowsInt4(quantized, 1, 19, 16).slice(3), Math.abs)).toEqual(new Array(16).fill(0));
  });

  it('rejects block sizes that MatMulNBits does not accept', () => {
    expect(() => quantizeRowsInt4(new Float32Array(48), 1, 48, 24)).toThrow(/power of 2/);
    expect(() => quantizeRowsInt4(new Float32Array(16), 1, 16, 8)).toThrow(/>= 16/);
  });
});
