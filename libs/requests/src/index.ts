// Public entry of libs/requests: OpenAI-shaped and native request bodies -> the prompt and GenerationParams the
// engine runs, with errors that name the field as the client wrote it. Used by the api and by the CLI's run-batch.
export * from './request-schemas';
export * from './generation-params';
export * from './prompt-builder';
export * from './batch-line';
