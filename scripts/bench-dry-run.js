#!/usr/bin/env node
// How long a dry run of a big batch file takes (POST /v1/batches with dry_run: true checks every line: JSON, schema,
// parameters, chat template, tokenizer length), and proof that it stores nothing: the Redis keys before and after.
//
//   node scripts/bench-dry-run.js [--lines 10000] [--repeat 5] [--model DIR]
//
// Starts a private Redis and the api (no worker: the time estimate is then null). --model: a converted model directory
// (its tokenizer and chat template are what the dry run uses); default the tiny model in .models/tiny. Needs
// `npm run build`.
const { spawn, spawnSync } = require('node:child_process');
const { apiArgs } = require('./api-command');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { freePort } = require('./free-port');

const root = path.join(__dirname, '..');
const { values: args } = parseArgs({
  options: { lines: { type: 'string', default: '10000' }, repeat: { type: 'string', default: '5' }, model: { type: 'string' } },
});
const lineCount = Number(args.lines);
const repeat = Number(args.repeat);
if (!Number.isInteger(lineCount) || lineCount < 1) throw new Error(`--lines must be a positive integer, got ${args.lines}`);
if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a positive integer, got ${args.repeat}`);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function waitUntil(probe, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what} did not start within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function modelDir() {
  if (args.model) return args.model;
  const dir = path.join(root, '.models', 'tiny');
  if (!fs.existsSync(path.join(dir, 'falconq.json'))) {
    const made = spawnSync(process.execPath, [path.join(root, 'bin', 'falconq.js'), 'model', 'tiny', '--out', dir], { stdio: 'inherit' });
    if (made.status !== 0) throw new Error('could not make the tiny model');
  }
  return dir;
}

/**
 * Made-up words from syllables (8,000 distinct), drawn with Zipf's law (rank r has weight 1/r) as the words of a
 * natural text are, so a dry run meets both common and rare words; with some numbers and punctuation.
 */
function wordSource() {
  const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ba', 'de', 'fi', 'gu', 'ho', 'je', 'pa', 'qui', 'ze', 'ly', 'on', 'ar'];
  const words = Array.from({ length: 8000 }, (_, i) => {
    let word = '';
    for (let n = i + 1; n > 0; n = Math.floor(n / syllables.length)) word += syllables[n % syllables.length];
    return word;
  });
  const cumulative = [];
  let total = 0;
  for (let r = 1; r <= words.length; r++) cumulative.push((total += 1 / r));
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return () => {
    const x = random() * total;
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    const word = words[lo];
    const extra = random();
    return extra < 0.05 ? `${word},` : extra < 0.08 ? String(Math.floor(random() * 10_000)) : word;
  };
}

/** A batch file: questions of 20-80 words, a few parameters each. */
function fileOf(endpoint) {
  const nextWord = wordSource();
  const lines = [];
  for (let i = 0; i < lineCount; i++) {
    const text = Array.from({ length: 20 + (i % 61) }, nextWord).join(' ');
    const body = endpoint === '/v1/chat/completions'
      ? { model: 'falcon', messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: `${text}?` }], max_tokens: 64, temperature: 0.7, top_p: 0.9 }
      : { model: 'falcon', prompt: `Question ${i}: ${text}?\nAnswer:`, max_tokens: 64, temperature: 0 };
    lines.push(JSON.stringify({ custom_id: `req-${i}`, method: 'POST', url: endpoint, body }));
  }
  return `${lines.join('\n')}\n`;
}

function redisKeys(port) {
  const out = spawnSync('redis-cli', ['-p', String(port), '--scan', '--pattern', 'bench:*'], { encoding: 'utf8' }).stdout;
  return out.split('\n').filter(Boolean).sort();
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-dryrun-'));
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  let api;
  try {
    await waitUntil(() => spawnSync('redis-cli', ['-p', String(redisPort), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG', 'redis', 10_000);
    const apiPort = await freePort();
    api = spawn(process.execPath, apiArgs(root), {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL: `redis://127.0.0.1:${redisPort}`, FALCONQ_REDIS_PREFIX: 'bench', MODEL_DIR: modelDir(),
        PORT: String(apiPort), HOST: '127.0.0.1', FALCONQ_RATE_LIMIT_PER_MINUTE: '0', NO_COLOR: '1' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const url = `http://127.0.0.1:${apiPort}`;
    await waitUntil(async () => fetch(`${url}/health`).then((r) => r.status < 500, () => false), 'api', 60_000);
    for (const endpoint of ['/v1/completions', '/v1/chat/completions']) {
      const content = fileOf(endpoint);
      const form = new FormData();
      form.set('purpose', 'batch');
      form.set('file', new Blob([content]), 'big.jsonl');
      const file = await (await fetch(`${url}/v1/files`, { method: 'POST', body: form })).json();
      const before = redisKeys(redisPort);
      const seconds = [];
      let answer;
      for (let i = 0; i < repeat; i++) {
        const started = performance.now();
        const response = await fetch(`${url}/v1/batches`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ input_file_id: file.id, endpoint, completion_window: '24h', dry_run: true }),
        });
        answer = await response.json();
        seconds.push((performance.now() - started) / 1000);
        if (!response.ok) throw new Error(`dry run: ${response.status} ${JSON.stringify(answer)}`);
      }
      const after = redisKeys(redisPort);
      const sorted = [...seconds].sort((a, b) => a - b);
      console.log(JSON.stringify({
        endpoint, lines: lineCount, fileBytes: Buffer.byteLength(content), requestCounts: answer.request_counts, inputTokens: answer.usage.input_tokens,
        seconds: seconds.map((s) => Number(s.toFixed(3))), medianSeconds: Number(sorted[Math.floor(sorted.length / 2)].toFixed(3)),
        redisKeysBefore: before.length, redisKeysAfter: after.length, nothingStored: JSON.stringify(before) === JSON.stringify(after),
      }));
    }
  } finally {
    if (api && api.exitCode === null) {
      const exited = new Promise((resolve) => api.once('exit', resolve));
      api.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000).then(() => api.kill('SIGKILL'))]);
    }
    redis.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
