#!/usr/bin/env node
// `npm start`: the whole stack on this machine, from a fresh clone, with no step before it.
//   1. installs and builds when needed (scripts/ensure-ready.js)
//   2. MODEL_DIR, or the tiny demo model made once into .models/tiny
//   3. REDIS_URL, or a local redis-server on a free port (appendonly, noeviction, data in .models/redis, which one
//      `npm start` at a time holds: a second one is refused rather than sharing the append-only files)
//   4. the api and one worker as child processes, once the api's port is known to be free; prints where everything
//      is when the api it started (its pid in /health) answers; Ctrl-C stops all of it
// Plain Node on purpose: it must run before anything is built.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const http = require('node:http');
const { apiArgs } = require('./api-command');
const { ensureReady } = require('./ensure-ready');
const { freePort } = require('./free-port');

const root = path.join(__dirname, '..');
// FALCONQ_DATA_DIR: where the demo model and the local Redis's data live (default .models in the checkout).
const modelsDir = path.resolve(process.env.FALCONQ_DATA_DIR || path.join(root, '.models'));
const children = [];
let stopping = false;

function log(message) {
  process.stdout.write(`[start] ${message}\n`);
}

function fail(message) {
  process.stderr.write(`[start] ${message}\n`);
  void shutdown(1);
}

function ensureModel() {
  if (process.env.MODEL_DIR) return process.env.MODEL_DIR;
  const dir = path.join(modelsDir, 'tiny');
  if (!fs.existsSync(path.join(dir, 'falconq.json'))) {
    log(`making the tiny demo model in ${path.relative(root, dir)} (set MODEL_DIR to serve another model)`);
    const made = spawnSync(process.execPath, [path.join(root, 'bin', 'falconq.js'), 'model', 'tiny', '--out', dir], { cwd: root, stdio: 'inherit' });
    if (made.status !== 0) throw new Error('could not make the tiny model (see above)');
  }
  return dir;
}

function hasRedisServer() {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function waitFor(check, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (stopping) throw new Error('stopped');
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function tcpOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Takes `dir` for this process: a lock file holds the pid of the `npm start` that uses it. A live holder means refuse
 * (two redis-servers must not write one append-only file); a dead one's lock is taken over.
 */
function lockDirectory(dir) {
  const lock = path.join(dir, 'falconq-start.lock');
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      process.on('exit', () => {
        try {
          if (fs.readFileSync(lock, 'utf8') === String(process.pid)) fs.rmSync(lock);
        } catch { /* already gone */ }
      });
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    if (Number.isInteger(holder) && holder > 0 && isRunning(holder)) {
      throw new Error(`${dir} is in use by another npm start (pid ${holder}): stop it first, or set REDIS_URL to share its Redis`);
    }
    fs.rmSync(lock, { force: true }); // left by a start that was killed
  }
}

async function ensureRedis() {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  if (!hasRedisServer()) {
    throw new Error('no REDIS_URL and no redis-server on this machine. Install it with:\n\n    sudo apt-get install -y redis-server\n\nor point REDIS_URL at a Redis >= 6.2 (maxmemory-policy noeviction).');
  }
  const dir = path.join(modelsDir, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  lockDirectory(dir);
  const port = await freePort();
  // appendonly: accepted batches and finished results survive a restart; noeviction: Redis never drops queued jobs.
  // Its own process group: a terminal's Ctrl-C must not stop Redis before the worker has handed back its prompts;
  // shutdown() stops it last.
  start('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes',
    '--maxmemory-policy', 'noeviction', '--save', '', '--logfile', path.join(dir, 'redis.log')], process.env, { detached: true });
  await waitFor(() => tcpOpen(port), 'redis-server', 10_000);
  log(`redis-server on 127.0.0.1:${port} (data in ${path.relative(root, dir)})`);
  return `redis://127.0.0.1:${port}`;
}

function start(name, command, args, env = process.env, options = {}) {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const prefix = `[${name}] `;
  const relay = (stream, out) => {
    let pending = '';
    stream.on('data', (chunk) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) out.write(prefix + line + '\n');
    });
  };
  relay(child.stdout, process.stdout);
  relay(child.stderr, process.stderr);
  child.on('exit', (code, signal) => {
    child.exited = true;
    if (!stopping) fail(`${name} exited unexpectedly (${signal ?? `code ${code}`}); stopping everything`);
  });
  child.label = name;
  children.push(child);
  return child;
}

