export * from './results-store';
export * from './redis-keys';
export * from './redis-results-store';
export * from './redis-connection';
export * from './batch-output';
export * from './webhook-outbox';
