#!/usr/bin/env node
// How much the queue path (api -> Redis/BullMQ -> workers -> store) carries: N worker processes, each with a simulated
// device (FALCONQ_SIMULATED_STEP_MS: every step gives each running prompt one token, up to --slots prompts) that
// produces --engine-tokens-per-s at full batch, through the real api, Redis and worker code. For each (engines, rate)
// it prints the sustained items/s and tokens/s, what was offered, the CPU of Redis, the api and the workers, Redis
// ops/s and commands per prompt, and the first bottleneck.
//
//   npm run build && node scripts/bench-scaleout.js --engines 1,2,4,8 --engine-tokens-per-s 1000,2000 \
//       [--slots 64] [--new-tokens 64] [--seconds 20] [--model DIR] [--json]
//
// Every process runs on this machine, so the workers' own CPU counts against Redis and the api: on a small machine
// the host's cores are the first limit, and the table says so.
const fs = require('node:fs');
const os = require('node:os');
const { spawnSync } = require('node:child_process');
const { parseArgs } = require('node:util');
const { localModelDir, sleep, startLocalStack } = require('./local-stack');

const { values: args } = parseArgs({
  options: {
    engines: { type: 'string', default: '1,2,4,8' },
    'engine-tokens-per-s': { type: 'string', default: '2000' },
    slots: { type: 'string', default: '64' },
    'new-tokens': { type: 'string', default: '64' },
    seconds: { type: 'string', default: '20' },
    /** Prompts end at a simulated eos after half to all of --new-tokens (else all get exactly --new-tokens). */
    'varied-lengths': { type: 'boolean', default: false },
    /** The workers' FALCONQ_PROGRESS_MS (one BullMQ progress update per running prompt per interval); a list compares. */
    'progress-ms': { type: 'string', default: '' },
    model: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

function positiveInts(name) {
  const values = String(args[name]).split(',').map((v) => Number(v.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`--${name} must be positive integers (comma separated), got ${args[name]}`);
  return values;
}
const [slots] = positiveInts('slots');
const [newTokens] = positiveInts('new-tokens');
const [seconds] = positiveInts('seconds');
const TICKS_PER_SECOND = 100; // USER_HZ on Linux
/** Most prompts one batch may hold (the api's default FALCONQ_MAX_LINES). */
const MAX_PROMPTS = 50_000;

/** CPU seconds a process has used (user + system), from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function hostCpuSeconds() {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = line[3] + line[4];
  const total = line.reduce((a, b) => a + b, 0);
  return { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
}

function redisInfo(port, section) {
  const out = spawnSync('redis-cli', ['-p', String(port), 'info', section], { encoding: 'utf8' }).stdout ?? '';
  return out;
}

function redisCommands(port) {
  const calls = {};
  for (const match of redisInfo(port, 'commandstats').matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls[match[1]] = Number(match[2]);
  return calls;
}

/** The workers' last heartbeats: rows per decode step (how full the queue keeps each engine) and ms per step. */
function engineLoad(port) {
  const flat = (spawnSync('redis-cli', ['-p', String(port), 'hgetall', 'bench:workers'], { encoding: 'utf8' }).stdout ?? '').trim().split('\n');
  const beats = [];
  for (let i = 1; i < flat.length; i += 2) beats.push(JSON.parse(flat[i]));
  const mean = (key) => beats.reduce((sum, b) => sum + (b[key] ?? 0), 0) / Math.max(beats.length, 1);
  return { rowsPerStep: mean('rowsPerDecodeStep'), msPerStep: mean('decodeMsPerStep') };
}

function snapshot(stack) {
  return {
    at: performance.now() / 1000,
    redis: cpuSeconds(stack.pids.redis),
    api: cpuSeconds(stack.pids.api),
    workers: stack.pids.workers.reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    host: hostCpuSeconds(),
    commands: redisCommands(stack.redisPort),
  };
}

async function batchCounts(api, id, redisPort) {
  const view = await (await fetch(`${api}/batches/${id}`)).json();
  const tokens = Number(spawnSync('redis-cli', ['-p', String(redisPort), 'hget', `bench:batch:${id}`, 'completion_tokens'], { encoding: 'utf8' }).stdout?.trim() || 0);
  return { status: view.status, done: view.request_counts.completed + view.request_counts.failed, failed: view.request_counts.failed, total: view.request_counts.total, tokens };
}

/**
 * One setting: a fresh stack and one batch sized for about --seconds at the offered rate (at least 6 rounds of
 * slots), measured from 20% done until 1.5 rounds of slots are left, while every engine still has prompts waiting.
 */
async function measure(modelDir, engines, engineTokensPerSecond, progressMs) {
  const stepMs = Math.max(1, Math.round((slots * 1000) / engineTokensPerSecond));
  const offeredTokens = (engines * slots * 1000) / stepMs;
  // Simulated eos ends a prompt after newTokens/2 .. newTokens tokens: three quarters on average.
  const meanTokens = args['varied-lengths'] ? (Math.ceil(newTokens / 2) + newTokens) / 2 : newTokens;
  const offeredItems = offeredTokens / meanTokens;
  // Enough prompts that the engines stay full through the window: it ends while 1.5 rounds of slots are still queued.
  const capacity = engines * slots;
  const prompts = Math.min(MAX_PROMPTS, Math.max(6 * capacity, Math.round(offeredItems * seconds)));
  const windowEnd = prompts - 1.5 * capacity;
  const stack = current = await startLocalStack({
    modelDir, workers: engines,
    workerEnv: { FALCONQ_SLOTS: String(slots), FALCONQ_SIMULATED_STEP_MS: String(stepMs), FALCONQ_HEARTBEAT_MS: '2000', ...(progressMs ? { FALCONQ_PROGRESS_MS: String(progressMs) } : {}) },
    apiEnv: { FALCONQ_MAX_BATCHES_IN_FLIGHT: '0' },
  });
  try {
    const body = { prompts: Array.from({ length: prompts }, (_, i) => `Question ${i}: what is the next number after ${i}?\nAnswer:`), max_new_tokens: newTokens, ignore_eos: !args['varied-lengths'] };
    const submitStarted = performance.now();
    const response = await fetch(`${stack.api}/batches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const batch = await response.json();
    if (response.status !== 200) throw new Error(`submit: ${response.status} ${JSON.stringify(batch)}`);
    const submitSeconds = (performance.now() - submitStarted) / 1000;
    let from;
    let to;
    for (;;) {
      const counts = await batchCounts(stack.api, batch.id, stack.redisPort);
      if (!from && counts.done >= prompts * 0.2) from = { ...snapshot(stack), done: counts.done, tokens: counts.tokens };
      if (from && !to && counts.done >= windowEnd) to = { ...snapshot(stack), done: counts.done, tokens: counts.tokens, engine: engineLoad(stack.redisPort) };
      if (['completed', 'failed', 'cancelled', 'expired'].includes(counts.status)) {
        if (counts.status !== 'completed' || counts.failed > 0) throw new Error(`batch ended ${counts.status} with ${counts.failed} failed`);
        break;
      }
      await sleep(200);
    }
    const span = to.at - from.at;
    const items = (to.done - from.done) / span;
    const commands = Object.fromEntries(Object.keys(to.commands).map((c) => [c, (to.commands[c] - (from.commands[c] ?? 0)) / (to.done - from.done)]));
    const opsPerItem = Object.values(commands).reduce((a, b) => a + b, 0);
    const cpu = (key) => (to[key] - from[key]) / span;
    const hostBusy = (to.host.busy - from.host.busy) / (to.host.total - from.host.total);
    const row = {
      engines, engineTokensPerSecond: (slots * 1000) / stepMs, stepMs, slots, newTokens, progressMs: progressMs ?? 'default', prompts, submitSeconds,
      offeredItemsPerSecond: offeredItems, offeredTokensPerSecond: offeredTokens,
      itemsPerSecond: items, tokensPerSecond: (to.tokens - from.tokens) / span, ofOffered: (to.tokens - from.tokens) / span / offeredTokens,
      cpu: { redis: cpu('redis'), api: cpu('api'), workers: cpu('workers'), workerAverage: cpu('workers') / engines, hostBusy },
      redisOpsPerSecond: opsPerItem * items, redisOpsPerItem: opsPerItem,
      // Over the workers' last heartbeat window: rows per step below the slots = the queue did not keep the engines
      // full; ms per step above stepMs = the worker processes ran late (the host's CPU).
      rowsPerStep: to.engine.rowsPerStep, msPerStep: to.engine.msPerStep,
      // CPU per prompt of each part: what one more prompt per second costs, and the ceiling of one Redis core.
      cpuMsPerItem: { redis: (cpu('redis') / items) * 1000, api: (cpu('api') / items) * 1000, worker: (cpu('workers') / items) * 1000 },
      topCommandsPerItem: Object.entries(commands).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([c, n]) => `${c} ${n.toFixed(1)}`),
    };
    row.bottleneck = bottleneckOf(row);
    return row;
  } finally {
    current = undefined;
    await stack.stop();
  }
}

/** The stack being measured: stopped (Redis, api and workers) when the script is interrupted. */
let current;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    process.stderr.write(`bench-scaleout: ${signal}, stopping\n`);
    void (current ? current.stop() : Promise.resolve()).finally(() => process.exit(130));
  });
}

/** The first limit: the engines themselves when they are kept busy, else the busiest resource. */
function bottleneckOf(row) {
  if (row.ofOffered >= 0.9) return 'none: the engines (queue path keeps up)';
  if (row.rowsPerStep >= 0.9 * row.slots && row.msPerStep > 1.1 * row.stepMs) {
    return `host CPU: engines kept full (${row.rowsPerStep.toFixed(0)}/${row.slots} rows) but their steps ran late (${row.msPerStep.toFixed(0)} ms for ${row.stepMs})`;
  }
  if (row.cpu.redis >= 0.9) return 'Redis (one core busy)';
  if (row.cpu.hostBusy >= 0.9) return `host CPU (${os.cpus().length} cores busy: workers ${row.cpu.workers.toFixed(2)}, api ${row.cpu.api.toFixed(2)}, Redis ${row.cpu.redis.toFixed(2)} cores)`;
  if (row.cpu.workerAverage >= 0.9) return 'worker event loops (one core each)';
  if (row.cpu.api >= 0.9) return 'api (one core busy)';
  return 'none saturated: latency-bound (job fetch and result round trips)';
}

const pct = (x) => `${Math.round(x * 100)}%`;

async function main() {
  const modelDir = localModelDir(args.model);
  const rows = [];
  const progressIntervals = args['progress-ms'] ? positiveInts('progress-ms') : [undefined];
  for (const progressMs of progressIntervals) {
    for (const rate of positiveInts('engine-tokens-per-s')) {
      for (const engines of positiveInts('engines')) {
        process.stderr.write(`bench-scaleout: ${engines} engines x ${rate} tokens/s, progress ${progressMs ?? 'default'} ...\n`);
        const row = await measure(modelDir, engines, rate, progressMs);
        rows.push(row);
        process.stderr.write(`${JSON.stringify(row)}\n`);
      }
    }
  }
  const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os.loadavg()[0].toFixed(1)} at the end`;
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ date: new Date().toISOString(), machine, rows })}\n`);
    return;
  }
  const lines = [
    `date: ${new Date().toISOString()}  machine: ${machine}`,
    `setting: ${slots} slots per engine, ${args['varied-lengths'] ? `${Math.ceil(newTokens / 2)}-${newTokens} (simulated eos)` : newTokens} new tokens per prompt, measured from 20% of one batch until 1.5 rounds of slots are left`,
    '',
    '| engines | tokens/s per engine | step ms (measured) | rows per step | progress ms | offered items/s | items/s | tokens/s | of offered | Redis CPU | Redis ops/s | ops per prompt | api CPU | workers CPU (avg) | host busy | first bottleneck |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.engines} | ${Math.round(r.engineTokensPerSecond)} | ${r.stepMs} (${r.msPerStep.toFixed(0)}) | ${r.rowsPerStep.toFixed(0)}/${r.slots} | ${r.progressMs} | ${r.offeredItemsPerSecond.toFixed(1)} | ${r.itemsPerSecond.toFixed(1)} | ${Math.round(r.tokensPerSecond)} | ${pct(r.ofOffered)} | ${pct(r.cpu.redis)} | ${Math.round(r.redisOpsPerSecond)} | ${r.redisOpsPerItem.toFixed(1)} | ${pct(r.cpu.api)} | ${pct(r.cpu.workers)} (${pct(r.cpu.workerAverage)}) | ${pct(r.cpu.hostBusy)} | ${r.bottleneck} |`),
    '',
    'CPU per prompt (ms) and the ceiling of one Redis core at that cost (1000 / Redis ms per prompt):',
    ...rows.map((r) => `  ${r.engines} x ${Math.round(r.engineTokensPerSecond)}, progress ${r.progressMs}: Redis ${r.cpuMsPerItem.redis.toFixed(2)}, api ${r.cpuMsPerItem.api.toFixed(2)}, workers ${r.cpuMsPerItem.worker.toFixed(2)}; one Redis core: ${Math.round(1000 / r.cpuMsPerItem.redis)} prompts/s = ${Math.round((1000 / r.cpuMsPerItem.redis) * (r.tokensPerSecond / r.itemsPerSecond))} tokens/s at ${(r.tokensPerSecond / r.itemsPerSecond).toFixed(0)} tokens per prompt`),
    '',
    'Redis commands per prompt (top 6):',
    ...rows.map((r) => `  ${r.engines} x ${Math.round(r.engineTokensPerSecond)}, progress ${r.progressMs}: ${r.topCommandsPerItem.join(', ')}`),
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

main().catch((error) => {
  process.stderr.write(`bench-scaleout: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
