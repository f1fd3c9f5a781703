// How far continuous batching can get ahead of static batching on the queue-fed mixed workload, on a model of a
// GPU's costs rather than the GPU: the engine's real Scheduler (planner, admission, run lengths, length-sorted
// prefills) drives a runner that does no arithmetic and only adds up modeled time. Run it after `npm run build`.
//
//   node bench/mixed-ceiling.js [--requests 1024] [--in-flight 256] [--slots 256] [--boundary-gbps 0,25,12]
//                               [--chunk-min 16,32,64] [--run-cost 256,1000000] [--seed 1]
//
// Costs (ms), defaults from the H100 figures of docs/benchmarks.md (Falcon-7B shape, int4, decode loop):
//   decode step of B rows:   --step-ms 8.3 + --step-ms-per-row 0.0855 x B      (115.5 tok/s at batch 1, 30.4 ms at 256)
//   prefill run:             --prefill-run-ms 15 + --prefill-us-per-token 49 x rows x longest prompt
//   run boundary:            every decode-loop run feeds the whole KV cache (rows x capacity x 8 KiB) to the GPU at
//                            --boundary-gbps (0: free boundaries, the ceiling), plus --boundary-ms 5
// Prompts 16-128 tokens, outputs 32-256 (as `falconq bench --prompt-len 64 --new-tokens 128 --mixed-in-flight`).
// Prints modeled tokens/s for static and continuous admission and their ratio, per combination.
const { Scheduler } = require('../dist/libs/engine/src/scheduler/scheduler');
const { resolveGenerationParams } = require('../dist/libs/engine/src/params');
const { SequenceRandom } = require('../dist/libs/engine/src/sampling/prng');

const defaults = {
  requests: '1024', 'in-flight': '256', slots: '256', 'boundary-gbps': '0,25,12', 'chunk-min': '32', 'run-cost': '256,1000000',
  seed: '1', 'step-ms': '8.3', 'step-ms-per-row': '0.0855', 'prefill-run-ms': '15', 'prefill-us-per-token': '49',
  'boundary-ms': '5', 'kv-kib-per-token': '8', 'prefill-budget': '32768', 'chunk-max': '128',
};

function parseArgs(argv) {
  const options = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in defaults) || argv[i + 1] === undefined) throw new Error(`unknown option or missing value: ${argv[i]} (options: ${Object.keys(defaults).join(', ')})`);
    options[name] = argv[i + 1];
  }
  const list = (name) => options[name].split(',').map(Number);
  const one = (name) => Number(options[name]);
  for (const [name, value] of Object.entries(options)) {
    if (value.split(',').some((part) => !Number.isFinite(Number(part)) || Number(part) < 0)) throw new Error(`--${name} must be non-negative numbers, got ${value}`);
  }
  return { list, one };
}

/** A ForwardRunner that only keeps time: each call adds its modeled cost to the clock. */
class CostModelRunner {
  constructor(costs, rows) {
    Object.assign(this, { placement: 'host', joinMode: 'prefill', rows, graphTopK: 8, chunkCandidates: 32, contextLength: 2048 });
    this.costs = costs;
    this.clock = 0;
    this.lengths = new Map();
  }
  output() {
    return { top: { ids: [1, 2, 3, 4, 5, 6, 7, 8], logits: [8, 7, 6, 5, 4, 3, 2, 1] }, best: 1 };
  }
  async prefill(entries) {
    const longest = Math.max(...entries.map((entry) => entry.tokens.length));
    this.clock += this.costs.prefillRunMs + (this.costs.prefillUsPerToken * entries.length * longest) / 1000;
    for (const entry of entries) this.lengths.set(entry.row, entry.tokens.length);
    return entries.map(() => this.output());
  }
  async extend(entry) {
    this.clock += this.costs.prefillRunMs + (this.costs.prefillUsPerToken * entry.tokens.length) / 1000;
    this.lengths.set(entry.row, this.lengths.get(entry.row) + entry.tokens.length);
    return this.output();
  }
  async decode(entries) {
    this.clock += this.boundaryMs(entries) + this.stepMs(entries.length);
    for (const entry of entries) this.lengths.set(entry.row, this.lengths.get(entry.row) + 1);
    return entries.map(() => this.output());
  }
  async decodeChunk(entries, steps) {
    this.clock += this.boundaryMs(entries, steps) + steps * this.stepMs(entries.length);
    for (const entry of entries) this.lengths.set(entry.row, this.lengths.get(entry.row) + steps);
    return entries.map(() => new Array(steps).fill(1));
  }
  stepMs(rows) {
    return this.costs.stepMs + this.costs.stepMsPerRow * rows;
  }
  /** The whole cache of the run's rows goes to the GPU: rows x (longest + steps) positions. */
  boundaryMs(entries, steps = 1) {
    if (this.costs.boundaryGbps === 0) return 0;
    const capacity = Math.max(...entries.map((entry) => this.lengths.get(entry.row))) + steps;
    const bytes = entries.length * capacity * this.costs.kvKibPerToken * 1024;
    return this.costs.boundaryMs + (bytes / (this.costs.boundaryGbps * 1e9)) * 1000;
  }
  release(row) {
    this.lengths.delete(row);
  }
  dispose() {}
}

