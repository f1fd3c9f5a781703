// A decode loop whose matmuls run on fp16 weights (fp32 on a cpu-target model) instead of onnxruntime's int4 kernels:
// each MatMulNBits of the loop body becomes a FusedMatMul (transB: the weight stays [N, K], the layout cuBLAS
// prefers) over the output of a DequantizeLinear of the same int4 bytes, placed outside the loop. Those nodes read
// only initializers, so onnxruntime folds them into fp16 initializers when it loads the graph with
// session.disable_quant_qdq=1 (without it, its constant folding leaves DequantizeLinear alone, and the weights would
// be dequantized on every run). The file on disk stays int4: the DequantizeLinear reads views of the MatMulNBits
// weights and scales in the external data file. docs/engine.md says when it pays.
import { INT4_ZERO_POINT, kBlockCount } from './quantize';
import { int, type InitializerSpec, int64Tensor, type NodeSpec, TensorDataType } from './onnx/model';

/** One MatMulNBits of the loop body, run as a FusedMatMul over its dequantized weight. */
export interface DequantizedWeight {
  /** The MatMulNBits weight ([N, kBlocks, blockSize / 2] uint8) and scales ([N x kBlocks]) it reads. */
  weightName: string;
  scalesName: string;
  n: number;
  k: number;
  blockSize: number;
  /** The dequantized [n, k] weight the FusedMatMul reads (an outer-scope value of the loop body). */
  output: string;
}

const dequantizedWeightName = (weightName: string): string => `${weightName}.dequantized`;
const codesName = (weightName: string) => `${weightName}.codes`;
const blockScalesName = (scalesName: string) => `${scalesName}.blocks`;
const zeroPointName = (n: number, kBlocks: number) => `dequantize.zero_point.${n}x${kBlocks}`;

/** `nodes` with every MatMulNBits replaced by a FusedMatMul over its dequantized weight, transposed (read by name). */
export function matMulsOverDequantizedWeights(nodes: NodeSpec[]): { nodes: NodeSpec[]; weights: DequantizedWeight[] } {
  const weights = new Map<string, DequantizedWeight>();
  const out = nodes.map((node) => {
    if (node.opType !== 'MatMulNBits') return node;
    const [input, weightName, scalesName, ...rest] = node.inputs;
    const attribute = (name: string) => {
      const value = node.attributes?.[name];
      if (!value || !('int' in value)) throw new Error(`dequantized weights: ${node.name} has no ${name}`);
      return value.int;
    };
    if (rest.some(Boolean) || attribute('bits') !== 4) throw new Error(`dequantized weights: ${node.name} is not a symmetric 4-bit MatMulNBits`);
    const weight = { weightName, scalesName, n: attribute('N'), k: attribute('K'), blockSize: attribute('block_size'), output: dequantizedWeightName(weightName) };
    weights.set(weightName, weight);
    return { name: node.name, opType: 'FusedMatMul', domain: 'com.microsoft', inputs: [input, weight.output], outputs: node.outputs, attributes: { transB: int(1) } };
  });
  return { nodes: out, weights: [...weights.values()] };
}

/**
 * The nodes that dequantize each weight (outside the loop, folded at load) and their small inline constants: a zero
 * point of 8 per weight shape, and the bounds of the slice that drops a padded last block.
 */
export function dequantizationNodes(weights: DequantizedWeight[]): { nodes: NodeSpec[]; initializers: InitializerSpec[] } {
  const nodes: NodeSpec[] = [];
  const initializers = new Map<string, InitializerSpec>();
  for (const weight of weights) {
    const kBlocks = kBlockCount(weight.k, weight.blockSize);
    const zeroPoint = zeroPointName(weight.n, kBlocks);
    if (!initializers.has(zeroPoint)) {
      const nibbles = weight.n * kBlocks;
      initializers.set(zeroPoint, { name: zeroPoint, dataType: TensorDataType.UINT4, dims: [weight.n, kBlocks], raw: Buffer.alloc(Math.ceil(nibbles / 2), INT4_ZERO_POINT * 0x11) });
    }
    const base = `/dequantize/${weight.weightName}`;
    const padded = kBlocks * weight.blockSize !== weight.k;
    const dequantized = padded ? `${weight.weightName}.dequantized_padded` : weight.output;
    nodes.push({
      name: base, opType: 'DequantizeLinear', inputs: [codesName(weight.weightName), blockScalesName(weight.scalesName), zeroPoint], outputs: [dequantized],
      attributes: { axis: int(1), block_size: int(weight.blockSize) },
    });
    if (padded) {
      // The last block is padded with zero weights in the file: keep the k real columns.
      for (const [name, value] of [['starts', 0], ['ends', weight.k], ['axes', 1]] as const) {
        const constant = `dequantize.const.${name}_${value}`;
        if (!initializers.has(constant)) initializers.set(constant, int64Tensor(constant, [value], [1]));
      }
      nodes.push({ name: `${base}/slice`, opType: 'Slice', inputs: [dequantized, 'dequantize.const.starts_0', `dequantize.const.ends_${weight.k}`, 'dequantize.const.axes_1'], outputs: [weight.output] });
    }
  }
  return { nodes, initializers: [...initializers.values()] };
}

/**
 * Per weight, the DequantizeLinear's inputs as views of the MatMulNBits tensors' bytes in the external data file: the
 * codes as uint4 [N, kBlocks x blockSize] (MatMulNBits packs k in order, even k in the low nibble, as ONNX packs
 * uint4) and the scales as [N, kBlocks]. Nothing is stored twice.
 */
export function dequantizedWeightInitializers(weights: DequantizedWeight[], initializers: InitializerSpec[]): InitializerSpec[] {
  const byName = new Map(initializers.map((initializer) => [initializer.name, initializer]));
  const external = (name: string) => {
    const found = byName.get(name);
    if (!found?.external) throw new Error(`dequantized weights: ${name} is not an external initializer`);
    return found;
  };
  return weights.flatMap((weight) => {
    const kBlocks = kBlockCount(weight.k, weight.blockSize);
    const codes = external(weight.weightName);
    const scales = external(weight.scalesName);
    if (codes.external?.length !== (weight.n * kBlocks * weight.blockSize) / 2) {
      throw new Error(`dequantized weights: ${weight.weightName} holds ${codes.external?.length} bytes, not ${weight.n} x ${kBlocks} blocks of ${weight.blockSize}`);
    }
    return [
      { name: codesName(weight.weightName), dataType: TensorDataType.UINT4, dims: [weight.n, kBlocks * weight.blockSize], external: codes.external },
      { name: blockScalesName(weight.scalesName), dataType: scales.dataType, dims: [weight.n, kBlocks], external: scales.external },
    ];
  });
}
