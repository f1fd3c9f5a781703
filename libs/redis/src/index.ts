// Public entry of libs/redis: the one owner of ioredis (connections for plain Redis, TLS, Sentinel and Cluster), the
// Redis variables both apps read, and the server checks. libs/queue and libs/store both build on it.
export * from './connection';
export * from './env';
