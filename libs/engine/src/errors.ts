// Errors that cross the engine's worker_thread boundary keep their name and fields (see toSerializedError).

/** A request parameter (or the prompt) is invalid; `field` names it (GenerationParams key, or 'prompt'). */
export class InvalidGenerationParamError extends Error {
  override readonly name = 'InvalidGenerationParamError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`invalid generation parameter ${field}: ${reason}`);
  }
}

/** The execution provider asked for cannot be used here. */
export class ExecutionProviderUnavailableError extends Error {
  override readonly name = 'ExecutionProviderUnavailableError';
  /**
   * @param missing the provider is not part of this installation (not installed, not built for this platform), so
   *   starting again cannot help until it is installed; false when it is there but failed to load (a driver, a
   *   library, a device), which may pass.
   */
  constructor(
    readonly provider: string,
    message: string,
    readonly missing = false,
  ) {
    super(message);
  }
}

/**
 * The engine cannot start with these options on this model directory: an invalid option, a directory that is not a
 * falconq model or is damaged, a graph the options need that the model lacks. Starting again unchanged cannot help
 * (a worker exits with its configuration-error code, and its supervisor does not restart it). Failures that may pass
 * (out of GPU memory, a device not ready) keep their own errors.
 */
export class EngineConfigurationError extends Error {
  override readonly name = 'EngineConfigurationError';
}

/** Whether an engine that failed to start would fail again started the same way (a worker then stays down). */
export function failsAgainOnRestart(error: unknown): boolean {
  return error instanceof EngineConfigurationError || (error instanceof ExecutionProviderUnavailableError && error.missing);
}

/** The engine was closed (or its thread died) while the request was pending. */
export class EngineClosedError extends Error {
  override readonly name = 'EngineClosedError';
}

/** A request id is already in flight. */
export class DuplicateRequestError extends Error {
  override readonly name = 'DuplicateRequestError';
}

export interface SerializedError {
  name: string;
  message: string;
  field?: string;
  reason?: string;
  provider?: string;
  missing?: boolean;
  stack?: string;
}

export function toSerializedError(error: unknown): SerializedError {
  if (error instanceof InvalidGenerationParamError) {
    return { name: error.name, message: error.message, field: error.field, reason: error.reason };
  }
  if (error instanceof ExecutionProviderUnavailableError) {
    return { name: error.name, message: error.message, provider: error.provider, missing: error.missing };
  }
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack };
  return { name: 'Error', message: String(error) };
}

export function fromSerializedError(serialized: SerializedError): Error {
  switch (serialized.name) {
    case 'InvalidGenerationParamError':
      return new InvalidGenerationParamError(serialized.field ?? 'unknown', serialized.reason ?? serialized.message);
    case 'ExecutionProviderUnavailableError':
      return new ExecutionProviderUnavailableError(serialized.provider ?? 'unknown', serialized.message, serialized.missing === true);
    case 'EngineClosedError':
      return new EngineClosedError(serialized.message);
    case 'EngineConfigurationError':
      return new EngineConfigurationError(serialized.message);
    case 'DuplicateRequestError':
      return new DuplicateRequestError(serialized.message);
    default: {
      const error = new Error(serialized.message);
      error.name = serialized.name;
      if (serialized.stack) error.stack = serialized.stack;
      return error;
    }
  }
}
