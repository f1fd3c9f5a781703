import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { redisEnvSchema, redisTopologyOf, type RedisConnectionConfig } from '@app/redis';
import { LOG_LEVELS, type ApiLogLevel } from '../http/api-logger';
import { parseKeyTable, type KeyTable } from './api-keys';

// The api's whole configuration, read from the environment once at start and validated; the only place in the api
// that reads process.env. A bad value stops the process with a message naming the variable.

const int = (min: number) => z.coerce.number().int().min(min);
const MiB = 1024 * 1024;

export const OPENABLE_ROUTES = ['health', 'metrics', 'docs'] as const;
export type OpenableRoute = (typeof OPENABLE_ROUTES)[number];

const schema = redisEnvSchema.extend({
  PORT: int(0).max(65535).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  MODEL_DIR: z.string().min(1, 'must name a model directory (falconq model tiny --out <dir> makes one)'),
  /** The model id clients send and see; defaults to the manifest's source id. */
  FALCONQ_MODEL_NAME: z.string().min(1).optional(),
  FALCONQ_API_KEYS: z.string().optional(),
  FALCONQ_ADMIN_KEYS: z.string().optional(),
  FALCONQ_MAX_FILE_BYTES: int(1).default(100 * MiB),
  /** Bytes of uploads one tenant may have arriving at once on this api process (by Content-Length); 0 = no limit. */
  FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT: int(0).default(512 * MiB),
  FALCONQ_MAX_LINES: int(1).default(50_000),
  FALCONQ_MAX_BODY_BYTES: int(1024).default(10 * MiB),
  /** Requests per API key per minute; 0 = no limit. */
  FALCONQ_RATE_LIMIT_PER_MINUTE: int(0).default(600),
  /** Unfinished batches per tenant; 0 = no limit. */
  FALCONQ_MAX_BATCHES_IN_FLIGHT: int(0).default(20),
  /** Seconds a finished batch's results are kept (0 = forever); each batch keeps the value it was created with. */
  FALCONQ_BATCH_RETENTION_S: int(0).default(30 * 24 * 3600),
  FALCONQ_FILE_RETENTION_S: int(0).default(30 * 24 * 3600),
  FALCONQ_IDEMPOTENCY_TTL_S: int(1).default(24 * 3600),
  /** Comma-separated routes served without a key: health, metrics, docs. */
  FALCONQ_OPEN_ROUTES: z.string().default('health'),
  FALCONQ_EXPIRY_SWEEP_MS: int(100).default(30_000),
  FALCONQ_ONLINE_TIMEOUT_MS: int(100).default(300_000),
  /** A worker whose last heartbeat is older than this is not counted as alive. */
  FALCONQ_WORKER_STALE_MS: int(100).default(30_000),
  FALCONQ_JOB_ATTEMPTS: int(1).default(3),
  /** How long SIGTERM waits for in-flight requests. */
  FALCONQ_SHUTDOWN_GRACE_MS: int(0).default(10_000),
  /** Threads that parse, render and tokenize requests beside the event loop; 0 runs them on it. */
  FALCONQ_CHECK_THREADS: int(0).max(64).default(Math.max(1, Math.min(4, availableParallelism() - 1))),
  /** Milliseconds between SSE keep-alive comments while a stream waits. */
  FALCONQ_SSE_KEEPALIVE_MS: int(100).default(15_000),
  /** Where batch.completed/failed/expired/cancelled events are POSTed (none when unset). */
  FALCONQ_WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
  /** Signing secret, Standard Webhooks form: whsec_ followed by base64 of at least 24 random bytes. */
  FALCONQ_WEBHOOK_SECRET: z.string().optional(),
  /** First retry delay; each later one doubles, up to an hour. */
  FALCONQ_WEBHOOK_RETRY_MS: int(10).default(5_000),
  FALCONQ_WEBHOOK_MAX_ATTEMPTS: int(1).default(12),
  FALCONQ_WEBHOOK_TIMEOUT_MS: int(100).default(10_000),
  /** error, warn, log (default), debug (adds Nest's per-route start-up lines) or verbose. */
  LOG_LEVEL: z.enum(LOG_LEVELS).default('log'),
});

export interface ApiConfig {
  redis: RedisConnectionConfig;
  prefix: string;
  port: number;
  host: string;
  modelDir: string;
  modelName?: string;
  keys: KeyTable;
  limits: {
    maxFileBytes: number;
    /** 0 = no limit. */
    uploadInflightBytesPerTenant: number;
    maxLines: number;
    maxBodyBytes: number;
    rateLimitPerMinute: number;
    maxBatchesInFlight: number;
  };
  retention: { batchSeconds: number; fileSeconds: number; idempotencySeconds: number };
  openRoutes: ReadonlySet<OpenableRoute>;
  expirySweepMs: number;
  onlineTimeoutMs: number;
  workerStaleMs: number;
  jobAttempts: number;
  shutdownGraceMs: number;
  checkThreads: number;
  sseKeepaliveMs: number;
  logLevel: ApiLogLevel;
  /** null: no webhooks. */
  webhooks: WebhookConfig | null;
}