function workload(count, seed) {
  const random = new SequenceRandom(seed, 0);
  const int = (lo, hi) => lo + Math.floor(random.next() * (hi - lo + 1));
  return Array.from({ length: count }, () => ({ prompt: Array.from({ length: int(16, 128) }, () => 5), newTokens: int(32, 256) }));
}

async function simulate(requests, admission, setup) {
  const runner = new CostModelRunner(setup.costs, setup.slots);
  const scheduler = new Scheduler(runner, {
    prefillChunkTokens: setup.prefillBudget,
    prefillRunCostTokens: setup.runCost,
    joinGroup: Math.max(1, Math.floor(setup.slots / 8)),
    joinMaxWaitSteps: 0,
    admission,
    forceFullLogits: false,
    decodeChunkSteps: setup.chunkMax,
    decodeChunkMinSteps: setup.chunkMin,
    eosId: 0,
    decoder: { decode: () => '' },
    now: () => runner.clock,
  });
  let next = 0;
  let generated = 0;
  const submit = () => {
    const i = next++;
    const request = requests[i];
    const params = resolveGenerationParams({ maxNewTokens: request.newTokens, ignoreEos: true });
    scheduler.enqueue(
      { id: `r${i}`, promptIds: request.prompt, promptText: '', params, interactive: false, fallbackSeed: 1, submittedAt: runner.clock },
      {
        onDone: (result) => {
          generated += result.sequences[0].tokens.length;
          if (next < requests.length) submit();
        },
      },
    );
  };
  while (next < Math.min(setup.inFlight, requests.length)) submit();
  while (!scheduler.idle) await scheduler.step();
  const stats = scheduler.stats();
  return { seconds: runner.clock / 1000, tokensPerSecond: generated / (runner.clock / 1000), prefillSeconds: stats.prefillMsTotal / 1000, prefillRuns: stats.prefillRuns, rowsPerStep: stats.decodeRows / stats.decodeSteps };
}

async function main() {
  const { list, one } = parseArgs(process.argv.slice(2));
  const requests = workload(one('requests'), one('seed'));
  const base = {
    slots: one('slots'), inFlight: one('in-flight'), prefillBudget: one('prefill-budget'), chunkMax: one('chunk-max'),
    costs: { stepMs: one('step-ms'), stepMsPerRow: one('step-ms-per-row'), prefillRunMs: one('prefill-run-ms'), prefillUsPerToken: one('prefill-us-per-token'), boundaryMs: one('boundary-ms'), kvKibPerToken: one('kv-kib-per-token') },
  };
  const tokens = requests.reduce((sum, request) => sum + request.newTokens, 0);
  console.log(`queue-fed mixed workload (modeled): ${requests.length} requests, ${base.inFlight} in flight, ${base.slots} slots, ${tokens} tokens to generate`);
  console.log('boundary GB/s | chunk min | run cost | static tok/s (prefill s) | continuous tok/s (prefill s, rows/step) | ratio');
  for (const boundaryGbps of list('boundary-gbps')) {
    for (const chunkMin of list('chunk-min')) {
      for (const runCost of list('run-cost')) {
        const setup = { ...base, chunkMin, runCost, costs: { ...base.costs, boundaryGbps } };
        const [fixed, moving] = [await simulate(requests, 'static', setup), await simulate(requests, 'continuous', setup)];
        const cell = (r) => `${r.tokensPerSecond.toFixed(0)} (${r.prefillSeconds.toFixed(2)} s`;
        console.log(`${boundaryGbps === 0 ? 'free' : boundaryGbps} | ${chunkMin} | ${runCost} | ${cell(fixed)}) | ${cell(moving)}, ${moving.rowsPerStep.toFixed(1)}) | ${(moving.tokensPerSecond / fixed.tokensPerSecond).toFixed(2)}x`);
      }
    }
  }
}

main().catch((error) => {
  console.error(`mixed-ceiling: ${error.message}`);
  process.exit(1);
});
