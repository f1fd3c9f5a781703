import { z } from 'zod';
import { EXECUTION_PROVIDER_CHOICES, type ExecutionProviderChoice } from '@app/engine';
import { redisEnvSchema } from '@app/redis';

// The fleet supervisor's configuration: which devices get worker processes and how many per device. Flags win
// over the environment (FALCONQ_GPUS, FALCONQ_PER_GPU, FALCONQ_EP, FALCONQ_SLOTS). The only place of the fleet
// that reads process.env; children inherit the environment plus their device assignment.

export interface FleetFlags {
  gpus?: string;
  perGpu?: string;
  ep?: string;
  slots?: string;
  model?: string;
  redis?: string;
}

export interface FleetConfig {
  /** Device ids; one entry `0` on a CPU-only machine. */
  devices: number[];
  perDevice: number;
  executionProvider: ExecutionProviderChoice;
  slots?: number;
  modelDir?: string;
  redisUrl?: string;
  workerIdBase: string;
  /** First restart delay of a crashed worker; doubles per crash in a row, capped at restartMaxMs. */
  restartBaseMs: number;
  restartMaxMs: number;
  /** A worker that ran this long counts as healthy again: its next crash restarts it after restartBaseMs. */
  healthyAfterMs: number;
}

export class FleetConfigError extends Error {
  override readonly name = 'FleetConfigError';
}

const deviceList = z
  .string()
  .regex(/^\d+(,\d+)*$/, 'must be a comma-separated list of device ids, e.g. 0,1')
  .transform((value) => [...new Set(value.split(',').map(Number))]);

const schema = z.object({
  FALCONQ_GPUS: deviceList.optional(),
  FALCONQ_PER_GPU: z.coerce.number().int().min(1).max(64).default(1),
  FALCONQ_EP: z.enum(EXECUTION_PROVIDER_CHOICES).default('cpu'),
  FALCONQ_SLOTS: z.coerce.number().int().min(1).max(1024).optional(),
  MODEL_DIR: z.string().min(1).optional(),
  REDIS_URL: redisEnvSchema.shape.REDIS_URL.unwrap().optional(),
  FALCONQ_WORKER_ID: z.string().min(1).optional(),
  FALCONQ_RESTART_BASE_MS: z.coerce.number().int().min(10).default(1000),
  FALCONQ_RESTART_MAX_MS: z.coerce.number().int().min(10).default(30_000),
});

export function loadFleetConfig(flags: FleetFlags, env: NodeJS.ProcessEnv = process.env, host = 'worker'): FleetConfig {
  const merged = {
    ...env,
    ...defined({
      FALCONQ_GPUS: flags.gpus,
      FALCONQ_PER_GPU: flags.perGpu,
      FALCONQ_EP: flags.ep,
      FALCONQ_SLOTS: flags.slots,
      MODEL_DIR: flags.model,
      REDIS_URL: flags.redis,
    }),
  };
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${flagName(String(issue.path[0]))}: ${issue.message}`);
    throw new FleetConfigError(`invalid worker fleet configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    devices: e.FALCONQ_GPUS ?? [0],
    perDevice: e.FALCONQ_PER_GPU,
    executionProvider: e.FALCONQ_EP,
    slots: e.FALCONQ_SLOTS,
    modelDir: e.MODEL_DIR,
    redisUrl: e.REDIS_URL,
    workerIdBase: e.FALCONQ_WORKER_ID ?? host,
    restartBaseMs: e.FALCONQ_RESTART_BASE_MS,
    restartMaxMs: e.FALCONQ_RESTART_MAX_MS,
    healthyAfterMs: 60_000,
  };
}

/** One worker process of the fleet: which device it drives and what it is called. */
export interface WorkerAssignment {
  device: number;
  ordinal: number; // 0..perDevice-1
  workerId: string;
}

export function fleetAssignments(config: FleetConfig): WorkerAssignment[] {
  return config.devices.flatMap((device) =>
    Array.from({ length: config.perDevice }, (_, ordinal) => ({ device, ordinal, workerId: `${config.workerIdBase}-gpu${device}-${ordinal}` })),
  );
}

/**
 * The environment of one worker process: the parent's, plus its device. CUDA sees only its GPU (the engine then
 * uses device 0 of what it sees). WebGPU has no adapter choice in onnxruntime-node: the fleet pins such a worker
 * by hiding the other GPUs (fleet/device-pinning.ts); FALCONQ_DEVICE_ID then only names the device in heartbeats.
 */
export function workerEnvironment(config: FleetConfig, assignment: WorkerAssignment, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, FALCONQ_EP: config.executionProvider, FALCONQ_WORKER_ID: assignment.workerId };
  if (config.slots !== undefined) env.FALCONQ_SLOTS = String(config.slots);
  if (config.modelDir !== undefined) env.MODEL_DIR = config.modelDir;
  if (config.redisUrl !== undefined) env.REDIS_URL = config.redisUrl;
  // auto may land on cuda: pin it the cuda way (webgpu fleets over several GPUs name webgpu).
  if (config.executionProvider === 'cuda' || config.executionProvider === 'auto') {
    env.CUDA_VISIBLE_DEVICES = String(assignment.device);
    env.FALCONQ_DEVICE_ID = '0';
  } else {
    env.FALCONQ_DEVICE_ID = String(assignment.device);
  }
  return env;
}

const FLAG_OF: Record<string, string> = {
  FALCONQ_GPUS: '--gpus / FALCONQ_GPUS',
  FALCONQ_PER_GPU: '--per-gpu / FALCONQ_PER_GPU',
  FALCONQ_EP: '--ep / FALCONQ_EP',
  FALCONQ_SLOTS: '--slots / FALCONQ_SLOTS',
  MODEL_DIR: '--model / MODEL_DIR',
  REDIS_URL: '--redis / REDIS_URL',
};

function flagName(variable: string): string {
  return FLAG_OF[variable] ?? variable;
}

function defined(values: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter((entry): entry is [string, string] => entry[1] !== undefined));
}
