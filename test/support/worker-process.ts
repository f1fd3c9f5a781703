// Real worker processes for end-to-end and fault tests: `node dist/apps/worker/src/main.js` (npm test builds
// dist first through scripts/ensure-ready.js), configured only through its environment like in production.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serviceEnv } from './service-env';

const ROOT = join(__dirname, '..', '..');
export const WORKER_ENTRY = join(ROOT, 'dist', 'apps', 'worker', 'src', 'main.js');
export const FLEET_ENTRY = join(ROOT, 'dist', 'apps', 'worker', 'src', 'fleet-main.js');
const READY_LINE = 'falconq worker ready';

export interface StartWorkerOptions {
  redisUrl: string;
  prefix: string;
  modelDir: string;
  slots?: number;
  workerId?: string;
  /** Extra environment (FALCONQ_LOCK_MS, ...). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface WorkerProcess {
  readonly pid: number;
  readonly workerId: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM (graceful) and wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL: the crash the fault tests simulate. */
  kill(): Promise<void>;
  /** Resident memory of the process in bytes (Linux /proc). */
  rssBytes(): number;
}

let counter = 0;

export function workerEnv(options: StartWorkerOptions, workerId: string): Record<string, string> {
  return {
    ...serviceEnv(options),
    FALCONQ_EP: 'cpu',
    FALCONQ_SLOTS: String(options.slots ?? 4),
    FALCONQ_WORKER_ID: workerId,
    FALCONQ_INTRA_OP_THREADS: '1',
    FALCONQ_HEARTBEAT_MS: '500',
    FALCONQ_CANCEL_POLL_MS: '200',
    ...options.env,
  };
}

export async function startWorker(options: StartWorkerOptions): Promise<WorkerProcess> {
  if (!existsSync(WORKER_ENTRY)) throw new Error(`${WORKER_ENTRY} is missing: run npm run build (npm test does it)`);
  const workerId = options.workerId ?? `test-worker-${process.pid}-${counter++}`;
  const child = spawn(process.execPath, [WORKER_ENTRY], { env: workerEnv(options, workerId), stdio: ['ignore', 'pipe', 'pipe'] });
  return wrap(child, workerId, options.readyTimeoutMs ?? 60_000, READY_LINE);
}

export function wrap(child: ChildProcess, workerId: string, readyTimeoutMs: number, readyLine: string): Promise<WorkerProcess> {
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${workerId} not ready after ${readyTimeoutMs} ms:\n${output}`)), readyTimeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(readyLine)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`worker ${workerId} exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
  const handle: WorkerProcess = {
    pid: child.pid!,
    workerId,
    exited,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    rssBytes: () => rssOf(child.pid!),
  };
  return ready.then(() => handle, async (error: Error) => {
    child.kill('SIGKILL');
    throw error;
  });
}

export function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
