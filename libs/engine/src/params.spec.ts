import { InvalidGenerationParamError } from './errors';
import { DEFAULT_GENERATION_PARAMS, fitPromptToContext, resolveGenerationParams } from './params';

function fieldOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidGenerationParamError) return error.field;
    throw error;
  }
  throw new Error('expected InvalidGenerationParamError');
}

describe('resolveGenerationParams', () => {
  it('fills the defaults', () => {
    expect(resolveGenerationParams({})).toEqual({ ...DEFAULT_GENERATION_PARAMS });
    expect(resolveGenerationParams(undefined).maxNewTokens).toBe(256);
  });

  it('keeps valid values', () => {
    const params = resolveGenerationParams({ doSample: true, temperature: 0.7, topK: 40, topP: 0.9, seed: 5, stop: ['\n'], numReturnSequences: 2 });
    expect(params).toMatchObject({ doSample: true, temperature: 0.7, topK: 40, topP: 0.9, seed: 5, stop: ['\n'], numReturnSequences: 2 });
  });

  it.each([
    [{ maxNewTokens: 0 }, 'maxNewTokens'],
    [{ maxNewTokens: 2.5 }, 'maxNewTokens'],
    [{ maxNewTokens: 2048 }, 'maxNewTokens'],
    [{ temperature: 0 }, 'temperature'],
    [{ temperature: Number.NaN }, 'temperature'],
    [{ topK: -1 }, 'topK'],
    [{ topP: 0 }, 'topP'],
    [{ topP: 1.5 }, 'topP'],
    [{ repetitionPenalty: -1 }, 'repetitionPenalty'],
    [{ doSample: 'yes' }, 'doSample'],
    [{ seed: -3 }, 'seed'],
    [{ stop: 'x' }, 'stop'],
    [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [{ stop: ['ok', ''] }, 'stop[1]'],
    [{ numReturnSequences: 0 }, 'numReturnSequences'],
    [{ numReturnSequences: 2 }, 'numReturnSequences'],
    [{ ignoreEos: 1 }, 'ignoreEos'],
    [{ max_new_tokens: 3 }, 'max_new_tokens'],
  ])('refuses %j naming %s', (given, field) => {
    expect(fieldOf(() => resolveGenerationParams(given as never))).toBe(field);
  });

  it('explains why greedy with several return sequences is refused', () => {
    expect(() => resolveGenerationParams({ numReturnSequences: 3 })).toThrow(/doSample/);
  });

  it('bounds maxNewTokens by the given context', () => {
    expect(fieldOf(() => resolveGenerationParams({ maxNewTokens: 64 }, { contextLength: 64 }))).toBe('maxNewTokens');
    expect(resolveGenerationParams({ maxNewTokens: 63 }, { contextLength: 64 }).maxNewTokens).toBe(63);
  });
});

describe('resolveGenerationParams: prompt logprobs', () => {
  it('takes maxNewTokens 0 only when the prompt is scored (promptLogprobs)', () => {
    expect(resolveGenerationParams({ maxNewTokens: 0, logprobs: 2, promptLogprobs: true })).toMatchObject({ maxNewTokens: 0, logprobs: 2, promptLogprobs: true });
    expect(fieldOf(() => resolveGenerationParams({ maxNewTokens: 0, logprobs: 2 }))).toBe('maxNewTokens');
  });
  it('needs logprobs, and refuses truncate (dropped prompt tokens would have no log-probabilities)', () => {
    expect(fieldOf(() => resolveGenerationParams({ promptLogprobs: true }))).toBe('promptLogprobs');
    expect(fieldOf(() => resolveGenerationParams({ logprobs: 0, promptLogprobs: true, truncate: true }))).toBe('truncate');
    expect(resolveGenerationParams({ logprobs: 1, promptLogprobs: false })).not.toHaveProperty('promptLogprobs');
  });
});

describe('fitPromptToContext', () => {
  const params = resolveGenerationParams({ maxNewTokens: 4 });
  it('passes a prompt that fits', () => {
    expect(fitPromptToContext([1, 2, 3, 4], params, 8)).toEqual([1, 2, 3, 4]);
  });
  it('refuses an over-long prompt naming the prompt', () => {
    expect(fieldOf(() => fitPromptToContext([1, 2, 3, 4, 5], params, 8))).toBe('prompt');
    expect(() => fitPromptToContext([1, 2, 3, 4, 5], params, 8)).toThrow(/5 tokens.*context of 8/);
  });
  it('keeps the last tokens when truncate is set', () => {
    expect(fitPromptToContext([1, 2, 3, 4, 5, 6], { ...params, truncate: true }, 8)).toEqual([3, 4, 5, 6]);
  });
  it('refuses an empty prompt', () => {
    expect(fieldOf(() => fitPromptToContext([], params, 8))).toBe('prompt');
  });
});
