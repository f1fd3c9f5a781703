// How closely two execution providers agree on the same model (diagnostic, run beside `falconq bench`): the greedy
// continuation of a prompt on the reference EP (cpu), then, for every prefix of it, the next-token logits from both
// EPs (model.onnx, one prefill run each). Prints per prompt: the largest logit difference, the logits' spread, and
// each step where the argmax differs together with the reference's top-2 margin there (a difference smaller than
// the margin cannot flip the choice; a near-tie can).
//   node bench/ep-agreement.js MODEL_DIR [EP=cuda] [STEPS=128] [PROMPT_IDS=11,200,31;...]
const path = require('node:path');
const fs = require('node:fs');
const ort = require('onnxruntime-node');

const [dir, ep = 'cuda', stepsArg = '128', promptsArg = '1,2,3,4,5,6,7,8;300,301,302;42'] = process.argv.slice(2);
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'falconq.json'), 'utf8'));
const { io, shape } = manifest;
const fp16 = manifest.kvDType === 'fp16';

function feeds(ids) {
  const f = {
    [io.inputIds]: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    [io.attentionMask]: new ort.Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
  };
  const empty = fp16 ? new Uint16Array(0) : new Float32Array(0);
  for (let layer = 0; layer < shape.numLayers; layer++) {
    for (const name of [io.pastKey, io.pastValue]) f[name.replace('%d', String(layer))] = new ort.Tensor(fp16 ? 'float16' : 'float32', empty, [1, shape.numKvHeads, 0, shape.headDim]);
  }
  return f;
}

const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

(async () => {
  const model = path.join(dir, manifest.files.model);
  const open = (provider) => ort.InferenceSession.create(model, { executionProviders: [provider === 'cuda' ? { name: 'cuda', deviceId: 0 } : provider] });
  const [reference, other] = [await open('cpu'), await open(ep)];
  const steps = Number(stepsArg);
  for (const prompt of promptsArg.split(';').map((p) => p.split(',').map(Number))) {
    const ids = [...prompt];
    let maxDiff = 0;
    let spread = 0;
    const flips = [];
    for (let step = 0; step < steps; step++) {
      const a = (await reference.run(feeds(ids), [io.logits]))[io.logits].data;
      const b = (await other.run(feeds(ids), [io.logits]))[io.logits].data;
      let diff = 0;
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        min = Math.min(min, a[i]);
        max = Math.max(max, a[i]);
      }
      maxDiff = Math.max(maxDiff, diff);
      spread = Math.max(spread, max - min);
      const top = argmax(a);
      if (argmax(b) !== top) {
        const second = Math.max(...Array.from(a).filter((_, i) => i !== top));
        flips.push({ step, margin: +(a[top] - second).toFixed(5), diff: +diff.toFixed(5) });
      }
      ids.push(top);
    }
    console.log(JSON.stringify({ ep, prompt, steps, maxLogitDiff: +maxDiff.toFixed(5), logitSpread: +spread.toFixed(3), argmaxFlips: flips.length, flips: flips.slice(0, 5) }));
  }
})().catch((error) => {
  console.error('ep-agreement:', error.message);
  process.exit(1);
});
