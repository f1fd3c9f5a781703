import { ProtoWriter, readProtoFields } from '../../libs/model/src/onnx/protobuf';

describe('protobuf writer and reader', () => {
  it('writes varints (int64 via BigInt, negatives as 10-byte two\'s complement), strings, floats and packed fields', () => {
    const bytes = new ProtoWriter()
      .varint(1, 300)
      .varint(2, -1)
      .varint(3, 2n ** 40n + 5n)
      .string(4, 'MatMulNBits')
      .float(5, 1.5)
      .packedVarints(6, [1, 4672, 142, 16])
      .finish();
    expect(bytes.subarray(0, 3)).toEqual(Buffer.from([0x08, 0xac, 0x02]));
    const fields = readProtoFields(bytes);
    expect(fields.map((f) => f.field)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(fields[0].varint).toBe(300n);
    expect(fields[1].varint).toBe(2n ** 64n - 1n);
    expect(fields[2].varint).toBe(2n ** 40n + 5n);
    expect(fields[3].bytes!.toString()).toBe('MatMulNBits');
    expect(fields[4].bytes!.readFloatLE(0)).toBe(1.5);
    const packed = readProtoFields(Buffer.concat([Buffer.from([0x08]), fields[5].bytes!.subarray(0, 1), Buffer.from([0x08]), fields[5].bytes!.subarray(1, 3)]));
    expect(packed.map((f) => f.varint)).toEqual([1n, 4672n]);
  });

  it('nests messages and rejects truncated input', () => {
    const inner = new ProtoWriter().string(1, 'x');
    const outer = new ProtoWriter().message(7, inner).finish();
    expect(readProtoFields(readProtoFields(outer)[0].bytes!)[0].bytes!.toString()).toBe('x');
    expect(() => readProtoFields(outer.subarray(0, outer.length - 1))).toThrow(/truncated/);
  });
});
