// Tiny ONNX graphs that rebuild the running batch's KV cache on the device. Merge: for each cache tensor,
// out = ScatterND(batch, rows, Pad(Gather(fresh, select), pads)): freshly prefilled rows written into theirs.
// Reorder: out = Slice(Pad(Gather(batch, order), pads), 0..length on the sequence axis): the rows rearranged, the
// cache grown (rows repeated, positions added) or shrunk (rows dropped, positions cut).
// The engine builds them in memory (a few hundred bytes, so a hand-written protobuf encoder; field numbers from
// onnx.proto) and runs them in a second session on the same execution provider, which can consume the main
// session's gpu-buffer outputs.

const enum Wire {
  Varint = 0,
  Bytes = 2,
}

class ProtoWriter {
  private readonly chunks: number[] = [];

  varint(field: number, value: number): this {
    this.tag(field, Wire.Varint);
    this.rawVarint(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  message(field: number, build: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }

  private bytes(field: number, value: Uint8Array): this {
    this.tag(field, Wire.Bytes);
    this.rawVarint(value.length);
    for (const byte of value) this.chunks.push(byte);
    return this;
  }

  private tag(field: number, wire: Wire): void {
    this.rawVarint(field * 8 + wire);
  }

  private rawVarint(value: number): void {
    let rest = value;
    while (rest >= 0x80) {
      this.chunks.push((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.chunks.push(rest);
  }
}

const ONNX = {
  model: { irVersion: 1, graph: 7, opsetImport: 8 },
  opset: { domain: 1, version: 2 },
  graph: { node: 1, name: 2, input: 11, output: 12 },
  node: { input: 1, output: 2, name: 3, opType: 4, attribute: 5 },
  attribute: { name: 1, i: 3, type: 20 },
  attributeType: { int: 2 },
  valueInfo: { name: 1, type: 2 },
  type: { tensorType: 1 },
  tensorType: { elemType: 1, shape: 2 },
  shape: { dim: 1 },
  dim: { value: 1, param: 2 },
  dataType: { float: 1, int64: 7, float16: 10 },
} as const;

type Dim = number | string;

function valueInfo(writer: ProtoWriter, field: number, name: string, elemType: number, dims: Dim[]): void {
  writer.message(field, (info) =>
    info.string(ONNX.valueInfo.name, name).message(ONNX.valueInfo.type, (type) =>
      type.message(ONNX.type.tensorType, (tensor) =>
        tensor.varint(ONNX.tensorType.elemType, elemType).message(ONNX.tensorType.shape, (shape) => {
          for (const dim of dims) {
            shape.message(ONNX.shape.dim, (d) => (typeof dim === 'number' ? d.varint(ONNX.dim.value, dim) : d.string(ONNX.dim.param, dim)));
          }
        }),
      ),
    ),
  );
}

function node(writer: ProtoWriter, opType: string, name: string, inputs: string[], outputs: string[], ints: Record<string, number> = {}): void {
  writer.message(ONNX.graph.node, (n) => {
    for (const input of inputs) n.string(ONNX.node.input, input);
    for (const output of outputs) n.string(ONNX.node.output, output);
    n.string(ONNX.node.name, name).string(ONNX.node.opType, opType);
    for (const [key, value] of Object.entries(ints)) {
      n.message(ONNX.node.attribute, (a) => a.string(ONNX.attribute.name, key).varint(ONNX.attribute.i, value).varint(ONNX.attribute.type, ONNX.attributeType.int));
    }
  });
}

export interface KvMergeGraphSpec {
  /** Names of the cache tensors (one per layer and K/V). */
  tensors: number;
  kvType: 'float32' | 'float16';
  kvHeads: number;
  headDim: number;
}

export const mergeNames = {
  batch: (i: number) => `batch.${i}`,
  fresh: (i: number) => `fresh.${i}`,
  merged: (i: number) => `merged.${i}`,
  order: 'order', // reorder: int64 [n]: the batch row each output row comes from (n = the new row count)
  length: 'length', // reorder: int64 [1]: the new cache length (positions); `pads` adds positions to reach it
  starts: 'starts', // reorder: int64 [1] = [0], and
  axes: 'axes', // int64 [1] = [2] (the sequence axis): Slice's other inputs
  select: 'select', // int64 [k]: which rows of `fresh` to write
  rows: 'rows', // int64 [k, 1]: the output rows they go to
  pads: 'pads', // int64 [8]: pad the fresh rows' length up to the cache length
};

/** The serialized merge model (opset 21). */
export function buildKvMergeGraph(spec: KvMergeGraphSpec): Uint8Array {
  return kvGraph(spec, 'falconq_kv_merge', (graph, i) => {
    node(graph, 'Gather', `gather.${i}`, [mergeNames.fresh(i), mergeNames.select], [`selected.${i}`], { axis: 0 });
    node(graph, 'Pad', `pad.${i}`, [`selected.${i}`, mergeNames.pads], [`padded.${i}`]);
    node(graph, 'ScatterND', `scatter.${i}`, [mergeNames.batch(i), mergeNames.rows, `padded.${i}`], [mergeNames.merged(i)]);
  }, (graph, elemType) => {
    for (let i = 0; i < spec.tensors; i++) valueInfo(graph, ONNX.graph.input, mergeNames.fresh(i), elemType, ['fresh_rows', spec.kvHeads, 'fresh_length', spec.headDim]);
    valueInfo(graph, ONNX.graph.input, mergeNames.select, ONNX.dataType.int64, ['k']);
    valueInfo(graph, ONNX.graph.input, mergeNames.rows, ONNX.dataType.int64, ['k', 1]);
    valueInfo(graph, ONNX.graph.input, mergeNames.pads, ONNX.dataType.int64, [8]);
  }, 'rows');
}

/** The serialized reorder model (opset 21). */
export function buildKvReorderGraph(spec: KvMergeGraphSpec): Uint8Array {
  return kvGraph(spec, 'falconq_kv_reorder', (graph, i) => {
    node(graph, 'Gather', `order.${i}`, [mergeNames.batch(i), mergeNames.order], [`ordered.${i}`], { axis: 0 });
    node(graph, 'Pad', `pad.${i}`, [`ordered.${i}`, mergeNames.pads], [`padded.${i}`]);
    node(graph, 'Slice', `cut.${i}`, [`padded.${i}`, mergeNames.starts, mergeNames.length, mergeNames.axes], [mergeNames.merged(i)]);
  }, (graph) => {
    valueInfo(graph, ONNX.graph.input, mergeNames.order, ONNX.dataType.int64, ['n']);
    valueInfo(graph, ONNX.graph.input, mergeNames.pads, ONNX.dataType.int64, [8]);
    valueInfo(graph, ONNX.graph.input, mergeNames.length, ONNX.dataType.int64, [1]);
    valueInfo(graph, ONNX.graph.input, mergeNames.starts, ONNX.dataType.int64, [1]);
    valueInfo(graph, ONNX.graph.input, mergeNames.axes, ONNX.dataType.int64, [1]);
  }, 'n', 'new_length');
}

/** A graph over the cache tensors: `perTensor` adds tensor i's nodes, `inputs` the graph's other inputs. */
function kvGraph(
  spec: KvMergeGraphSpec,
  name: string,
  perTensor: (graph: ProtoWriter, i: number) => void,
  inputs: (graph: ProtoWriter, elemType: number) => void,
  outputRows: string,
  outputLength = 'cache_length',
): Uint8Array {
  const elemType = spec.kvType === 'float16' ? ONNX.dataType.float16 : ONNX.dataType.float;
  const model = new ProtoWriter().varint(ONNX.model.irVersion, 10);
  model.message(ONNX.model.opsetImport, (opset) => opset.string(ONNX.opset.domain, '').varint(ONNX.opset.version, 21));
  model.message(ONNX.model.graph, (graph) => {
    graph.string(ONNX.graph.name, name);
    for (let i = 0; i < spec.tensors; i++) perTensor(graph, i);
    for (let i = 0; i < spec.tensors; i++) valueInfo(graph, ONNX.graph.input, mergeNames.batch(i), elemType, ['rows', spec.kvHeads, 'cache_length', spec.headDim]);
    inputs(graph, elemType);
    for (let i = 0; i < spec.tensors; i++) {
      valueInfo(graph, ONNX.graph.output, mergeNames.merged(i), elemType, [outputRows, spec.kvHeads, outputLength, spec.headDim]);
    }
  });
  return model.finish();
}
