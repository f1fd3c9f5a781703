// Public entry of libs/queue: the one owner of bullmq among the libs (the api enqueues and counts through
// GenerateQueue, the worker consumes through createGenerateConsumer, the dashboard uses bullBoardAdapters).
export * from './connection';
export * from './job-options';
export * from './generate-queue';
export * from './consumer';
export * from './dashboard';
export * from './stream-publisher';
