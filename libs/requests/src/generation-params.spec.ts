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
});