export interface WebhookConfig {
  url: string;
  /** The whsec_… secret as configured (the signing key is its base64 part, decoded). */
  secret: string;
  retryMs: number;
  maxAttempts: number;
  timeoutMs: number;
}

export class ApiConfigError extends Error {
  override readonly name = 'ApiConfigError';
}

/** Runs a parser on one variable, turning its error into one that names the variable. */
function field<T>(variable: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    const message = (error as Error).message;
    throw new ApiConfigError(`invalid api configuration: ${message.startsWith(variable) ? message : `${variable}: ${message}`}`);
  }
}

export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ApiConfigError(`invalid api configuration: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  const redis = redisTopology(e);
  const openRoutes = field('FALCONQ_OPEN_ROUTES', () => {
    const names = e.FALCONQ_OPEN_ROUTES.split(',').map((s) => s.trim()).filter(Boolean);
    for (const name of names) {
      if (!(OPENABLE_ROUTES as readonly string[]).includes(name)) throw new Error(`"${name}" is not one of ${OPENABLE_ROUTES.join(', ')}`);
    }
    return new Set(names as OpenableRoute[]);
  });
  const keys = field('FALCONQ_API_KEYS', () => parseKeyTable(e.FALCONQ_API_KEYS, e.FALCONQ_ADMIN_KEYS));
  return {
    redis,
    prefix: e.FALCONQ_REDIS_PREFIX,
    port: e.PORT,
    host: e.HOST,
    modelDir: e.MODEL_DIR,
    modelName: e.FALCONQ_MODEL_NAME,
    keys,
    limits: {
      maxFileBytes: e.FALCONQ_MAX_FILE_BYTES,
      uploadInflightBytesPerTenant: e.FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT,
      maxLines: e.FALCONQ_MAX_LINES,
      maxBodyBytes: e.FALCONQ_MAX_BODY_BYTES,
      rateLimitPerMinute: e.FALCONQ_RATE_LIMIT_PER_MINUTE,
      maxBatchesInFlight: e.FALCONQ_MAX_BATCHES_IN_FLIGHT,
    },
    retention: { batchSeconds: e.FALCONQ_BATCH_RETENTION_S, fileSeconds: e.FALCONQ_FILE_RETENTION_S, idempotencySeconds: e.FALCONQ_IDEMPOTENCY_TTL_S },
    openRoutes,
    expirySweepMs: e.FALCONQ_EXPIRY_SWEEP_MS,
    onlineTimeoutMs: e.FALCONQ_ONLINE_TIMEOUT_MS,
    workerStaleMs: e.FALCONQ_WORKER_STALE_MS,
    jobAttempts: e.FALCONQ_JOB_ATTEMPTS,
    shutdownGraceMs: e.FALCONQ_SHUTDOWN_GRACE_MS,
    checkThreads: e.FALCONQ_CHECK_THREADS,
    sseKeepaliveMs: e.FALCONQ_SSE_KEEPALIVE_MS,
    webhooks: field('FALCONQ_WEBHOOK_SECRET', () => webhookConfig(e)),
    logLevel: e.LOG_LEVEL,
  };
}

function webhookConfig(e: z.infer<typeof schema>): WebhookConfig | null {
  if (!e.FALCONQ_WEBHOOK_URL) {
    if (e.FALCONQ_WEBHOOK_SECRET) throw new Error('is set but FALCONQ_WEBHOOK_URL is not');
    return null;
  }
  const secret = e.FALCONQ_WEBHOOK_SECRET ?? '';
  const key = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  if (!key || Buffer.from(key[1], 'base64').length < 24) {
    throw new Error('must be whsec_ followed by base64 of at least 24 random bytes (required with FALCONQ_WEBHOOK_URL)');
  }
  return { url: e.FALCONQ_WEBHOOK_URL, secret, retryMs: e.FALCONQ_WEBHOOK_RETRY_MS, maxAttempts: e.FALCONQ_WEBHOOK_MAX_ATTEMPTS, timeoutMs: e.FALCONQ_WEBHOOK_TIMEOUT_MS };
}

function redisTopology(e: z.infer<typeof schema>): RedisConnectionConfig {
  try {
    return redisTopologyOf(e);
  } catch (error) {
    throw new ApiConfigError(`invalid api configuration: ${(error as Error).message}`);
  }
}

export const API_CONFIG = Symbol('API_CONFIG');
