// A Redis for tests: its own redis-server on a free loopback port when the binary exists (so tests never touch a
// shared instance's data), else REDIS_URL, else a clear failure saying how to get Redis.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  url: string;
  port: number;
  /** Unique per call: use it as the key prefix so runs never collide. */
  prefix: string;
  /** Stops the server (when this helper started it) and removes its files. */
  stop(): Promise<void>;
  /** Restarts the server on the same port and dir (for restart tests); data survives when appendonly is on. */
  restart(): Promise<void>;
  /** Stops the server but keeps its port and dir, for an outage of the test's length; `up()` starts it again. */
  down(): Promise<void>;
  up(): Promise<void>;
}

export interface TestRedisOptions {
  appendOnly?: boolean;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function waitForPing(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
    if (r.stdout?.trim() === 'PONG') return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    await new Promise((r2) => setTimeout(r2, 50));
  }
}

let counter = 0;
const uniquePrefix = () => `fqtest-${process.pid}-${Date.now().toString(36)}-${counter++}`;

export async function startTestRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  if (!hasRedisServer()) {
    const url = process.env.REDIS_URL;
    if (!url) {
      throw new Error('Tests need Redis: install it (`sudo apt-get install -y redis-server`) or set REDIS_URL to a Redis >= 6.2.');
    }
    const external = async () => { throw new Error('cannot stop or restart an external REDIS_URL'); };
    return { url, port: Number(new URL(url).port || 6379), prefix: uniquePrefix(), stop: async () => {}, restart: external, down: external, up: external };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'falconq-redis-'));
  const pidfile = join(dir, 'redis.pid');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', options.appendOnly ? 'yes' : 'no',
    '--maxmemory-policy', 'noeviction', '--daemonize', 'yes', '--dir', dir, '--pidfile', pidfile, '--logfile', join(dir, 'redis.log')];
  const launch = async () => {
    execFileSync('redis-server', args);
    await waitForPing(port);
  };
  const shutdown = () => {
    spawnSync('redis-cli', ['-p', String(port), 'shutdown', options.appendOnly ? 'save' : 'nosave'], { stdio: 'ignore' });
    try {
      const pid = Number(readFileSync(pidfile, 'utf8'));
      if (pid) process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    prefix: uniquePrefix(),
    stop: async () => {
      shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      shutdown();
      await launch();
    },
    down: async () => shutdown(),
    up: () => launch(),
  };
}
