import { paramsFromOpenAi, RequestParamError } from './generation-params';

describe('paramsFromOpenAi', () => {
  it('treats temperature 0 as greedy', () => {
    expect(paramsFromOpenAi({ model: 'm', prompt: 'p', temperature: 0 } as never, 2048)).toMatchObject({ doSample: false });
  });

  it('refuses temperature 0 with do_sample true, naming temperature, instead of sampling at temperature 1', () => {
    const call = () => paramsFromOpenAi({ model: 'm', prompt: 'p', temperature: 0, do_sample: true } as never, 2048);
    expect(call).toThrow(RequestParamError);
    expect(call).toThrow(/^temperature is 0.*do_sample is true/);
  });

  it('samples at the temperature given', () => {
    expect(paramsFromOpenAi({ model: 'm', prompt: 'p', temperature: 0.5, do_sample: true } as never, 2048)).toMatchObject({ doSample: true, temperature: 0.5 });
  });

  it('asks for prompt logprobs with echo and logprobs (completions), and then takes max_tokens 0', () => {
    expect(paramsFromOpenAi({ model: 'm', prompt: 'p', echo: true, logprobs: 2, max_tokens: 0 } as never, 2048)).toMatchObject({ maxNewTokens: 0, logprobs: 2, promptLogprobs: true, returnFullText: true });
    expect(paramsFromOpenAi({ model: 'm', prompt: 'p', logprobs: 2 } as never, 2048)).not.toHaveProperty('promptLogprobs');
    expect(() => paramsFromOpenAi({ model: 'm', prompt: 'p', logprobs: 2, max_tokens: 0 } as never, 2048)).toThrow(/^max_tokens must be between 1/);
  });
});
