// The decode loop runs a fused projection (QKV + MLP-up) part by part over views of the fused weights: the views must
// be exactly each part's weights, so the loop computes what a model converted with separate projections computes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type FusedProjection, projectionViewInitializers, readManifest } from '@app/model';
import { initializersUsedBy, TensorDataType } from '../../libs/model/src/onnx/model';
import { runDecodeLoop } from '../support/decode-loop-run';
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

    const [fromViews, fromSeparate] = [await runDecodeLoop(viewed), await runDecodeLoop(separate)];
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
