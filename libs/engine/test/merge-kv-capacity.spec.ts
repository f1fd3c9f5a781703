// The device-merge runner sizes its batch cache to the live rows (a power of two up to the slots) and their longest
// possible sequence (a power of two of positions, at least 64): it grows when newcomers do not fit and shrinks once
// the live rows need a quarter of it. Moving rows must not change any sequence's tokens. Runs on the CPU EP, where
// the runner's tensors are host tensors.
import { MergeKvRunner } from '../src/runtime/merge-kv-runner';
import { openModelSession } from '../src/runtime/model-session';
import type { RowOutput } from '../src/scheduler/forward-runner';
import { tinyModelDir } from '../../../test/support/tiny-model';

const PROMPTS: Record<number, number[]> = { 5: [40, 300, 77, 120], 0: [61, 62, 63], 1: [5, 6, 7, 8, 9, 10], 2: [200, 201] };
/** The most tokens each slot's sequence may hold (prompt + max new tokens): slot 1's asks for a longer cache. */
const MAX_LENGTHS: Record<number, number> = { 5: 40, 0: 40, 1: 100, 2: 40 };
const greedy = (output: RowOutput) => output.best ?? Number(output.top.ids[0]);

async function openRunner(slots: number): Promise<MergeKvRunner> {
  const model = await openModelSession({ modelDir: await tinyModelDir(), executionProvider: 'cpu', kvPlacement: 'device-merge' });
  return MergeKvRunner.create(model, slots, 256);
}

/** Greedy tokens of one prompt decoded alone in slot `slot`. */
async function alone(slot: number, steps: number): Promise<number[]> {
  const runner = await openRunner(8);
  const tokens = [greedy((await runner.prefill([{ row: slot, tokens: PROMPTS[slot], maxLength: MAX_LENGTHS[slot] }], false))[0])];
  while (tokens.length < steps) tokens.push(greedy((await runner.decode([{ row: slot, token: tokens.at(-1) as number }], false))[0]));
  runner.dispose();
  return tokens;
}

it('device-merge: the cache follows the live rows (1 -> 4 -> 1 of 8 slots, 64 -> 128 positions) and rows keep their tokens', async () => {
  const runner = await openRunner(8);
  const tokens: Record<number, number[]> = {};
  const decode = async (slots: number[]) => {
    const outputs = await runner.decode(slots.map((slot) => ({ row: slot, token: tokens[slot].at(-1) as number })), false);
    slots.forEach((slot, i) => tokens[slot].push(greedy(outputs[i])));
  };
  const join = async (slots: number[]) => {
    const outputs = await runner.prefill(slots.map((slot) => ({ row: slot, tokens: PROMPTS[slot], maxLength: MAX_LENGTHS[slot] })), false);
    slots.forEach((slot, i) => (tokens[slot] = [greedy(outputs[i])]));
  };

  await join([5]);
  await decode([5]);
  expect(runner.capacity).toBe(1); // a lone request decodes at batch 1, not 8
  expect(runner.cacheLength).toBe(64); // 40 tokens at most: 64 positions, not the 256 allowed
  await join([0, 1, 2]);
  await decode([5, 0, 1, 2]);
  expect(runner.capacity).toBe(4);
  expect(runner.cacheLength).toBe(128); // slot 1 may grow to 100 tokens
  await decode([5, 0, 1, 2]);
  for (const slot of [0, 1, 2]) runner.release(slot);
  await decode([5]);
  expect(runner.capacity).toBe(1); // one live row left in four: packed into a cache of one
  await decode([5]);
  runner.dispose();

  expect(tokens[5]).toEqual(await alone(5, tokens[5].length));
  for (const slot of [0, 1, 2]) expect(tokens[slot]).toEqual(await alone(slot, tokens[slot].length));
});
