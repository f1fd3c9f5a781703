export * from './lifecycle';
export * from './job';
export * from './result';
export * from './events';
