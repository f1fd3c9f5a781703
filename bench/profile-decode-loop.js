// Where a decode-loop run's time goes (diagnostic, run beside `falconq bench`): onnxruntime's profiler over
// decode-loop.onnx, one run of STEPS greedy steps at batch BATCH after a warm-up, summed per operator type and for the
// slowest nodes (nodes inside the Loop body are counted once per step).
//   node bench/profile-decode-loop.js MODEL_DIR [EP=cuda] [BATCH=256] [STEPS=16] [PAST=64] [WEIGHTS=int4|dequantized]
// WEIGHTS=dequantized profiles decode-loop-dequantized.onnx (the engine's dequantizeWeights).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const ort = require('onnxruntime-node');
const { CUDA_FPA_INTB_AUTO_MIN_SLOTS } = require('../dist/libs/engine/src/api');

const [dir, ep = 'cuda', batchArg = '256', stepsArg = '16', pastArg = '64', weights = 'int4'] = process.argv.slice(2);
if (weights !== 'int4' && weights !== 'dequantized') throw new Error(`WEIGHTS must be int4 or dequantized, got ${weights}`);
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'falconq.json'), 'utf8'));
const { io, shape } = manifest;
const loopIo = manifest.decodeLoop.io;
const [B, K, P] = [Number(batchArg), Number(stepsArg), Number(pastArg)];
const fp16 = manifest.kvDType === 'fp16';

function feeds(steps) {
  const capacity = P + steps + 1;
  const kv = () => new ort.Tensor(fp16 ? 'float16' : 'float32', fp16 ? new Uint16Array(B * shape.numKvHeads * capacity * shape.headDim) : new Float32Array(B * shape.numKvHeads * capacity * shape.headDim), [B, shape.numKvHeads, capacity, shape.headDim]);
  const f = {
    [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from({ length: B }, (_, b) => BigInt(100 + b)), [B, 1]),
    [io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(B * (P + 1)).fill(1n), [B, P + 1]),
    [loopIo.steps]: new ort.Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
    [loopIo.doSample]: new ort.Tensor('bool', new Uint8Array(B), [B]),
    [loopIo.temperature]: new ort.Tensor('float32', new Float32Array(B).fill(1), [B]),
    [loopIo.topK]: new ort.Tensor('int64', new BigInt64Array(B).fill(1n), [B]),
    [loopIo.topP]: new ort.Tensor('float32', new Float32Array(B).fill(2), [B]),
    [loopIo.repetitionPenalty]: new ort.Tensor('float32', new Float32Array(B).fill(1), [B]),
    [loopIo.uniforms]: new ort.Tensor('float32', new Float32Array(steps * B), [steps, B]),
    [loopIo.seen]: new ort.Tensor('bool', new Uint8Array(B * shape.vocabSize), [B, shape.vocabSize]),
  };
  for (let layer = 0; layer < shape.numLayers; layer++) {
    f[io.pastKey.replace('%d', String(layer))] = kv();
    f[io.pastValue.replace('%d', String(layer))] = kv();
  }
  return f;
}

(async () => {
  const prefix = path.join(os.tmpdir(), `decode-loop-profile-${process.pid}`);
  const dequantized = weights === 'dequantized';
  const session = await ort.InferenceSession.create(path.join(dir, dequantized ? manifest.files.decodeLoopDequantized : manifest.files.decodeLoop), {
    executionProviders: [ep === 'cuda' ? { name: 'cuda', deviceId: 0 } : ep],
    extra: {
      // As the engine opens it (runtime/model-session.ts): the dequantization folded at load.
      ...(dequantized ? { session: { disable_quant_qdq: '1' } } : {}),
      // The int4 matmul kernel the engine's default (cudaFpaIntbGemm 'auto') picks for this many rows.
      ep: { cuda: { fpa_intb_gemm: B >= CUDA_FPA_INTB_AUTO_MIN_SLOTS ? '1' : '0' } },
    },
    enableProfiling: true,
    profileFilePrefix: prefix,
  });
  // Warm up at the measured shape: a new shape's first run pays one-off costs (arena growth, kernel setup).
  await session.run(feeds(K), [loopIo.tokens]);
  const started = performance.now();
  await session.run(feeds(K), [loopIo.tokens]);
  const wall = performance.now() - started;
  session.endProfiling();
  const file = fs.readdirSync(os.tmpdir()).map((name) => path.join(os.tmpdir(), name)).find((name) => name.startsWith(prefix));
  const events = JSON.parse(fs.readFileSync(file, 'utf8'));
  // The last model_run is the measured one: keep node events inside its span.
  const runs = events.filter((event) => event.name === 'model_run');
  const last = runs[runs.length - 1];
  const inRun = events.filter((event) => event.cat === 'Node' && event.name.endsWith('_kernel_time') && event.ts >= last.ts && event.ts <= last.ts + last.dur);
  const byOp = new Map();
  const byNode = new Map();
  const byProvider = new Map();
  const offDevice = new Map();
  for (const event of inRun) {
    const op = event.args?.op_name ?? '?';
    byOp.set(op, (byOp.get(op) ?? 0) + event.dur);
    const node = event.name.replace(/_kernel_time$/, '');
    byNode.set(node, (byNode.get(node) ?? 0) + event.dur);
    const provider = event.args?.provider ?? '?';
    byProvider.set(provider, (byProvider.get(provider) ?? 0) + event.dur);
    if (ep !== 'cpu' && provider === 'CPUExecutionProvider') offDevice.set(`${node} (${op})`, (offDevice.get(`${node} (${op})`) ?? 0) + event.dur);
  }
  // Loop and If are containers: their time is their nodes' time (plus their own overhead, shown, not summed).
  const total = [...byOp.entries()].filter(([op]) => op !== 'Loop' && op !== 'If').reduce((sum, [, us]) => sum + us, 0);
  console.log(JSON.stringify({ ep, batch: B, steps: K, past: P, wallMs: +wall.toFixed(1), msPerStep: +(wall / K).toFixed(2), kernelHostMs: +(total / 1000).toFixed(1), runMs: +(last.dur / 1000).toFixed(1) }));
  const top = (map, n) => [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, us]) => `${(us / 1000 / K).toFixed(3).padStart(8)} ms/step  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  console.log('per operator type:\n' + top(byOp, 20).join('\n'));
  console.log('slowest nodes:\n' + top(byNode, 15).join('\n'));
  console.log('per provider:\n' + top(byProvider, 5).join('\n'));
  console.log(`nodes on the CPU (${offDevice.size}):\n` + top(offDevice, 40).join('\n'));
  // With CUDA_LAUNCH_BLOCKING=1 every kernel finishes before its node returns, so these host times are GPU times.
  if (process.env.OUT) fs.writeFileSync(path.join(process.env.OUT, `profile-b${B}-k${K}${process.env.CUDA_LAUNCH_BLOCKING === '1' ? '-blocking' : ''}.json`), JSON.stringify({ byOp: Object.fromEntries(byOp), byNode: Object.fromEntries(byNode), byProvider: Object.fromEntries(byProvider) }));
  fs.rmSync(file, { force: true });
})().catch((error) => {
  console.error('profile-decode-loop:', error.message);
  process.exit(1);
});
