// A fused int4 projection (graph.ts: QKV and MLP-up stacked along N, one MatMulNBits, then a Split) seen as its parts:
// MatMulNBits quantizes each output row on its own, so a part's rows of the stacked weight and scales are exactly
// that part's weight, and they sit contiguously in the external data file. A graph can therefore run the parts as
// separate MatMulNBits over initializers that point into the fused tensors' bytes: no Split, no second copy on disk.
import type { FusedProjection } from './graph';
import type { InitializerSpec, NodeSpec } from './onnx/model';

/** Per part, a weight and a scales initializer viewing its rows of the fused tensors (external data only). */
export function projectionViewInitializers(fused: FusedProjection[], initializers: InitializerSpec[]): InitializerSpec[] {
  const byName = new Map(initializers.map((initializer) => [initializer.name, initializer]));
  const views: InitializerSpec[] = [];
  for (const projection of fused) {
    const totalRows = projection.parts.reduce((sum, part) => sum + part.rows, 0);
    const rowViews = (name: string, partName: (index: number) => string) => {
      const whole = byName.get(name);
      if (!whole?.external) throw new Error(`projection views: ${name} is not an external initializer`);
      if (whole.dims[0] !== totalRows) throw new Error(`projection views: ${name} has ${whole.dims[0]} rows, its parts ${totalRows}`);
      const rowBytes = whole.external.length / totalRows;
      let row = 0;
      projection.parts.forEach((part, index) => {
        views.push({
          name: partName(index),
          dataType: whole.dataType,
          dims: [part.rows, ...whole.dims.slice(1)],
          external: { location: whole.external?.location as string, offset: (whole.external?.offset as number) + row * rowBytes, length: part.rows * rowBytes },
        });
        row += part.rows;
      });
    };
    rowViews(projection.weightName, (index) => projection.parts[index].weightName);
    rowViews(projection.scalesName, (index) => projection.parts[index].scalesName);
  }
  return views;
}

/** `nodes` with each fused projection's MatMulNBits and Split replaced by one MatMulNBits per part, over its views. */
export function unfuseProjections(nodes: NodeSpec[], fused: FusedProjection[]): NodeSpec[] {
  const byNode = new Map(fused.map((projection) => [projection.node, projection]));
  const splits = new Set(fused.map((projection) => projection.split));
  const out: NodeSpec[] = [];
  for (const node of nodes) {
    if (splits.has(node.name)) continue;
    const projection = byNode.get(node.name);
    if (!projection) {
      out.push(node);
      continue;
    }
    for (const part of projection.parts) {
      out.push({
        ...node,
        name: part.node,
        inputs: [node.inputs[0], part.weightName, part.scalesName],
        outputs: [part.output],
        attributes: { ...node.attributes, N: { int: part.rows } },
      });
    }
  }
  return out;
}
