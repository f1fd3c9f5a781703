// A Redis for tests: its own redis-server on a free loopback port when the binary exists (so tests never touch a
// shared instance's data), else REDIS_URL, else a clear failure saying how to get Redis. The Cluster and Sentinel
// setups (redis-cluster.ts, redis-sentinel.ts) start their servers with the same launcher.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from '@jest/globals';
import { Redis } from 'ioredis';

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

export function hasRedisServer(): boolean {
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
const uniqueName = () => `fqtest-${process.pid}-${Date.now().toString(36)}-${counter++}`;
export const uniquePrefix = uniqueName;
/** A prefix that is a Redis Cluster hash tag: every key under it lands in one slot. */
export const uniqueHashTagPrefix = () => `{${uniqueName()}}`;

/** One redis-server (or sentinel) process this test started, daemonized, with its own directory. */
export interface RedisServerProcess {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly dir: string;
  /** host:port */
  readonly address: string;
  /** Starts it (again) with the same port, directory and arguments. */
  launch(): Promise<void>;
  /** SHUTDOWN (saving when appendonly), then SIGKILL whatever is left. */
  shutdown(): void;
  /** SIGKILL: a crash, nothing flushed. */
  kill(): void;
  /** DEBUG SLEEP: the server stops answering for `seconds` (a pause or a partition), then carries on. Resolves once it is silent. */
  pause(seconds: number): Promise<void>;
  /** Removes its directory (after shutdown). */
  remove(): void;
}

export interface RedisServerOptions {
  /** Extra redis-server arguments (`--cluster-enabled yes`, `--replicaof ...`). */
  args?: string[];
  /** A config file's lines, for a sentinel (it rewrites its own config file, so it needs one). */
  sentinelConfig?: string[];
  appendOnly?: boolean;
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServerProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'falconq-redis-'));
  const pidfile = join(dir, 'redis.pid');
  const common = ['--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'yes', '--dir', dir, '--pidfile', pidfile,
    '--logfile', join(dir, 'redis.log')];
  let argv: string[];
  if (options.sentinelConfig) {
    const config = join(dir, 'sentinel.conf');
    writeFileSync(config, options.sentinelConfig.join('\n') + '\n');
    argv = [config, '--sentinel', ...common];
  } else {
    argv = [...common, '--save', '', '--appendonly', options.appendOnly ? 'yes' : 'no', '--maxmemory-policy', 'noeviction',
      '--enable-debug-command', 'local', ...(options.args ?? [])];
  }
  const pid = () => {
    try {
      return Number(readFileSync(pidfile, 'utf8')) || 0;
    } catch {
      return 0;
    }
  };
  const kill = () => {
    const p = pid();
    if (!p) return;
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(pidfile, { force: true });
  };
  const server: RedisServerProcess = {
    host: '127.0.0.1',
    port,
    dir,
    address: `127.0.0.1:${port}`,
    launch: async () => {
      execFileSync('redis-server', argv);
      await waitForPing(port);
    },
    shutdown: () => {
      spawnSync('redis-cli', ['-p', String(port), 'shutdown', options.appendOnly ? 'save' : 'nosave'], { stdio: 'ignore' });
      kill();
    },
    kill,
    pause: async (seconds) => {
      // DEBUG SLEEP blocks the connection that sends it: fire it from a child that exits once the sleep is over.
      spawn('redis-cli', ['-p', String(port), 'debug', 'sleep', String(seconds)], { stdio: 'ignore' }).unref();
      for (;;) {
        const ping = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8', timeout: 300 });
        if (ping.stdout?.trim() !== 'PONG') return;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  await server.launch();
  return server;
}

export async function startTestRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  if (!hasRedisServer()) {
    const url = process.env.REDIS_URL;
    if (!url) {
      throw new Error('Tests need Redis: install it (`sudo apt-get install -y redis-server`) or set REDIS_URL to a Redis >= 6.2.');
    }
    const external = async () => { throw new Error('cannot stop or restart an external REDIS_URL'); };
    return { url, port: Number(new URL(url).port || 6379), prefix: uniquePrefix(), stop: async () => {}, restart: external, down: external, up: external };
  }
  const server = await startRedisServer({ appendOnly: options.appendOnly });
  return {
    url: `redis://${server.address}`,
    port: server.port,
    prefix: uniquePrefix(),
    stop: async () => {
      server.shutdown();
      server.remove();
    },
    restart: async () => {
      server.shutdown();
      await server.launch();
    },
    down: async () => server.shutdown(),
    up: () => server.launch(),
  };
}

/** The Redis of one test file (useTestRedis): its URL and prefix, and ioredis clients that are closed after the file. */
export interface SuiteRedis {
  readonly url: string;
  readonly prefix: string;
  client(): Redis;
}

/** Starts a test Redis before the file's tests and stops it after them, closing every client made with client(). */
export function useTestRedis(options: TestRedisOptions = {}): SuiteRedis {
  let redis: TestRedis | undefined;
  const clients: Redis[] = [];
  beforeAll(async () => {
    redis = await startTestRedis(options);
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.quit().catch(() => undefined)));
    await redis?.stop();
  });
  const started = (): TestRedis => {
    if (!redis) throw new Error('useTestRedis: Redis starts in beforeAll; use it inside tests and hooks');
    return redis;
  };
  return {
    get url() { return started().url; },
    get prefix() { return started().prefix; },
    client() {
      const c = new Redis(started().url);
      clients.push(c);
      return c;
    },
  };
}
