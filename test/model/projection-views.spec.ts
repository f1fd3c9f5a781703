// The decode loop runs a fused projection (QKV + MLP-up) part by part over views of the fused weights: the views must
// be exactly each part's weights, so the loop computes what a model converted with separate projections computes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { type FusedProjection, projectionViewInitializers, readManifest } from '@app/model';
import { initializersUsedBy, TensorDataType } from '../../libs/model/src/onnx/model';
import { tinyModelDir } from '../support/tiny-model';

const fused: FusedProjection = {
  node: '/layers.0/in_proj',
  split: '/layers.0/in_proj/split',
  weightName: 'w',
  scalesName: 's',
  parts: [
    { node: '/a', weightName: 'a.w', scalesName: 'a.s', rows: 3, output: 'a' },
    { node: '/b', weightName: 'b.w', scalesName: 'b.s', rows: 5, output: 'b' },
  ],
};

describe('projection views', () => {
  it('point each part at its rows of the fused weight and scales', () => {
    const views = projectionViewInitializers([fused], [
      { name: 'w', dataType: TensorDataType.UINT8, dims: [8, 4, 16], external: { location: 'x.data', offset: 65536, length: 8 * 64 } },
      { name: 's', dataType: TensorDataType.FLOAT16, dims: [8, 4], external: { location: 'x.data', offset: 131072, length: 8 * 8 } },
    ]);
    expect(views).toEqual([
      { name: 'a.w', dataType: TensorDataType.UINT8, dims: [3, 4, 16], external: { location: 'x.data', offset: 65536, length: 3 * 64 } },
      { name: 'b.w', dataType: TensorDataType.UINT8, dims: [5, 4, 16], external: { location: 'x.data', offset: 65536 + 3 * 64, length: 5 * 64 } },
      { name: 'a.s', dataType: TensorDataType.FLOAT16, dims: [3, 4], external: { location: 'x.data', offset: 131072, length: 3 * 8 } },
      { name: 'b.s', dataType: TensorDataType.FLOAT16, dims: [5, 4], external: { location: 'x.data', offset: 131072 + 3 * 8, length: 5 * 8 } },
    ]);
  });

  it('refuse a fused tensor that is inline or whose rows are not its parts\'', () => {
    const scales = { name: 's', dataType: TensorDataType.FLOAT16, dims: [8, 4], external: { location: 'x.data', offset: 0, length: 64 } };
    expect(() => projectionViewInitializers([fused], [{ name: 'w', dataType: TensorDataType.UINT8, dims: [8, 4, 16], raw: Buffer.alloc(512) }, scales])).toThrow('w is not an external initializer');
    expect(() => projectionViewInitializers([fused], [{ name: 'w', dataType: TensorDataType.UINT8, dims: [9, 4, 16], external: { location: 'x.data', offset: 0, length: 576 } }, scales])).toThrow('w has 9 rows, its parts 8');
  });

  it('give the decode loop the logits of a model converted with separate projections, with no Split in the loop', async () => {
    const viewed = await tinyModelDir();
    const separate = await tinyModelDir({ tuning: { fuseInputProjections: false } });
    const loopFile = (dir: string) => path.join(dir, readManifest(dir).files.decodeLoop as string);
    expect(fs.readFileSync(path.join(viewed, readManifest(viewed).files.model)).includes('in_proj/split')).toBe(true);
    expect(fs.readFileSync(loopFile(viewed)).includes('in_proj/split')).toBe(false);
    expect(fs.readFileSync(loopFile(viewed)).includes('layers.0.attn.qkv.weight_q4')).toBe(true);
    // The fused weight is read through its views alone: the loop file does not declare it (onnxruntime would warn).
    expect(fs.readFileSync(loopFile(viewed)).includes('layers.0.in_proj.weight_q4')).toBe(false);

    const logits = async (dir: string) => {
      const manifest = readManifest(dir);
      const { io, shape } = manifest;
      const loop = manifest.decodeLoop?.io as NonNullable<typeof manifest.decodeLoop>['io'];
      const session = await ort.InferenceSession.create(loopFile(dir));
      const prompt = [5, 17, 42, 9, 300, 11];
      const batch = 1;
      const feeds: Record<string, ort.Tensor> = {
        [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from(prompt, BigInt), [batch, prompt.length]),
        [io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(prompt.length).fill(1n), [batch, prompt.length]),
        [loop.steps]: new ort.Tensor('int64', BigInt64Array.of(3n), []),
        [loop.doSample]: new ort.Tensor('bool', new Uint8Array(batch), [batch]),
        [loop.temperature]: new ort.Tensor('float32', new Float32Array(batch).fill(1), [batch]),
        [loop.topK]: new ort.Tensor('int64', new BigInt64Array(batch).fill(1n), [batch]),
        [loop.topP]: new ort.Tensor('float32', new Float32Array(batch).fill(2), [batch]),
        [loop.repetitionPenalty]: new ort.Tensor('float32', new Float32Array(batch).fill(1), [batch]),
        [loop.uniforms]: new ort.Tensor('float32', new Float32Array(3 * batch), [3, batch]),
        [loop.seen]: new ort.Tensor('bool', new Uint8Array(batch * shape.vocabSize), [batch, shape.vocabSize]),
      };
      for (let layer = 0; layer < shape.numLayers; layer++) {
        for (const name of [io.pastKey, io.pastValue]) feeds[name.replace('%d', String(layer))] = new ort.Tensor('float32', new Float32Array(0), [batch, shape.numKvHeads, 0, shape.headDim]);
      }
      const out = await session.run(feeds);
      return { logits: Array.from(out[io.logits].data as Float32Array), tokens: Array.from(out[loop.tokens].data as BigInt64Array) };
    };
    const [fromViews, fromSeparate] = [await logits(viewed), await logits(separate)];
    expect(fromViews.tokens).toEqual(fromSeparate.tokens);
    expect(fromViews.logits).toEqual(fromSeparate.logits);
  });

  it('leave out of a graph the initializers no node reads, looking into Loop and If bodies', () => {
    const tensor = (name: string) => ({ name, dataType: TensorDataType.FLOAT, dims: [1], raw: Buffer.alloc(4) });
    const body = { graphName: 'body', nodes: [{ name: '/mm', opType: 'MatMul', inputs: ['x', 'inner'], outputs: ['y'] }], initializers: [], inputs: [], outputs: [] };
    const nodes = [
      { name: '/add', opType: 'Add', inputs: ['a', 'outer'], outputs: ['b'] },
      { name: '/loop', opType: 'Loop', inputs: ['', ''], outputs: ['c'], attributes: { body: { graph: body } } },
    ];
    expect(initializersUsedBy(nodes, ['outer', 'unused', 'inner'].map(tensor)).map((initializer) => initializer.name)).toEqual(['outer', 'inner']);
  });
});
