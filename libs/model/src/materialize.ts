import { float32ToBytes, float32ToFloat16Bytes } from './dtype';
import type { ExternalDataWriter } from './external-data';
import type { WeightJob } from './graph';
import type { ActivationDType } from './manifest';
import { type InitializerSpec, TensorDataType } from './onnx/model';
import { type Int4Rows, kBlockCount, quantizeRowsInt4 } from './quantize';

/** Where weight values come from: a checkpoint (read + quantize) or a random generator (writes int4 directly). */
export interface WeightMaterializer {
  /** Rows [start, start+count) of `source` seen as [rows, rowLength], as float32. Validates the full shape. */
  floatRows(source: string, expectedShape: number[], start: number, count: number): Float32Array;
  int4Rows(source: string, expectedShape: number[], start: number, count: number, blockSize: number): Int4Rows;
}

export interface MaterializeOptions {
  activations: ActivationDType;
  blockSize: number;
  /** Elements per read; bounds memory for the big matrices. */
  chunkElements?: number;
  /** Called after each chunk with bytes written so far (for progress). */
  onChunk?: (bytesWritten: number) => void;
  /** Lets the event loop breathe between chunks (progress bars, signals). */
  yieldEvery?: () => Promise<void>;
}

const DEFAULT_CHUNK_ELEMENTS = 16 * 1024 * 1024;

export function activationBytes(values: Float32Array, activations: ActivationDType): Buffer {
  return activations === 'fp16' ? float32ToFloat16Bytes(values) : float32ToBytes(values);
}

export function rotaryCaches(contextLength: number, halfDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const cos = new Float32Array(contextLength * halfDim);
  const sin = new Float32Array(contextLength * halfDim);
  for (let position = 0; position < contextLength; position++) {
    for (let i = 0; i < halfDim; i++) {
      const angle = position * rotaryInverseFrequency(i, halfDim, theta);
      cos[position * halfDim + i] = Math.cos(angle);
      sin[position * halfDim + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

export function rotaryInverseFrequency(i: number, halfDim: number, theta: number): number {
  return 1 / theta ** ((2 * i) / (2 * halfDim));
}

/** Bytes a job will add to the data file (for progress totals), padding excluded. */
export function jobBytes(job: WeightJob, activations: ActivationDType, blockSize: number): number {
  const elementBytes = activations === 'fp16' ? 2 : 4;
  switch (job.kind) {
    case 'vector':
      return job.length * elementBytes;
    case 'int4-linear': {
      const blocks = job.rows * kBlockCount(job.k, blockSize);
      return blocks * (blockSize / 2) + blocks * elementBytes;
    }
    case 'float-linear':
    case 'float-rows':
      return job.rows * job.k * elementBytes;
    case 'rotary':
      return 2 * job.contextLength * job.halfDim * elementBytes;
  }
}

export async function materializeJob(job: WeightJob, source: WeightMaterializer, writer: ExternalDataWriter, options: MaterializeOptions): Promise<InitializerSpec[]> {
  const T = options.activations === 'fp16' ? TensorDataType.FLOAT16 : TensorDataType.FLOAT;
  const chunkElements = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
  const report = () => options.onChunk?.(writer.size);
  const breathe = async () => {
    report();
    await options.yieldEvery?.();
  };
  switch (job.kind) {
    case 'vector': {
      const values = source.floatRows(job.source, [job.length], 0, job.length);
      const external = writer.write(activationBytes(values, options.activations));
      await breathe();
      return [{ name: job.name, dataType: T, dims: [job.length], external }];
    }
    case 'rotary': {
      const { cos, sin } = rotaryCaches(job.contextLength, job.halfDim, job.theta);
      const dims = [job.contextLength, job.halfDim];
      const cosLocation = writer.write(activationBytes(cos, options.activations));
      const sinLocation = writer.write(activationBytes(sin, options.activations));
      await breathe();
      return [
        { name: job.cosName, dataType: T, dims, external: cosLocation },
        { name: job.sinName, dataType: T, dims, external: sinLocation },
      ];
    }
    case 'float-rows': {
      const rowsPerChunk = Math.max(1, Math.floor(chunkElements / job.k));
      writer.begin();
      for (let start = 0; start < job.rows; start += rowsPerChunk) {
        const count = Math.min(rowsPerChunk, job.rows - start);
        writer.append(activationBytes(source.floatRows(job.source, [job.rows, job.k], start, count), options.activations));
        await breathe();
      }
      return [{ name: job.name, dataType: T, dims: [job.rows, job.k], external: writer.end() }];
    }
    case 'float-linear': {
      // MatMul wants [k, rows]: read the whole tensor once, write the transpose a block of output rows at a time.
      const values = source.floatRows(job.source, [job.rows, job.k], 0, job.rows);
      const outputRowsPerChunk = Math.max(1, Math.floor(chunkElements / job.rows));
      writer.begin();
      for (let c0 = 0; c0 < job.k; c0 += outputRowsPerChunk) {
        const count = Math.min(outputRowsPerChunk, job.k - c0);
        const block = new Float32Array(count * job.rows);
        for (let c = 0; c < count; c++) for (let r = 0; r < job.rows; r++) block[c * job.rows + r] = values[r * job.k + c0 + c];
        writer.append(activationBytes(block, options.activations));
        await breathe();
      }
      return [{ name: job.name, dataType: T, dims: [job.k, job.rows], external: writer.end() }];
    }
    case 'int4-linear': {
      const kBlocks = kBlockCount(job.k, options.blockSize);
      const rowsPerChunk = Math.max(1, Math.floor(chunkElements / job.k));
      const scales = new Float32Array(job.rows * kBlocks);
      writer.begin();
      for (const chunk of int4Chunks(job, source, options.blockSize, rowsPerChunk)) {
        writer.append(chunk.packed);
        scales.set(chunk.scales, chunk.start * kBlocks);
        await breathe();
      }
      const weightLocation = writer.end();
      const scalesLocation = writer.write(activationBytes(scales, options.activations));
      await breathe();
      return [
        { name: job.weightName, dataType: TensorDataType.UINT8, dims: [job.rows, kBlocks, options.blockSize / 2], external: weightLocation },
        { name: job.scalesName, dataType: T, dims: [job.rows, kBlocks], external: scalesLocation },
      ];
    }
  }
}

type Int4Job = Extract<WeightJob, { kind: 'int4-linear' }>;

/** The job's int4 rows in order, part after part, `rowsPerChunk` at a time. */
function* int4Chunks(job: Int4Job, source: WeightMaterializer, blockSize: number, rowsPerChunk: number): Generator<Int4Rows & { start: number }> {
  let offset = 0;
  for (const part of job.parts) {
    for (let start = 0; start < part.rows; start += rowsPerChunk) {
      const count = Math.min(rowsPerChunk, part.rows - start);
      yield { ...source.int4Rows(part.source, [part.rows, part.k], start, count, blockSize), start: offset + start };
    }
    offset += part.rows;
  }
}

/** Reads and quantizes checkpoint tensors. */
export class CheckpointMaterializer implements WeightMaterializer {
  constructor(private readonly read: (source: string, expectedShape: number[], start: number, count: number) => Float32Array) {}

  floatRows(source: string, expectedShape: number[], start: number, count: number): Float32Array {
    return this.read(source, expectedShape, start, count);
  }

  int4Rows(source: string, expectedShape: number[], start: number, count: number, blockSize: number): Int4Rows {
    return quantizeRowsInt4(this.read(source, expectedShape, start, count), count, expectedShape[1], blockSize);
  }
}
