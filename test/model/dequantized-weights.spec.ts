// decode-loop-dequantized.onnx: the decode loop with its matmuls over the int4 weights dequantized once, at load.
// What must hold: the graph reads the int4 bytes through views (nothing stored twice), onnxruntime folds every
// dequantization away when the session sets session.disable_quant_qdq (as the engine does), and the loop computes
// what the int4 loop computes (accuracy level 0: exact int4 arithmetic on the same dequantized values).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  createTinyModel, dequantizationNodes, dequantizedWeightInitializers, type DequantizedWeight, matMulsOverDequantizedWeights, readManifest, TINY_SHAPE,
} from '@app/model';
import { int, TensorDataType } from '../../libs/model/src/onnx/model';
import { runDecodeLoop } from '../support/decode-loop-run';
import { decodeModel } from '../support/onnx-graph';
import { tinyModelDir } from '../support/tiny-model';

const weight: DequantizedWeight = { weightName: 'w', scalesName: 's', n: 6, k: 64, blockSize: 32, output: 'w.dequantized' };
/** How the engine opens the graph (runtime/model-session.ts). */
const folded = { extra: { session: { disable_quant_qdq: '1' } } };

function expectClose(actual: number[], expected: number[], tolerance: number): void {
  expect(actual).toHaveLength(expected.length);
  const worst = Math.max(...actual.map((value, i) => Math.abs(value - expected[i])));
  expect(worst).toBeLessThan(tolerance);
}

