#!/usr/bin/env node
// The api alone under request load, and its memory: a private Redis and the api (no worker) as their own processes,
// then 16 clients reading (GET /health, /v1/models, a batch, a batch listing) and 2 clients creating batches of
// 2,000 prompts (checked and tokenized on the check thread, stored and queued). The api's RSS is sampled throughout.
// Prints one JSON line per round.
//
//   node scripts/bench-api.js [--gets 8000] [--batches 16] [--rounds 1] [--api-node-options=OPTS] [--model DIR]
//
// --api-node-options sets NODE_OPTIONS for the api (e.g. --max-semi-space-size=16 for Node's default young
// generation instead of the one scripts/api-command.js starts it with). Needs `npm run build`.
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { localModelDir, positiveIntegerFlag, startLocalStack } = require('./local-stack');

const { values: args } = parseArgs({
  options: {
    gets: { type: 'string', default: '8000' },
    batches: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '1' },
    model: { type: 'string' },
    'api-node-options': { type: 'string' },
  },
});
const gets = positiveIntegerFlag(args, 'gets');
const batches = positiveIntegerFlag(args, 'batches');
const rounds = positiveIntegerFlag(args, 'rounds');
const PROMPTS_PER_BATCH = 2000;
const READERS = 16;
const CREATORS = 2;

const rssMiB = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

async function createBatch(url, label, prompts) {
  const response = await fetch(`${url}/batches`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompts: Array.from({ length: prompts }, (_, i) => `prompt ${label} ${i}: a few more words to tokenize`), max_new_tokens: 4 }),
  });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`POST /batches answered ${response.status}: ${JSON.stringify(body)}`);
  return body.id;
}

async function round(url, pid) {
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await createBatch(url, `warm-${i}`, 50));
  const paths = ['/health', '/v1/models', `/batches/${ids[0]}`, '/batches?limit=20'];
  let peak = rssMiB(pid);
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 20);
  try {
    let next = 0;
    const readStart = performance.now();
    await Promise.all(Array.from({ length: READERS }, async () => {
      while (next < gets) {
        const response = await fetch(url + paths[next++ % paths.length]);
        await response.arrayBuffer();
        if (response.status !== 200) throw new Error(`GET answered ${response.status}`);
      }
    }));
    const readSeconds = (performance.now() - readStart) / 1000;
    let created = 0;
    const createStart = performance.now();
    await Promise.all(Array.from({ length: CREATORS }, async (_, client) => {
      while (created < batches) await createBatch(url, `${client}-${created++}`, PROMPTS_PER_BATCH);
    }));
    const createSeconds = (performance.now() - createStart) / 1000;
    return {
      getsPerSecond: Math.round(gets / readSeconds),
      promptsAcceptedPerSecond: Math.round((batches * PROMPTS_PER_BATCH) / createSeconds),
      apiPeakRssMiB: Number(peak.toFixed(1)),
    };
  } finally {
    clearInterval(sampler);
  }
}

async function main() {
  const apiEnv = args['api-node-options'] ? { NODE_OPTIONS: args['api-node-options'] } : {};
  for (let r = 0; r < rounds; r++) {
    const stack = await startLocalStack({ modelDir: localModelDir(args.model), workers: 0, apiEnv });
    try {
      const idle = rssMiB(stack.pids.api);
      const figures = await round(stack.api, stack.pids.api);
      console.log(JSON.stringify({ apiNodeOptions: args['api-node-options'] ?? null, apiIdleRssMiB: Number(idle.toFixed(1)), ...figures }));
    } finally {
      await stack.stop();
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
