import { InvalidGenerationParamError, type GenerationParams } from '@app/engine';

// The engine names its parameters as GenerationParams fields (maxNewTokens); a terminal user typed flags
// (--max-new-tokens). Errors from the engine's rules are reworded here with the flags.

const FLAGS: Record<keyof GenerationParams, string> = {
  maxNewTokens: '--max-new-tokens',
  doSample: '--sample',
  temperature: '--temperature',
  topK: '--top-k',
  topP: '--top-p',
  repetitionPenalty: '--repetition-penalty',
  seed: '--seed',
  stop: '--stop',
  numReturnSequences: '--num-return-sequences',
  returnFullText: '--full-text',
  ignoreEos: '--ignore-eos',
  truncate: '--truncate',
  logprobs: 'logprobs (an api parameter; the CLI does not report log-probabilities)',
  promptLogprobs: 'echo with logprobs (an api parameter; the CLI does not report log-probabilities)',
};

/** Rewrites the engine's field names in a message as flags ("set doSample to true" -> "pass --sample"). */
export function inFlagNames(text: string): string {
  const phrased = text
    .replace(/set doSample to true/g, 'pass --sample')
    .replace(/doSample is false/g, '--sample is not given')
    .replace(/temperature\/top_k\/top_p/g, '--temperature, --top-k or --top-p')
    .replace(/set truncate/g, 'pass --truncate');
  return Object.entries(FLAGS).reduce((acc, [field, flag]) => acc.replace(new RegExp(`(?<![-\\w])${field}\\b`, 'g'), flag), phrased);
}

/** An engine parameter error as the user should read it: "--top-p must be in (0, 1], got 2". */
export function flagError(error: InvalidGenerationParamError): Error {
  const field = /^(\w+)(.*)$/.exec(error.field);
  const flag = field ? `${FLAGS[field[1] as keyof GenerationParams] ?? field[1]}${field[2]}` : error.field;
  return new Error(`${flag} ${inFlagNames(error.reason)}`);
}

/** Runs `check`, turning an engine parameter error into one that names the flag. */
export function withFlagNames<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof InvalidGenerationParamError) throw flagError(error);
    throw error;
  }
}
