// The api as a real process for end-to-end tests: `node dist/apps/api/src/main.js` (npm test builds dist first
// through scripts/ensure-ready.js; in development run `npm run build`), configured only through its environment.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { GENERATE_QUEUE } from '@app/contracts';
import { freePort } from './redis';
import { serviceEnv } from './service-env';

const ROOT = join(__dirname, '..', '..');
export const API_ENTRY = join(ROOT, 'dist', 'apps', 'api', 'src', 'main.js');

export interface StartApiOptions {
  redisUrl: string;
  prefix: string;
  modelDir: string;
  /** Extra environment: FALCONQ_API_KEYS, limits, ... (no keys = open mode). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface ApiProcess {
  url: string;
  pid: number;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, wait for a graceful exit (SIGKILL after 10 s). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The api's whole environment: the test's Redis, prefix and model, loopback on `port`, then `options.env`. */
function apiEnvironment(options: StartApiOptions, port: number): Record<string, string> {
  return {
    ...serviceEnv(options),
    HOST: '127.0.0.1',
    PORT: String(port),
    NO_COLOR: '1',
    ...options.env,
  };
}

/** Starts the api on a free port and waits until /health answers (any status: it may be keyed). */
export async function startApi(options: StartApiOptions): Promise<ApiProcess> {
  if (!existsSync(API_ENTRY)) throw new Error(`${API_ENTRY} is missing: run npm run build (npm test does it)`);
  const port = await freePort();
  const child = spawn(process.execPath, [API_ENTRY], {
    env: apiEnvironment(options, port),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (gone) throw new Error(`api exited before it was ready:\n${output}`);
    try {
      await fetch(`${url}/health`);
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`api not ready after ${options.readyTimeoutMs ?? 30_000} ms:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    pid: child.pid!,
    output: () => output,
    exited,
    stop: async () => {
      if (gone) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

/** Runs the api entry to completion (for start-up refusal tests): its exit code and output. */
export async function runApiUntilExit(options: StartApiOptions, timeoutMs = 20_000): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [API_ENTRY], {
    env: apiEnvironment(options, await freePort()),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, output };
}

/** Every key under a prefix (SCAN), sorted: to prove a rejected request stored nothing. */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys.sort();
}

/**
 * The keys under a prefix once the generate queue is idle (nothing waiting, prioritized or active), less the
 * stalled checker's timer key: with a worker running, a snapshot taken while it still finishes earlier jobs
 * would race BullMQ's own bookkeeping, not the request under test.
 */
export async function settledKeysUnder(redis: Redis, prefix: string, timeoutMs = 30_000): Promise<string[]> {
  const queue = `${prefix}:${GENERATE_QUEUE}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [active, wait, prioritized] = await Promise.all([redis.llen(`${queue}:active`), redis.llen(`${queue}:wait`), redis.zcard(`${queue}:prioritized`)]);
    if (active + wait + prioritized === 0) break;
    if (Date.now() > deadline) throw new Error(`queue ${queue} not idle after ${timeoutMs} ms: ${active} active, ${wait} waiting, ${prioritized} prioritized`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return (await keysUnder(redis, prefix)).filter((key) => key !== `${queue}:stalled-check`);
}

export function jsonl(lines: unknown[]): string {
  return lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
}

/** POST /v1/files with a JSONL body as multipart, the way OpenAI clients upload. */
export async function uploadFile(url: string, key: string | null, content: string, purpose = 'batch', filename = 'input.jsonl'): Promise<Response> {
  const form = new FormData();
  form.set('purpose', purpose);
  form.set('file', new Blob([content], { type: 'application/jsonl' }), filename);
  return fetch(`${url}/v1/files`, { method: 'POST', body: form, headers: key ? { authorization: `Bearer ${key}` } : {} });
}
