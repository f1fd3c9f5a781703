#!/usr/bin/env node
// Diagnostic (not part of the product): times raw session.run() decode steps of a converted model on an execution
// provider, without the engine, and summarises an onnxruntime profile by op type and provider. Use it to see where a
// decode step's time goes and which nodes fall back to the CPU.
//   node bench/profile-webgpu.js <modelDir> [--ep webgpu] [--batch 1,64] [--steps 32] [--past 192]
//        [--cache-mode bucket|lazyRelease|simple|disabled] [--profile <prefix>] [--fetch top_ids,top_logits]
//        [--kv alloc|share] [--validation basic|disabled] [--extra key=value,...] [--dump-logits <file.json>]
// --dump-logits (with --fetch ...,logits) writes row 0's logits of every decode step, to compare KV placements.
// --extra adds session config entries, e.g. ep.webgpuexecutionprovider.maxNumPendingDispatches=256.
// --kv alloc: every step's present.* are new GPU buffers (the old ones are disposed); --kv share: the past tensors are
// bound as the present outputs too (IO binding). On onnxruntime-node 1.30 that does not work (docs/benchmarks.md):
// the binding returns new CPU tensors for such outputs and never writes the bound GPU tensors, so the cache goes
// stale (logits drift, see --fetch top_ids,top_logits,logits --dump-logits). Kept to check newer versions.
const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

const args = process.argv.slice(2);
const flag = (name, fallback) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : fallback; };
const dir = args[0];
const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'falconq.json'), 'utf8'));
const ep = flag('ep', 'webgpu');
const batches = flag('batch', '1,64').split(',').map(Number);
const steps = Number(flag('steps', '32'));
const pastLen = Number(flag('past', '192'));
const cacheMode = flag('cache-mode', undefined);
const profile = flag('profile', undefined);
const fetchExtra = flag('fetch', 'top_ids,top_logits').split(',').filter(Boolean);
const kvMode = flag('kv', 'alloc');
const dumpLogits = flag('dump-logits', undefined);
const validation = flag('validation', undefined);
const extra = Object.fromEntries(flag('extra', '').split(',').filter(Boolean).map((pair) => pair.split('=')));
const { numLayers: layers, headDim, numKvHeads: kvHeads } = manifest.shape;
const io = manifest.io;
const fp16 = manifest.kvDType === 'fp16';
const name = (pattern, layer) => pattern.replace('%d', String(layer));

