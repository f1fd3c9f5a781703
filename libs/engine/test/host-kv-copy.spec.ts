// The host KV runner on a binding that refuses preallocated outputs (the first decode retries without them and
// copies the presents back from then on) must give the same tokens as the in-place path.
import type * as ort from 'onnxruntime-node';
import type { GenerationResult } from '@app/engine';
import { EngineCore } from '../src/core/engine-core';
import { tinyModelDir } from '../../../test/support/tiny-model';

async function generate(refusePreallocated: boolean): Promise<{ results: GenerationResult[]; mode: string }> {
  const core = await EngineCore.open({ modelDir: await tinyModelDir(), executionProvider: 'cpu', slots: 2, kvPlacement: 'host' });
  const internals = core as unknown as { model: { session: ort.InferenceSession }; runner: { presentMode: string } };
  if (refusePreallocated) {
    const session = internals.model.session;
    const run = session.run.bind(session) as (feeds: unknown, fetches: unknown) => Promise<ort.InferenceSession.OnnxValueMapType>;
    (session as unknown as { run: unknown }).run = (feeds: unknown, fetches: unknown) =>
      fetches && !Array.isArray(fetches) && Object.values(fetches as object).some((value) => value !== null)
        ? Promise.reject(new Error('preallocated outputs are not supported'))
        : run(feeds, fetches);
  }
  const submit = (id: string, prompt: string, maxNewTokens: number) =>
    new Promise<GenerationResult>((resolve, reject) =>
      core.submit({ id, prompt, params: { maxNewTokens, ignoreEos: true } }, { onDone: resolve, onError: reject }),
    );
  const results = await Promise.all([submit('a', 'Hello world', 8), submit('b', 'The quick brown fox', 12)]);
  const mode = internals.runner.presentMode;
  await core.close();
  return { results, mode };
}

it('host KV copies presents back when in-place writes are refused, with the same tokens', async () => {
  const inPlace = await generate(false);
  const copied = await generate(true);
  expect(inPlace.mode).toBe('in-place');
  expect(copied.mode).toBe('copy');
  expect(copied.results.map((r) => r.sequences)).toEqual(inPlace.results.map((r) => r.sequences));
});