/** The pid in a 200 /health answer, or null (no answer, another status, or not a falconq api). */
function healthPid(url) {
  return new Promise((resolve) => {
    const request = http.get(url, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => {
        try {
          resolve(response.statusCode === 200 ? JSON.parse(body).pid ?? null : null);
        } catch {
          resolve(null);
        }
      });
    });
    request.once('error', () => resolve(null));
    request.setTimeout(2000, () => { request.destroy(); resolve(null); });
  });
}

async function refuseBusyPort(host, port) {
  const probeHost = host === '0.0.0.0' ? '127.0.0.1' : host;
  if (await tcpOpen(port, probeHost)) {
    throw new Error(`port ${port} is in use on ${probeHost} (another npm start of falconq, or another program): stop it, or choose another port with PORT=${port + 1} npm start`);
  }
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  log('stopping...');
  // Api and worker first (the worker drains its in-flight prompts), Redis last.
  const apps = children.filter((child) => child.label !== 'redis');
  await Promise.all(apps.map(stopChild));
  await Promise.all(children.filter((child) => child.label === 'redis').map(stopChild));
  process.exit(code);
}

function stopChild(child) {
  if (child.exited) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}

async function main() {
  // Last resort if this script dies some other way: no child outlives it.
  process.on('exit', () => children.forEach((child) => child.exited || child.kill('SIGKILL')));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  const port = Number(process.env.PORT || 3000);
  const host = process.env.HOST || '127.0.0.1';
  await refuseBusyPort(host, port);
  ensureReady();
  const modelDir = ensureModel();
  const redisUrl = await ensureRedis();
  const env = { ...process.env, REDIS_URL: redisUrl, MODEL_DIR: modelDir, PORT: String(port), HOST: host, FALCONQ_OPEN_ROUTES: process.env.FALCONQ_OPEN_ROUTES || 'health,metrics,docs' };
  const api = start('api', process.execPath, apiArgs(root, env), env);
  start('worker', process.execPath, [path.join(root, 'dist', 'apps', 'worker', 'src', 'main.js')],
    { ...env, FALCONQ_EP: process.env.FALCONQ_EP || 'cpu', FALCONQ_SLOTS: process.env.FALCONQ_SLOTS || '8' });
  const base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  await waitFor(async () => {
    const pid = await healthPid(`${base}/health`);
    if (pid !== null && pid !== api.pid) throw new Error(`${base} is answered by another process (pid ${pid}), not the api this started`);
    return pid === api.pid;
  }, 'the api', 60_000);
  const auth = process.env.FALCONQ_API_KEYS ? ' -H "Authorization: Bearer $FALCONQ_KEY"' : '';
  process.stdout.write([
    '',
    'falconq is running:',
    `  API        ${base}/v1  (OpenAI-compatible files/batches/completions) and ${base}/batches (native)`,
    `  Batches    ${base}/      (the batch page: progress, results, cancel)`,
    `  Docs       ${base}/docs`,
    `  Dashboard  ${base}/dashboard`,
    `  Health     ${base}/health`,
    `  Metrics    ${base}/metrics`,
    `  Model      ${modelDir}${process.env.MODEL_DIR ? '' : ' (tiny demo model: random weights, the text is noise)'}`,
    `  Redis      ${redisUrl}`,
    '',
    'Try:',
    `  curl -s ${base}/batches${auth} -H 'Content-Type: application/json' \\`,
    `    -d '{"prompts": ["Hello", "The capital of France is"], "max_new_tokens": 16}'`,
    '',
    'Ctrl-C stops everything.',
    '',
  ].join('\n'));
}

main().catch((error) => fail(error.message));
