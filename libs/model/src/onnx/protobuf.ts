// Minimal protobuf wire-format writer and reader: just what ONNX ModelProto needs.

const WIRE_VARINT = 0;
const WIRE_FIXED32 = 5;
const WIRE_LENGTH_DELIMITED = 2;

export class ProtoWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;

  private push(chunk: Buffer): this {
    this.chunks.push(chunk);
    this.length += chunk.length;
    return this;
  }

  private tag(field: number, wireType: number): this {
    return this.push(encodeVarint(BigInt((field << 3) | wireType)));
  }

  /** int32/int64/enum/bool; negative values use the 10-byte two's complement form. */
  varint(field: number, value: number | bigint | boolean): this {
    return this.tag(field, WIRE_VARINT).push(encodeVarint(toUint64(value)));
  }

  float(field: number, value: number): this {
    const body = Buffer.alloc(4);
    body.writeFloatLE(value);
    return this.tag(field, WIRE_FIXED32).push(body);
  }

  bytes(field: number, value: Uint8Array): this {
    return this.tag(field, WIRE_LENGTH_DELIMITED).push(encodeVarint(BigInt(value.length))).push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  message(field: number, message: ProtoWriter): this {
    return this.bytes(field, message.finish());
  }

  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const body = Buffer.concat(values.map((value) => encodeVarint(toUint64(value))));
    return this.bytes(field, body);
  }

  finish(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function toUint64(value: number | bigint | boolean): bigint {
  const big = typeof value === 'bigint' ? value : BigInt(typeof value === 'boolean' ? Number(value) : value);
  return big < 0n ? BigInt.asUintN(64, big) : big;
}

function encodeVarint(value: bigint): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80n) {
    bytes.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  bytes.push(Number(rest));
  return Buffer.from(bytes);
}

export interface ProtoField {
  field: number;
  wireType: number;
  /** varint value (wire type 0) */
  varint?: bigint;
  /** payload (wire type 2) or raw fixed bytes (1, 5) */
  bytes?: Buffer;
}

/** Splits one message into its fields (no schema). */
export function readProtoFields(buffer: Buffer): ProtoField[] {
  const fields: ProtoField[] = [];
  let offset = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (offset >= buffer.length) throw new Error('protobuf: truncated varint');
      const byte = buffer[offset++];
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wireType = key & 7;
    if (wireType === WIRE_VARINT) fields.push({ field, wireType, varint: readVarint() });
    else if (wireType === WIRE_LENGTH_DELIMITED) {
      const length = Number(readVarint());
      if (offset + length > buffer.length) throw new Error('protobuf: truncated field');
      fields.push({ field, wireType, bytes: buffer.subarray(offset, offset + length) });
      offset += length;
    } else if (wireType === WIRE_FIXED32 || wireType === 1) {
      const size = wireType === WIRE_FIXED32 ? 4 : 8;
      fields.push({ field, wireType, bytes: buffer.subarray(offset, offset + size) });
      offset += size;
    } else throw new Error(`protobuf: unsupported wire type ${wireType}`);
  }
  return fields;
}
