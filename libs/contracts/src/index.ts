export * from './job';
export * from './result';
export * from './events';
