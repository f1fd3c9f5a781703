// Which engine errors are the prompt's fault (retrying cannot help), which mean the engine itself is gone (the worker
// must stop), and which are the worker's (retry elsewhere).

/** Names of engine errors caused by the request itself: invalid parameters, a prompt longer than the context. */
const PROMPT_ERROR_NAMES = new Set(['InvalidGenerationParamError']);

export function isPromptError(error: unknown): error is Error {
  return error instanceof Error && PROMPT_ERROR_NAMES.has(error.name);
}

/** The engine closed or its thread died: every request it held failed with this, and it takes no more. */
export function isEngineGone(error: unknown): error is Error {
  return error instanceof Error && error.name === 'EngineClosedError';
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
