// Public entry of libs/store: small classes over Redis, one per concern (batch ledger, item results, files,
// idempotency keys, worker registry, batch events, rate limiter), each applying the lifecycle of libs/contracts
// through its Lua scripts. RedisStore bundles them over one connection for the api.
export * from './types';
export * from './redis-keys';
export * from './batch-ledger';
export * from './item-results';
export * from './files';
export * from './idempotency-keys';
export * from './worker-registry';
export * from './batch-events';
export * from './rate-limiter';
export * from './redis-store';
export * from './batch-output';
export * from './webhook-outbox';
export * from './webhook-outbox';
