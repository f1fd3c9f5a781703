import { hostname } from 'node:os';
import { z } from 'zod';
import { SWITCH_CHOICES, type SwitchChoice, EXECUTION_PROVIDER_CHOICES, type ExecutionProviderChoice } from '@app/engine';
import { redisEnvSchema, redisTopologyOf, type RedisConnectionConfig } from '@app/redis';

// The worker's whole configuration, read from the environment once at start and validated; the only place in the
// worker that reads process.env. A bad value stops the process with a message naming the variable.

const int = (min: number) => z.coerce.number().int().min(min);

const schema = redisEnvSchema.extend({
  MODEL_DIR: z.string().min(1, 'must name a model directory (falconq model tiny --out <dir> makes one)'),
  FALCONQ_EP: z.enum(EXECUTION_PROVIDER_CHOICES).default('cpu'),
  FALCONQ_DEVICE_ID: int(0).default(0),
  FALCONQ_SLOTS: int(1).max(1024).default(16),
  FALCONQ_WORKER_ID: z.string().min(1).optional(),
  /** A job's lock; a worker that dies gives its jobs back after this. */
  FALCONQ_LOCK_MS: int(500).default(30_000),
  /** How often each worker looks for jobs whose lock expired. */
  FALCONQ_STALLED_INTERVAL_MS: int(200).default(15_000),
  /** A prompt whose worker dies this many times fails instead of killing the next one. */
  FALCONQ_MAX_STALLED: int(0).default(2),
  FALCONQ_HEARTBEAT_MS: int(100).default(5_000),
  /** How often in-flight batches are checked for cancellation or expiry. */
  FALCONQ_CANCEL_POLL_MS: int(50).default(1_000),
  /**
   * Minimum time between two progress updates of one job (shown on the dashboard; batch progress events do not use
   * them). Each update is a BullMQ script of about five Redis commands per running prompt: at 1 s they were the
   * largest share of Redis's work per prompt for long generations (docs/benchmarks.md, scale-out).
   */
  FALCONQ_PROGRESS_MS: int(50).default(5_000),
  /** On SIGTERM, how long in-flight prompts may finish before they are handed back to the queue. */
  FALCONQ_SHUTDOWN_GRACE_MS: int(0).default(30_000),
  FALCONQ_KV_PLACEMENT: z.enum(['auto', 'host', 'device', 'device-merge']).default('auto'),
  FALCONQ_PREFILL_CHUNK_TOKENS: int(1).optional(),
  /** A prefill run's fixed cost in prompt tokens: newcomers prefill in length-sorted runs (engine default 256, host KV). */
  FALCONQ_PREFILL_RUN_COST: int(0).optional(),
  /** The longest decode-loop run, in steps (engine default: 128 on cuda, else 1). */
  FALCONQ_DECODE_CHUNK: int(1).optional(),
  /** Decode-loop run length when a row may free or an online request decodes (engine default: 32 on cuda). */
  FALCONQ_DECODE_CHUNK_MIN: int(1).optional(),
  /** cuda: onnxruntime's fpA_intB GEMM for the int4 matmuls (engine default auto: on above 16 slots). */
  FALCONQ_CUDA_FPA_INTB: z.enum(SWITCH_CHOICES).default('auto'),
  /** Decode loop: fp16 GEMMs over the int4 weights dequantized once at load (2 bytes a parameter of GPU memory): 1 on, 0 off (default). */
  FALCONQ_DEQUANTIZE_WEIGHTS: z.enum(['0', '1'], { message: 'must be 0 or 1' }).default('0'),
  /** Run the large prefill shapes once at load (engine default auto: when the fpA_intB GEMM is on). */
  FALCONQ_PREFILL_WARM_UP: z.enum(SWITCH_CHOICES).default('auto'),
  FALCONQ_JOIN_GROUP: int(1).optional(),
  FALCONQ_JOIN_MAX_WAIT_STEPS: int(0).optional(),
  FALCONQ_INTRA_OP_THREADS: int(1).optional(),
  /** Load tests of the queue path: no model session, a simulated device whose every decode step takes this many ms. */
  FALCONQ_SIMULATED_STEP_MS: int(1).optional(),
});

