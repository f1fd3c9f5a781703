// Symmetric round-to-nearest int4 in the MatMulNBits layout (MLAS rule, onnxruntime core/mlas/lib/q4_dq.cpp).
//   per block: m = element with the largest |x| (sign kept), scale = m / -8, q = clamp(round(x / scale) + 8, 0, 15)
//   packing: B uint8 [N, kBlocks, blockSize / 2]; even k -> low nibble, odd k -> high nibble; zero point 8 (implicit).

export const INT4_ZERO_POINT = 8;

export interface Int4Rows {
  /** [rows, kBlocks, blockSize / 2] */
  packed: Uint8Array;
  /** [rows, kBlocks] */
  scales: Float32Array;
}

export function assertBlockSize(blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new Error(`block size ${blockSize} must be a power of 2 >= 16`);
  }
}

export function kBlockCount(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** Quantizes `rows` rows of length k (row-major, PyTorch [out, in] layout: one row = one output feature). */
export function quantizeRowsInt4(values: Float32Array, rows: number, k: number, blockSize: number): Int4Rows {
  assertBlockSize(blockSize);
  if (values.length !== rows * k) throw new Error(`quantizeRowsInt4: ${values.length} values is not ${rows} x ${k}`);
  const kBlocks = kBlockCount(k, blockSize);
  const blob = blockSize / 2;
  const packed = new Uint8Array(rows * kBlocks * blob);
  const scales = new Float32Array(rows * kBlocks);
  for (let row = 0; row < rows; row++) {
    const rowBase = row * k;
    for (let block = 0; block < kBlocks; block++) {
      const start = block * blockSize;
      const end = Math.min(start + blockSize, k);
      let extreme = 0;
      for (let i = start; i < end; i++) {
        const x = values[rowBase + i];
        if (Math.abs(x) > Math.abs(extreme)) extreme = x;
      }
      const scale = Math.fround(extreme / -8);
      const inverse = scale === 0 ? 0 : 1 / scale;
      scales[row * kBlocks + block] = scale;
      const blobBase = (row * kBlocks + block) * blob;
      for (let j = 0; j < blockSize; j++) {
        const q = start + j < end ? Math.min(15, Math.max(0, Math.round(values[rowBase + start + j] * inverse + INT4_ZERO_POINT))) : INT4_ZERO_POINT;
        const byteIndex = blobBase + (j >> 1);
        packed[byteIndex] |= j & 1 ? q << 4 : q;
      }
    }
  }
  return { packed, scales };
}

/** Inverse of quantizeRowsInt4: W[n, k] = (q - 8) * scale[n, block]. */
export function dequantizeRowsInt4(quantized: Int4Rows, rows: number, k: number, blockSize: number): Float32Array {
  const kBlocks = kBlockCount(k, blockSize);
  const blob = blockSize / 2;
  const out = new Float32Array(rows * k);
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < k; i++) {
      const block = Math.floor(i / blockSize);
      const j = i % blockSize;
      const byte = quantized.packed[(row * kBlocks + block) * blob + (j >> 1)];
      const q = j & 1 ? byte >> 4 : byte & 0x0f;
      out[row * k + i] = (q - INT4_ZERO_POINT) * quantized.scales[row * kBlocks + block];
    }
  }
  return out;
}
