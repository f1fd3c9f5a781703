// Public entry of libs/queue: the one owner of bullmq among the libs (the api enqueues and counts through
// GenerateQueue, the worker consumes through createGenerateConsumer, the dashboard uses bullBoardAdapters). Online
// text deltas do not go through here: the worker publishes them with the store's publishStream (libs/store).
export * from './connection';
export * from './job-options';
export * from './generate-queue';
export * from './consumer';
export * from './dashboard';