export interface WorkerConfig {
  redisUrl: string;
  /** Topology: plain (the URL), Sentinel or Cluster; the same settings as the api's. */
  redis: RedisConnectionConfig;
  prefix: string;
  modelDir: string;
  executionProvider: ExecutionProviderChoice;
  deviceId: number;
  slots: number;
  workerId: string;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  heartbeatMs: number;
  cancelPollMs: number;
  progressMs: number;
  shutdownGraceMs: number;
  kvPlacement: 'auto' | 'host' | 'device' | 'device-merge';
  prefillChunkTokens?: number;
  prefillRunCostTokens?: number;
  decodeChunkSteps?: number;
  decodeChunkMinSteps?: number;
  cudaFpaIntbGemm: SwitchChoice;
  dequantizeWeights: boolean;
  prefillWarmUp: SwitchChoice;
  joinGroup?: number;
  joinMaxWaitSteps?: number;
  intraOpThreads?: number;
  /** Set: run the simulated engine (one token per running prompt every this many ms) instead of the model. */
  simulatedStepMs?: number;
}

/** Exit code of a worker that cannot start with its configuration (restarting it cannot help); its supervisor leaves it down. */
export const CONFIG_ERROR_EXIT = 2;

export class WorkerConfigError extends Error {
  override readonly name = 'WorkerConfigError';
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new WorkerConfigError(`invalid worker configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  return {
    redisUrl: e.REDIS_URL,
    redis: redisTopology(e),
    prefix: e.FALCONQ_REDIS_PREFIX,
    modelDir: e.MODEL_DIR,
    executionProvider: e.FALCONQ_EP,
    deviceId: e.FALCONQ_DEVICE_ID,
    slots: e.FALCONQ_SLOTS,
    workerId: e.FALCONQ_WORKER_ID ?? `${hostname()}-${process.pid}`,
    lockDurationMs: e.FALCONQ_LOCK_MS,
    stalledIntervalMs: e.FALCONQ_STALLED_INTERVAL_MS,
    maxStalledCount: e.FALCONQ_MAX_STALLED,
    heartbeatMs: e.FALCONQ_HEARTBEAT_MS,
    cancelPollMs: e.FALCONQ_CANCEL_POLL_MS,
    progressMs: e.FALCONQ_PROGRESS_MS,
    shutdownGraceMs: e.FALCONQ_SHUTDOWN_GRACE_MS,
    kvPlacement: e.FALCONQ_KV_PLACEMENT,
    prefillChunkTokens: e.FALCONQ_PREFILL_CHUNK_TOKENS,
    prefillRunCostTokens: e.FALCONQ_PREFILL_RUN_COST,
    decodeChunkSteps: e.FALCONQ_DECODE_CHUNK,
    decodeChunkMinSteps: e.FALCONQ_DECODE_CHUNK_MIN,
    cudaFpaIntbGemm: e.FALCONQ_CUDA_FPA_INTB,
    dequantizeWeights: e.FALCONQ_DEQUANTIZE_WEIGHTS === '1',
    prefillWarmUp: e.FALCONQ_PREFILL_WARM_UP,
    joinGroup: e.FALCONQ_JOIN_GROUP,
    joinMaxWaitSteps: e.FALCONQ_JOIN_MAX_WAIT_STEPS,
    intraOpThreads: e.FALCONQ_INTRA_OP_THREADS,
    simulatedStepMs: e.FALCONQ_SIMULATED_STEP_MS,
  };
}

function redisTopology(e: z.infer<typeof schema>): RedisConnectionConfig {
  try {
    return redisTopologyOf(e);
  } catch (error) {
    throw new WorkerConfigError(`invalid worker configuration: ${(error as Error).message}`);
  }
}

export const WORKER_CONFIG = Symbol('WORKER_CONFIG');
