// Reads the nodes of an ONNX model (and of its Loop bodies) from the protobuf, for tests that check what onnxruntime
// left of a graph after its optimizations (sessionOptions.optimizedModelFilePath).
import { readProtoFields } from '../../libs/model/src/onnx/protobuf';

export interface GraphNode {
  opType: string;
  /** The nodes of a Loop's body graph. */
  body?: GraphNode[];
}

const text = (bytes: Buffer | undefined) => bytes?.toString('utf8') ?? '';

function graphNodes(graph: Buffer): GraphNode[] {
  return readProtoFields(graph).filter((field) => field.field === 1 && field.bytes).map((field) => {
    const node = readProtoFields(field.bytes as Buffer);
    const attributes = node.filter((f) => f.field === 5 && f.bytes).map((f) => readProtoFields(f.bytes as Buffer));
    const body = attributes.find((attribute) => text(attribute.find((f) => f.field === 1)?.bytes) === 'body')?.find((f) => f.field === 6)?.bytes;
    return { opType: text(node.find((f) => f.field === 4)?.bytes), ...(body ? { body: graphNodes(body) } : {}) };
  });
}

/** The main graph's nodes of a serialized ModelProto. */
export function decodeModel(model: Buffer): { nodes: GraphNode[] } {
  const graph = readProtoFields(model).find((field) => field.field === 7)?.bytes;
  if (!graph) throw new Error('not an ONNX model: no graph');
  return { nodes: graphNodes(graph) };
}