async function main() {
  const presentNames = [];
  for (let l = 0; l < layers; l++) presentNames.push(name(io.presentKey, l), name(io.presentValue, l));
  const location = {};
  if (ep === 'webgpu') for (const n of presentNames) location[n] = 'gpu-buffer';
  const provider = ep === 'webgpu'
    ? { name: 'webgpu', ...(cacheMode ? { storageBufferCacheMode: cacheMode } : {}), ...(validation ? { validationMode: validation } : {}) }
    : { name: ep };
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path.join(dir, manifest.files.model), {
    executionProviders: [provider], graphOptimizationLevel: 'all', preferredOutputLocation: location, extra,
    ...(profile ? { enableProfiling: true, profileFilePrefix: profile } : {}),
  });
  console.log(JSON.stringify({ ep, cacheMode: cacheMode ?? 'default', validation: validation ?? 'default', extra, loadMs: Math.round(performance.now() - t0) }));
  for (const B of batches) {
    const zeros = new ort.Tensor(fp16 ? 'float16' : 'float32', fp16 ? new Uint16Array(B * kvHeads * pastLen * headDim) : new Float32Array(B * kvHeads * pastLen * headDim), [B, kvHeads, pastLen, headDim]);
    const promptLen = 64;
    const ids = new BigInt64Array(B * promptLen).map((_, i) => BigInt(12 + ((i * 7919) % (manifest.shape.vocabSize - 12))));
    let past = null;
    const run = async (idsT, width) => {
      const mask = new ort.Tensor('int64', new BigInt64Array(B * width).fill(1n), [B, width]);
      const feeds = { [io.inputIds]: idsT, [io.attentionMask]: mask };
      for (let l = 0; l < layers; l++) {
        feeds[name(io.pastKey, l)] = past ? past[2 * l] : zeros;
        feeds[name(io.pastValue, l)] = past ? past[2 * l + 1] : zeros;
      }
      if (kvMode === 'share' && past) {
        const fetches = Object.fromEntries(fetchExtra.map((n) => [n, null]));
        presentNames.forEach((n, i) => (fetches[n] = past[i]));
        return session.run(feeds, fetches);
      }
      const out = await session.run(feeds, [...fetchExtra, ...presentNames]);
      const previous = past;
      past = presentNames.map((n) => out[n]);
      if (previous && ep === 'webgpu') for (const t of previous) t.dispose();
      return out;
    };
    let s = performance.now();
    await run(new ort.Tensor('int64', ids, [B, promptLen]), promptLen);
    const prefillMs = performance.now() - s;
    const times = [];
    const firstIds = [];
    const row0Logits = [];
    for (let step = 0; step < steps; step++) {
      s = performance.now();
      const outputs = await run(new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(12 + ((100 + step) % (manifest.shape.vocabSize - 12)))), [B, 1]), promptLen + step + 1);
      times.push(performance.now() - s);
      if (dumpLogits && outputs.logits) row0Logits.push(Array.from(outputs.logits.data.subarray(0, manifest.shape.vocabSize)));
      // Row 0's best candidate (the KV placements must agree on it): the group with the largest first value.
      if (outputs.top_ids && outputs.top_logits) {
        const groups = manifest.io.topGroups ?? 1;
        const k = manifest.io.topK;
        let best = 0;
        for (let g = 1; g < groups; g++) if (outputs.top_logits.data[g * k] > outputs.top_logits.data[best * k]) best = g;
        firstIds.push(best * (manifest.shape.vocabSize / groups) + Number(outputs.top_ids.data[best * k]));
      }
    }
    const warm = times.slice(4).sort((a, b) => a - b);
    const mean = warm.reduce((a, b) => a + b, 0) / warm.length;
    console.log(JSON.stringify({ batch: B, prefillMs: +prefillMs.toFixed(1), decodeMsMean: +mean.toFixed(2), decodeMsP50: +warm[warm.length >> 1].toFixed(2), tokensPerSecondDecode: +(B * 1000 / mean).toFixed(1), fetch: fetchExtra, kv: kvMode, row0Top1: firstIds.join(' ') }));
    if (past && ep === 'webgpu') for (const t of past) t.dispose();
    if (dumpLogits) fs.writeFileSync(`${dumpLogits}.b${B}.json`, JSON.stringify(row0Logits));
  }
  if (profile) {
    session.endProfiling();
    const folder = path.dirname(path.resolve(profile));
    const written = fs.readdirSync(folder).filter((f) => f.startsWith(path.basename(profile)) && f.endsWith('.json'))
      .map((f) => path.join(folder, f)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
    if (written.length) summarise(written[0]);
  }
  await session.release();
}

function summarise(file) {
  const all = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byName = new Map();
  for (const e of all) {
    if (e.cat === 'Node' || e.cat === 'Session') continue;
    // GPU timestamps come as 'Api' events named '<node>&<op>&<program>': sum them by op and program.
    const parts = e.name.split('&');
    const key = parts.length === 3 ? `${e.cat} ${parts[1]} ${parts[2]}` : `${e.cat} ${e.name}`;
    const entry = byName.get(key) ?? { count: 0, us: 0 };
    entry.count += 1; entry.us += e.dur ?? 0; byName.set(key, entry);
  }
  console.log('profile (all runs), other events: category name count total_ms');
  for (const [key, v] of [...byName.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, 40)) console.log(`  ${key.slice(0, 80).padEnd(80)} ${String(v.count).padStart(7)} ${(v.us / 1000).toFixed(1).padStart(10)}`);
  const events = all.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const byOp = new Map();
  for (const e of events) {
    const key = `${e.args.provider} ${e.args.op_name}`;
    const entry = byOp.get(key) ?? { count: 0, us: 0, durations: [] };
    entry.count += 1; entry.us += e.dur; entry.durations.push(e.dur); byOp.set(key, entry);
  }
  const rows = [...byOp.entries()].sort((a, b) => b[1].us - a[1].us);
  // Host time per node (onnxruntime's kernel_time); the median leaves out the first runs' shader compilation.
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
  console.log('profile (all runs): provider op count total_ms median_us_per_node');
  for (const [key, v] of rows) console.log(`  ${key.padEnd(60)} ${String(v.count).padStart(7)} ${(v.us / 1000).toFixed(1).padStart(10)} ${String(median(v.durations)).padStart(8)}`);
  const runs = all.filter((e) => e.cat === 'Session' && e.name === 'model_run').map((e) => e.dur);
  if (runs.length) console.log(`model_run: ${runs.length} runs, median ${median(runs)} us`);
}

main().catch((e) => { console.error(e); process.exit(1); });