describe('dequantized weights', () => {
  it('turn each MatMulNBits into a FusedMatMul over its dequantized weight, transposed', () => {
    const attributes = { K: int(64), N: int(6), bits: int(4), block_size: int(32), accuracy_level: int(0) };
    const { nodes, weights } = matMulsOverDequantizedWeights([
      { name: '/norm', opType: 'LayerNormalization', inputs: ['x', 'g', 'b'], outputs: ['h'] },
      { name: '/proj', opType: 'MatMulNBits', domain: 'com.microsoft', inputs: ['h', 'w', 's'], outputs: ['y'], attributes },
    ]);
    expect(nodes[0].opType).toBe('LayerNormalization');
    expect(nodes[1]).toEqual({ name: '/proj', opType: 'FusedMatMul', domain: 'com.microsoft', inputs: ['h', 'w.dequantized'], outputs: ['y'], attributes: { transB: int(1) } });
    expect(weights).toEqual([weight]);
    expect(() => matMulsOverDequantizedWeights([{ name: '/p', opType: 'MatMulNBits', inputs: ['h', 'w', 's', 'zp'], outputs: ['y'], attributes }])).toThrow('/p is not a symmetric 4-bit MatMulNBits');
  });

  it('dequantize with a zero point of 8 per weight shape, slicing off a padded last block', () => {
    const exact = dequantizationNodes([weight, { ...weight, weightName: 'v', scalesName: 't', output: 'v.dequantized' }]);
    expect(exact.nodes.map((node) => [node.opType, node.outputs[0]])).toEqual([['DequantizeLinear', 'w.dequantized'], ['DequantizeLinear', 'v.dequantized']]);
    expect(exact.initializers).toEqual([{ name: 'dequantize.zero_point.6x2', dataType: TensorDataType.UINT4, dims: [6, 2], raw: Buffer.alloc(6, 0x88) }]);
    const padded = dequantizationNodes([{ ...weight, k: 40 }]);
    expect(padded.nodes.map((node) => [node.opType, node.outputs[0]])).toEqual([['DequantizeLinear', 'w.dequantized_padded'], ['Slice', 'w.dequantized']]);
    expect(padded.nodes[1].inputs).toContain('dequantize.const.ends_40');
  });

  it('read the codes and scales through views of the MatMulNBits tensors, refusing a size that does not match', () => {
    const codes = { name: 'w', dataType: TensorDataType.UINT8, dims: [6, 2, 16], external: { location: 'x.data', offset: 4096, length: 192 } };
    const scales = { name: 's', dataType: TensorDataType.FLOAT16, dims: [12], external: { location: 'x.data', offset: 8192, length: 24 } };
    expect(dequantizedWeightInitializers([weight], [codes, scales])).toEqual([
      { name: 'w.codes', dataType: TensorDataType.UINT4, dims: [6, 64], external: codes.external },
      { name: 's.blocks', dataType: TensorDataType.FLOAT16, dims: [6, 2], external: scales.external },
    ]);
    expect(() => dequantizedWeightInitializers([{ ...weight, n: 7 }], [codes, scales])).toThrow('w holds 192 bytes, not 7 x 2 blocks of 32');
    expect(() => dequantizedWeightInitializers([weight], [{ ...codes, external: undefined, raw: Buffer.alloc(192) }, scales])).toThrow('w is not an external initializer');
  });

  it('fold away at load with session.disable_quant_qdq, and give the int4 loop\'s tokens and logits', async () => {
    const dir = await tinyModelDir({ accuracyLevel: 0 });
    const manifest = readManifest(dir);
    const file = manifest.files.decodeLoopDequantized as string;
    expect(file).toBe('decode-loop-dequantized.onnx');
    const graph = fs.readFileSync(path.join(dir, file));
    // No second copy of the weights: the graph file holds names and small constants, the int4 bytes stay in the data file.
    expect(graph.length).toBeLessThan(fs.statSync(path.join(dir, manifest.files.weights)).size / 4);
    expect(graph.includes('layers.0.attn.qkv.weight_q4.codes')).toBe(true);

    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-dequantized-'));
    try {
      // logSeverityLevel 3: onnxruntime warns whenever it writes an optimized model.
      const optimized = (name: string) => ({ optimizedModelFilePath: path.join(work, name), logSeverityLevel: 3 as const });
      const nodesOf = (name: string) => decodeModel(fs.readFileSync(path.join(work, name))).nodes;
      const withKey = await runDecodeLoop(dir, { file, steps: 6, sessionOptions: { ...folded, ...optimized('folded.onnx') } });
      const withoutKey = await runDecodeLoop(dir, { file, steps: 6, sessionOptions: optimized('kept.onnx') });
      // Four matmuls a layer (QKV and MLP-up through the projection views, dense, MLP-down) and the lm_head, all in
      // the loop body over fp16 initializers; no DequantizeLinear or int4 matmul is left.
      const matMuls = manifest.shape.numLayers * 4 + 1;
      const main = nodesOf('folded.onnx');
      const body = main.find((node) => node.opType === 'Loop')?.body ?? [];
      expect(body.filter((node) => node.opType === 'FusedMatMul')).toHaveLength(matMuls);
      expect([...main, ...body].filter((node) => node.opType === 'DequantizeLinear' || node.opType === 'MatMulNBits')).toHaveLength(0);
      // Without the key onnxruntime keeps them, outside the loop: each run would dequantize every weight again.
      expect(nodesOf('kept.onnx').filter((node) => node.opType === 'DequantizeLinear')).toHaveLength(matMuls);

      const int4 = await runDecodeLoop(dir, { steps: 6 });
      expect(withKey.tokens).toEqual(int4.tokens);
      expect(withoutKey.tokens).toEqual(int4.tokens);
      expectClose(withKey.logits, int4.logits, 1e-4);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('give the int4 loop\'s logits when k is not a multiple of the block (the padded columns sliced off)', async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-dequantized-padded-'));
    try {
      // An MLP of 272 features: the down projection's k is 8.5 blocks of 32.
      await createTinyModel({ out: path.join(work, 'model'), shape: { ...TINY_SHAPE, ffnHiddenSize: 272 }, accuracyLevel: 0 });
      const dir = path.join(work, 'model');
      expect(fs.readFileSync(path.join(dir, 'decode-loop-dequantized.onnx')).includes('/slice')).toBe(true);
      const dequantized = await runDecodeLoop(dir, { file: 'decode-loop-dequantized.onnx', steps: 4, sessionOptions: folded });
      const int4 = await runDecodeLoop(dir, { steps: 4 });
      expect(dequantized.tokens).toEqual(int4.tokens);
      expectClose(dequantized.logits, int4.logits, 1e-4);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it('are not written for float weights', async () => {
    expect(readManifest(await tinyModelDir({ weights: 'fp32' })).files.decodeLoopDequantized).toBeUndefined();
  });
});
