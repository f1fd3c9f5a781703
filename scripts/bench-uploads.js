#!/usr/bin/env node
// The api's memory while it receives large uploads: N concurrent multipart uploads of valid JSONL files (POST
// /v1/files) to a local api, with the api's resident memory (RSS, from /proc) sampled throughout; then the same files
// downloaded again at once (GET /v1/files/{id}/content) and compared with what was sent (SHA-256).
//
//   node scripts/bench-uploads.js [--uploads 4] [--mib 95] [--sample-ms 20] [--model DIR] [--api-node-options OPTS]
//
// Starts a private Redis and the api (no worker) from dist/ (npm run build) as their own processes; this process is
// only the client, and streams every body (nothing is built whole here). Prints one JSON line.
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const { spawnSync } = require('node:child_process');
const { Readable } = require('node:stream');
const { parseArgs } = require('node:util');
const { localModelDir, positiveIntegerFlag, sleep, startLocalStack } = require('./local-stack');

const { values: args } = parseArgs({
  options: {
    uploads: { type: 'string', default: '4' },
    mib: { type: 'string', default: '95' },
    'sample-ms': { type: 'string', default: '20' },
    model: { type: 'string' },
    /** NODE_OPTIONS for the api process (e.g. V8 heap settings), to see what its memory is made of. */
    'api-node-options': { type: 'string' },
  },
});
const uploads = positiveIntegerFlag(args, 'uploads');
const mib = Number(args.mib);
const sampleMs = Number(args['sample-ms']);
if (!(mib > 0)) throw new Error(`--mib must be a positive number, got ${args.mib}`);
if (!(sampleMs >= 1)) throw new Error(`--sample-ms must be at least 1, got ${args['sample-ms']}`);

const MiB = 1024 * 1024;
const LINE_BYTES = 1000;
const BOUNDARY = 'falconq-bench-uploads';

function rssOf(pid) {
  const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) * 1024 : 0;
}

/** Line i of upload u: a valid OpenAI batch line of exactly LINE_BYTES bytes (newline included), ASCII. */
function lineOf(u, i) {
  const line = { custom_id: `u${u}-${String(i).padStart(9, '0')}`, method: 'POST', url: '/v1/completions', body: { model: 'falcon', max_tokens: 16, prompt: '' } };
  const fill = LINE_BYTES - Buffer.byteLength(JSON.stringify(line)) - 1;
  line.body.prompt = `Question ${i}: what does upload ${u} say? `.repeat(Math.ceil(fill / 30)).slice(0, fill);
  return `${JSON.stringify(line)}\n`;
}

/** The multipart body of upload u, generated in ~64 KiB pieces as the socket takes them; hashes the file part. */
function bodyOf(u, lines, hash) {
  const head = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n`
    + `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="upload-${u}.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  const length = head.length + lines * LINE_BYTES + tail.length;
  async function* pieces() {
    yield head;
    const perPiece = 64;
    for (let i = 0; i < lines; i += perPiece) {
      let text = '';
      for (let j = i; j < Math.min(i + perPiece, lines); j++) text += lineOf(u, j);
      const piece = Buffer.from(text);
      hash.update(piece);
      yield piece;
    }
    yield tail;
  }
  return { length, stream: Readable.from(pieces(), { objectMode: false }) };
}

/** One upload over node:http: the body streams with backpressure; an answer that comes early stops the sending. */
function upload(url, u, lines) {
  const hash = crypto.createHash('sha256');
  const { length, stream } = bodyOf(u, lines, hash);
  return new Promise((resolve, reject) => {
    const request = http.request(`${url}/v1/files`, {
      method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(length) },
    });
    let answered = false;
    request.on('response', (response) => {
      answered = true;
      const parts = [];
      response.on('data', (part) => parts.push(part));
      response.on('end', () => {
        stream.unpipe(request);
        stream.destroy();
        resolve({ status: response.statusCode, body: JSON.parse(Buffer.concat(parts).toString('utf8')), sha256: hash.digest('hex'), bytes: lines * LINE_BYTES });
      });
    });
    // After an early answer the server may close while the body is still being written: that is not the failure.
    request.on('error', (error) => (answered ? undefined : reject(error)));
    stream.pipe(request);
  });
}

/** GET a file's content as a stream, hashing it. */
function download(url, id) {
  return new Promise((resolve, reject) => {
    http.get(`${url}/v1/files/${id}/content`, (response) => {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      response.on('data', (part) => {
        bytes += part.length;
        hash.update(part);
      });
      response.on('end', () => resolve({ status: response.statusCode, bytes, sha256: hash.digest('hex') }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

/** Samples a process's RSS every sampleMs while `work` runs; returns its result and the peak. */
async function sampled(pid, work) {
  let peak = rssOf(pid);
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, rssOf(pid));
      await sleep(sampleMs);
    }
  })();
  try {
    return { result: await work(), peak };
  } finally {
    running = false;
    await sampler;
    peak = Math.max(peak, rssOf(pid));
  }
}

const toMiB = (bytes) => Number((bytes / MiB).toFixed(1));

async function main() {
  const stack = await startLocalStack({ modelDir: localModelDir(args.model), workers: 0, apiEnv: args['api-node-options'] ? { NODE_OPTIONS: args['api-node-options'] } : {} });
  try {
    const pid = stack.pids.api;
    const lines = Math.floor((mib * MiB) / LINE_BYTES);
    // A small upload first, so the baseline is of an api that has run the upload path once.
    const warm = await upload(stack.api, 'warm', 10);
    if (warm.status !== 200) throw new Error(`warm-up upload: ${warm.status} ${JSON.stringify(warm.body)}`);
    await sleep(1000);
    const baseline = rssOf(pid);
    const started = performance.now();
    const up = await sampled(pid, () => Promise.all(Array.from({ length: uploads }, (_, u) => upload(stack.api, u, lines))));
    const uploadSeconds = (performance.now() - started) / 1000;
    const failed = up.result.filter((r) => r.status !== 200 || r.body.bytes !== r.bytes);
    if (failed.length > 0) throw new Error(`uploads refused: ${JSON.stringify(failed.map((r) => ({ status: r.status, body: r.body })))}`);
    const afterUploads = rssOf(pid);
    const down = await sampled(pid, () => Promise.all(up.result.map((r) => download(stack.api, r.body.id))));
    const identical = down.result.every((d, i) => d.status === 200 && d.sha256 === up.result[i].sha256 && d.bytes === up.result[i].bytes);
    const largest = Math.max(...up.result.map((r) => r.bytes));
    const info = spawnSync('redis-cli', ['-p', String(stack.redisPort), 'info', 'memory'], { encoding: 'utf8' }).stdout;
    console.log(JSON.stringify({
      uploads, apiNodeOptions: args['api-node-options'] ?? null, fileMiB: toMiB(largest), largestFileBytes: largest, uploadSeconds: Number(uploadSeconds.toFixed(1)),
      apiRssMiB: { baseline: toMiB(baseline), peakDuringUploads: toMiB(up.peak), afterUploads: toMiB(afterUploads), peakDuringDownloads: toMiB(down.peak) },
      peakOverLargestFile: Number((up.peak / largest).toFixed(2)),
      growthOverLargestFile: Number(((up.peak - baseline) / largest).toFixed(2)),
      goalPeakUnder2xLargestFile: up.peak < 2 * largest,
      downloadsIdentical: identical,
      redisUsedMemoryMiB: toMiB(Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0)),
      sampleMs,
    }));
  } finally {
    await stack.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
