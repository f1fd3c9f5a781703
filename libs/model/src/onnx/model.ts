import { ProtoWriter } from './protobuf';

// Field numbers: onnx.proto (see docs/falcon-onnx.md §9.1).
export const enum TensorDataType {
  FLOAT = 1,
  UINT8 = 2,
  INT32 = 6,
  INT64 = 7,
  BOOL = 9,
  FLOAT16 = 10,
  /** Two 4-bit values a byte, the first in the low nibble (onnx.proto, IR 10). */
  UINT4 = 21,
}

const ATTRIBUTE_TYPE = { FLOAT: 1, INT: 2, STRING: 3, GRAPH: 5, INTS: 7 } as const;

export type AttributeValue = { int: number } | { float: number } | { string: string } | { ints: number[] } | { graph: GraphSpec };
export type Attributes = Record<string, AttributeValue>;

export interface NodeSpec {
  name: string;
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  attributes?: Attributes;
}

export interface ExternalLocation {
  location: string;
  offset: number;
  length: number;
}

export interface InitializerSpec {
  name: string;
  dataType: TensorDataType;
  dims: number[];
  /** Inline little-endian bytes; or `external`. */
  raw?: Buffer;
  external?: ExternalLocation;
}

export interface ValueInfoSpec {
  name: string;
  elemType: TensorDataType;
  /** number = fixed size, string = symbolic dimension */
  dims: (number | string)[];
}

/** A graph: the model's main graph, or the body of a Loop/If node (which may read outer-scope values). */
export interface GraphSpec {
  graphName: string;
  nodes: NodeSpec[];
  initializers: InitializerSpec[];
  inputs: ValueInfoSpec[];
  outputs: ValueInfoSpec[];
}

/** The initializers some node reads, in their order: nodes of Loop and If bodies read outer-scope values too. */
export function initializersUsedBy(nodes: NodeSpec[], initializers: InitializerSpec[]): InitializerSpec[] {
  const read = new Set<string>();
  const visit = (graphNodes: NodeSpec[]) => {
    for (const node of graphNodes) {
      for (const input of node.inputs) read.add(input);
      for (const value of Object.values(node.attributes ?? {})) if ('graph' in value) visit(value.graph.nodes);
    }
  };
  visit(nodes);
  return initializers.filter((initializer) => read.has(initializer.name));
}

export interface ModelSpec extends GraphSpec {
  producerName: string;
  producerVersion: string;
  opsets: { domain: string; version: number }[];
  irVersion: number;
  metadata?: Record<string, string>;
}

function encodeAttribute(name: string, value: AttributeValue): ProtoWriter {
  const writer = new ProtoWriter().string(1, name);
  if ('int' in value) return writer.varint(3, value.int).varint(20, ATTRIBUTE_TYPE.INT);
  if ('float' in value) return writer.float(2, value.float).varint(20, ATTRIBUTE_TYPE.FLOAT);
  if ('string' in value) return writer.string(4, value.string).varint(20, ATTRIBUTE_TYPE.STRING);
  if ('graph' in value) return writer.message(6, encodeGraph(value.graph)).varint(20, ATTRIBUTE_TYPE.GRAPH);
  return writer.packedVarints(8, value.ints).varint(20, ATTRIBUTE_TYPE.INTS);
}

function encodeNode(node: NodeSpec): ProtoWriter {
  const writer = new ProtoWriter();
  for (const input of node.inputs) writer.string(1, input);
  for (const output of node.outputs) writer.string(2, output);
  writer.string(3, node.name).string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {})) writer.message(5, encodeAttribute(name, value));
  if (node.domain) writer.string(7, node.domain);
  return writer;
}

function encodeTensor(tensor: InitializerSpec): ProtoWriter {
  const writer = new ProtoWriter().packedVarints(1, tensor.dims).varint(2, tensor.dataType).string(8, tensor.name);
  if (tensor.raw) return writer.bytes(9, tensor.raw);
  if (!tensor.external) throw new Error(`initializer ${tensor.name} has neither inline nor external data`);
  const entry = (key: string, value: string) => new ProtoWriter().string(1, key).string(2, value);
  writer.message(13, entry('location', tensor.external.location));
  writer.message(13, entry('offset', String(tensor.external.offset)));
  writer.message(13, entry('length', String(tensor.external.length)));
  return writer.varint(14, 1);
}

function encodeValueInfo(info: ValueInfoSpec): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of info.dims) {
    shape.message(1, typeof dim === 'number' ? new ProtoWriter().varint(1, dim) : new ProtoWriter().string(2, dim));
  }
  const tensorType = new ProtoWriter().varint(1, info.elemType).message(2, shape);
  return new ProtoWriter().string(1, info.name).message(2, new ProtoWriter().message(1, tensorType));
}

function encodeGraph(spec: GraphSpec): ProtoWriter {
  const graph = new ProtoWriter();
  for (const node of spec.nodes) graph.message(1, encodeNode(node));
  graph.string(2, spec.graphName);
  for (const initializer of spec.initializers) graph.message(5, encodeTensor(initializer));
  for (const input of spec.inputs) graph.message(11, encodeValueInfo(input));
  for (const output of spec.outputs) graph.message(12, encodeValueInfo(output));
  return graph;
}

export function encodeModel(model: ModelSpec): Buffer {
  const graph = encodeGraph(model);
  const writer = new ProtoWriter()
    .varint(1, model.irVersion)
    .string(2, model.producerName)
    .string(3, model.producerVersion)
    .message(7, graph);
  for (const opset of model.opsets) {
    const entry = new ProtoWriter();
    if (opset.domain) entry.string(1, opset.domain);
    writer.message(8, entry.varint(2, opset.version));
  }
  for (const [key, value] of Object.entries(model.metadata ?? {})) {
    writer.message(14, new ProtoWriter().string(1, key).string(2, value));
  }
  return writer.finish();
}

export const int = (value: number): AttributeValue => ({ int: value });
export const float = (value: number): AttributeValue => ({ float: value });
export const ints = (value: number[]): AttributeValue => ({ ints: value });
export const graphAttribute = (value: GraphSpec): AttributeValue => ({ graph: value });

/** Inline initializers of small constants (little-endian raw data). */
function inlineTensor(name: string, dataType: TensorDataType, bytesPer: number, write: (raw: Buffer, value: number, offset: number) => void, values: number[], dims: number[]): InitializerSpec {
  const raw = Buffer.alloc(values.length * bytesPer);
  values.forEach((value, i) => write(raw, value, i * bytesPer));
  return { name, dataType, dims, raw };
}
export const int64Tensor = (name: string, values: number[], dims: number[]): InitializerSpec =>
  inlineTensor(name, TensorDataType.INT64, 8, (raw, value, offset) => raw.writeBigInt64LE(BigInt(value), offset), values, dims);
export const int32Tensor = (name: string, values: number[], dims: number[]): InitializerSpec =>
  inlineTensor(name, TensorDataType.INT32, 4, (raw, value, offset) => raw.writeInt32LE(value, offset), values, dims);
export const floatTensor = (name: string, values: number[], dims: number[]): InitializerSpec =>
  inlineTensor(name, TensorDataType.FLOAT, 4, (raw, value, offset) => raw.writeFloatLE(value, offset), values, dims);
