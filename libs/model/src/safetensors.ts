import * as fs from 'node:fs';
import { f16ToF32, f32ToBf16, f32ToF16 } from './dtype';
import { ModelInputError } from './errors';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';
const BYTES_PER_ELEMENT: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** fs.readSync takes at most 2 GiB per call. */
const MAX_READ_BYTES = 1024 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

/** Reads one safetensors file tensor by tensor with positioned reads; never loads the whole file. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly tensors: Map<string, TensorInfo>,
  ) {}

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (error) {
      throw new ModelInputError(`${path}: cannot open safetensors file (${(error as Error).message})`);
    }
    try {
      return new SafetensorsFile(path, fd, readHeader(path, fd));
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new ModelInputError(`${this.path}: tensor ${name} is missing`);
    return info;
  }

  /** Rows [rowStart, rowStart+rowCount) of a tensor seen as [shape[0], rest], as float32. */
  readRows(name: string, rowStart: number, rowCount: number): Float32Array {
    const info = this.info(name);
    const rowElements = info.shape.slice(1).reduce((a, b) => a * b, 1);
    const bytesPerElement = BYTES_PER_ELEMENT[info.dtype];
    const byteLength = rowCount * rowElements * bytesPerElement;
    const raw = Buffer.allocUnsafe(byteLength);
    const position = info.begin + rowStart * rowElements * bytesPerElement;
    let read = 0;
    while (read < byteLength) {
      const n = fs.readSync(this.fd, raw, read, Math.min(byteLength - read, MAX_READ_BYTES), position + read);
      if (n === 0) throw new ModelInputError(`${this.path}: tensor ${name} is truncated`);
      read += n;
    }
    return decodeElements(raw, info.dtype);
  }

  read(name: string): Float32Array {
    const info = this.info(name);
    return this.readRows(name, 0, info.shape.length === 0 ? 1 : info.shape[0]);
  }
}

function readHeader(path: string, fd: number): Map<string, TensorInfo> {
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) throw new ModelInputError(`${path}: not a safetensors file (${fileSize} bytes)`);
  const prefix = Buffer.alloc(8);
  fs.readSync(fd, prefix, 0, 8, 0);
  const headerLength = Number(prefix.readBigUInt64LE(0));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new ModelInputError(`${path}: safetensors header length ${headerLength} is invalid for a ${fileSize}-byte file (truncated?)`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  fs.readSync(fd, headerBytes, 0, headerLength, 8);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new ModelInputError(`${path}: safetensors header is not valid JSON (${(error as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, TensorInfo>();
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry.dtype !== 'string' || !(entry.dtype in BYTES_PER_ELEMENT)) {
      throw new ModelInputError(`${path}: tensor ${name} has unsupported dtype ${String(entry.dtype)} (expected F32, F16 or BF16)`);
    }
    const dtype = entry.dtype as SafetensorsDType;
    if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new ModelInputError(`${path}: tensor ${name} has an invalid shape`);
    }
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2) {
      throw new ModelInputError(`${path}: tensor ${name} has invalid data_offsets`);
    }
    const shape = entry.shape as number[];
    const begin = dataStart + Number(offsets[0]);
    const end = dataStart + Number(offsets[1]);
    const expected = shape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[dtype];
    if (end - begin !== expected) {
      throw new ModelInputError(`${path}: tensor ${name} holds ${end - begin} bytes, its shape [${shape}] ${dtype} needs ${expected}`);
    }
    if (end > fileSize) {
      throw new ModelInputError(`${path}: tensor ${name} ends at byte ${end} but the file has ${fileSize} bytes (truncated)`);
    }
    tensors.set(name, { name, dtype, shape, begin, end });
  }
  return tensors;
}

function decodeElements(raw: Buffer, dtype: SafetensorsDType): Float32Array {
  if (dtype === 'F32') {
    const out = new Float32Array(raw.length / 4);
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  const count = raw.length / 2;
  const out = new Float32Array(count);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) bits[i] = raw.readUInt16LE(i * 2) << 16;
  } else {
    for (let i = 0; i < count; i++) out[i] = f16ToF32(raw.readUInt16LE(i * 2));
  }
  return out;
}

export function elementsToBytes(values: Float32Array, dtype: SafetensorsDType): Buffer {
  if (dtype === 'F32') return Buffer.from(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = Buffer.allocUnsafe(values.length * 2);
  const convert = dtype === 'BF16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < values.length; i++) out.writeUInt16LE(convert(values[i]), i * 2);
  return out;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Writes a safetensors file (used for tiny models and test fixtures). */
export function writeSafetensors(path: string, tensors: TensorToWrite[], dtype: SafetensorsDType = 'F32', metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const bodies: Buffer[] = [];
  for (const tensor of tensors) {
    const body = elementsToBytes(tensor.values, dtype);
    header[tensor.name] = { dtype, shape: tensor.shape, data_offsets: [offset, offset + body.length] };
    offset += body.length;
    bodies.push(body);
  }
  let headerJson = JSON.stringify(header);
  headerJson += ' '.repeat((8 - (headerJson.length % 8)) % 8);
  const headerBytes = Buffer.from(headerJson, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = fs.openSync(path, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, headerBytes);
    for (const body of bodies) fs.writeSync(fd, body);
  } finally {
    fs.closeSync(fd);
  }
}
