// The whole service on this machine for the benchmark scripts: a private redis-server, the api and N worker
// processes from dist/ (npm run build), all on loopback ports. Plain Node: runs before anything is compiled.
const { spawn, spawnSync } = require('node:child_process');
const { apiArgs } = require('./api-command');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./free-port');

const root = path.join(__dirname, '..');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(check, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** The tiny demo model (made on first use) unless a model directory is given. */
function localModelDir(given) {
  if (given) return given;
  const dir = path.join(root, '.models', 'tiny');
  if (!fs.existsSync(path.join(dir, 'falconq.json'))) {
    const made = spawnSync(process.execPath, [path.join(root, 'bin', 'falconq.js'), 'model', 'tiny', '--out', dir], { stdio: 'inherit' });
    if (made.status !== 0) throw new Error('could not make the tiny model');
  }
  return dir;
}

/**
 * Starts Redis (appendonly, noeviction, as docs/deploy.md asks), the api and `workers` worker processes; resolves
 * once every worker has sent a heartbeat. Returns the api URL, the Redis port, the pids and a stop function.
 */
async function startLocalStack({ modelDir, workers = 1, workerEnv = {}, apiEnv = {} }) {
  const processes = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-bench-'));
  const redisPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  processes.push(redis);
  await waitUntil(() => spawnSync('redis-cli', ['-p', String(redisPort), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG', 'redis', 10_000);
  const apiPort = await freePort();
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL: `redis://127.0.0.1:${redisPort}`, FALCONQ_REDIS_PREFIX: 'bench', MODEL_DIR: modelDir, NO_COLOR: '1' };
  const start = (entry, extra) => {
    const childEnv = { ...env, ...extra };
    const args = entry === 'api' ? apiArgs(root, childEnv) : [path.join(root, 'dist', 'apps', entry, 'src', 'main.js')];
    const child = spawn(process.execPath, args, { env: childEnv, stdio: ['ignore', 'ignore', 'inherit'] });
    processes.push(child);
    return child;
  };
  const api = start('api', { PORT: String(apiPort), HOST: '127.0.0.1', FALCONQ_RATE_LIMIT_PER_MINUTE: '0', ...apiEnv });
  const workerIds = Array.from({ length: workers }, (_, i) => `bench-worker-${i}`);
  const workerProcesses = [];
  const url = `http://127.0.0.1:${apiPort}`;
  const stop = async () => {
    for (const child of processes.reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000).then(() => child.kill('SIGKILL'))]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntil(async () => (await fetch(`${url}/health`).then((r) => r.ok, () => false)), 'api', 120_000);
    // Workers after the api, a few at a time: on a small machine many Node processes starting at once starve each other.
    for (const id of workerIds) {
      workerProcesses.push(start('worker', { FALCONQ_EP: 'cpu', FALCONQ_WORKER_ID: id, ...workerEnv }));
      if (workerProcesses.length % 4 === 0) await sleep(2000);
    }
    // A worker is ready once it has sent a heartbeat (the api lists workers in /health).
    await waitUntil(async () => {
      const health = JSON.stringify(await fetch(`${url}/health`).then((r) => r.json(), () => ({})));
      return workerIds.every((id) => health.includes(`"${id}"`));
    }, `${workers} workers`, 120_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { api: url, redisPort, pids: { redis: redis.pid, api: api.pid, workers: workerProcesses.map((w) => w.pid) }, stop };
}

/** The value of a benchmark's --NAME flag (parsed by util.parseArgs) as a positive integer, or an error naming it. */
function positiveIntegerFlag(args, name) {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer, got ${args[name]}`);
  return value;
}

module.exports = { startLocalStack, localModelDir, positiveIntegerFlag, waitUntil, sleep, root };
