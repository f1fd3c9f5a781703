#!/usr/bin/env node
// Throughput of the whole service (api -> Redis/BullMQ -> worker -> engine -> store), and of the bare engine on the
// same prompts, to show what the queue costs.
//
//   Against a running stack (any machine, e.g. the 2-GPU box):
//     node scripts/bench-service.js --api http://127.0.0.1:3000 [--key KEY] --prompts 2000 --new-tokens 64
//   Self-contained on this machine (starts a private Redis, the api and one worker on CPU with the tiny model, then
//   runs the bare engine with the same prompts and slots):
//     node scripts/bench-service.js --local --prompts 1000 --new-tokens 8 --slots 16 [--repeat 3] [--model DIR]
//
// Every prompt generates exactly --new-tokens tokens (ignore_eos), so both sides do the same work. Needs `npm run build`.
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { localModelDir, positiveIntegerFlag, root, startLocalStack } = require('./local-stack');

const { values: args } = parseArgs({
  options: {
    api: { type: 'string' },
    key: { type: 'string' },
    local: { type: 'boolean', default: false },
    prompts: { type: 'string', default: '1000' },
    'new-tokens': { type: 'string', default: '16' },
    slots: { type: 'string', default: '16' },
    model: { type: 'string' },
    repeat: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});

const promptCount = positiveIntegerFlag(args, 'prompts');
const newTokens = positiveIntegerFlag(args, 'new-tokens');
const slots = positiveIntegerFlag(args, 'slots');
const repeat = positiveIntegerFlag(args, 'repeat');
const prompts = Array.from({ length: promptCount }, (_, i) => `Question ${i}: what is the next number after ${i}?\nAnswer:`);

async function request(api, method, route, body) {
  const headers = { 'content-type': 'application/json' };
  if (args.key) headers.authorization = `Bearer ${args.key}`;
  const response = await fetch(`${api}${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** Submits one native batch and follows it to the end; items/s and tokens/s from submit to completion. */
async function benchService(api) {
  const started = performance.now();
  const batch = await request(api, 'POST', '/batches', { prompts, max_new_tokens: newTokens, ignore_eos: true });
  // The event stream ends right after the batch's final status: one request, no polling (and no rate limit hits).
  const headers = args.key ? { authorization: `Bearer ${args.key}` } : {};
  const events = await fetch(`${api}/batches/${batch.id}/events`, { headers });
  if (!events.ok) throw new Error(`events of ${batch.id}: ${events.status}`);
  await events.text();
  const seconds = (performance.now() - started) / 1000;
  const view = await request(api, 'GET', `/batches/${batch.id}`);
  if (view.status !== 'completed' || view.request_counts.failed > 0) {
    throw new Error(`batch ${batch.id} ended ${view.status} with ${JSON.stringify(view.request_counts)}`);
  }
  const tokens = view.usage?.output_tokens ?? promptCount * newTokens;
  return { seconds, itemsPerSecond: promptCount / seconds, tokensPerSecond: tokens / seconds, tokens, batchId: batch.id };
}

/** The same prompts straight into the engine (its worker_thread, as in a worker process), no queue, no HTTP. */
async function benchEngine(modelDir) {
  const { GenerationEngine } = require(path.join(root, 'dist', 'libs', 'engine', 'src'));
  const engine = await GenerationEngine.start({ modelDir, executionProvider: 'cpu', slots });
  try {
    const started = performance.now();
    const results = await Promise.all(prompts.map((prompt, i) => engine.submit({ id: `bench-${i}`, prompt, params: { maxNewTokens: newTokens, ignoreEos: true } })));
    const seconds = (performance.now() - started) / 1000;
    const tokens = results.reduce((sum, r) => sum + r.sequences.reduce((s, q) => s + q.tokens.length, 0), 0);
    return { seconds, itemsPerSecond: promptCount / seconds, tokensPerSecond: tokens / seconds, tokens };
  } finally {
    await engine.close();
  }
}

const fmt = (r) => `${r.itemsPerSecond.toFixed(1)} items/s, ${r.tokensPerSecond.toFixed(1)} tokens/s (${r.seconds.toFixed(2)} s)`;

async function main() {
  const setting = `${promptCount} prompts x ${newTokens} new tokens`;
  if (args.api) {
    const service = await benchService(args.api.replace(/\/$/, ''));
    if (args.json) process.stdout.write(`${JSON.stringify({ setting, service })}\n`);
    else process.stdout.write(`service (${args.api}), ${setting}: ${fmt(service)}\n`);
    return;
  }
  if (!args.local) throw new Error('give --api URL (a running stack) or --local (start one here)');
  const modelDir = localModelDir(args.model);
  const stack = await startLocalStack({ modelDir, workerEnv: { FALCONQ_SLOTS: String(slots) } });
  // Interleaved runs, best of --repeat for each side: on a shared machine the slowest runs measure the neighbours.
  const services = [];
  const engines = [];
  try {
    await benchService(stack.api); // warm-up: first-run costs are not the queue's
    await benchEngine(modelDir);
    for (let run = 0; run < repeat; run++) {
      services.push(await benchService(stack.api));
      engines.push(await benchEngine(modelDir));
    }
  } finally {
    await stack.stop();
  }
  const best = (runs) => runs.reduce((a, b) => (b.itemsPerSecond > a.itemsPerSecond ? b : a));
  const service = best(services);
  const engine = best(engines);
  const overhead = 1 - service.itemsPerSecond / engine.itemsPerSecond;
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os.loadavg()[0].toFixed(1)}`;
  const summary = { date: new Date().toISOString(), machine, setting, slots, repeat, modelDir, service, engine, overhead, services, engines };
  if (args.json) {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return;
  }
  const all = (runs) => runs.map((r) => r.itemsPerSecond.toFixed(1)).join(', ');
  process.stdout.write([
    `machine: ${machine}`,
    `setting: ${setting}, ${slots} slots, model ${modelDir}, CPU, best of ${repeat} interleaved runs`,
    `service (api + Redis + 1 worker): ${fmt(service)}   [all runs, items/s: ${all(services)}]`,
    `bare engine (no queue, no HTTP):  ${fmt(engine)}   [all runs, items/s: ${all(engines)}]`,
    `service overhead: ${(overhead * 100).toFixed(1)}% of engine throughput`,
    '',
  ].join('\n'));
}

main().catch((error) => {
  process.stderr.write(`bench-service: ${error.message}\n`);
  process.exit(1);
});
