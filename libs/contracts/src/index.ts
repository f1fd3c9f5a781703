export * from './lifecycle';
export * from './job';
export * from './template';
export * from './result';
export * from './events';
