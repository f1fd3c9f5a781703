import { decodeRunSteps, planDecode, planPrefill, sortedPrefillRuns, type BatchView, type PlannerConfig, type SlotState } from './step-plan';

const range = (from: number, length: number) => Array.from({ length }, (_, i) => from + i);

/** A live row: fresh (nothing in the cache yet) unless told otherwise. */
function slot(row: number, prompt: number[], overrides: Partial<SlotState> = {}): SlotState {
  return {
    row,
    phase: 'prefilling',
    prompt,
    prefilled: 0,
    admittedAtStep: 1,
    generated: 0,
    maxNewTokens: 10,
    pending: -1,
    needsFullLogits: false,
    fitsGraphSampler: true,
    interactive: false,
    endsOnlyAtBudget: true,
    ...overrides,
  };
}

/** A row that has its prompt in the cache and `generated` tokens out, the last of them pending. */
function decoding(row: number, prompt: number[], generated: number, overrides: Partial<SlotState> = {}): SlotState {
  return slot(row, prompt, { phase: 'decoding', prefilled: prompt.length, generated, pending: 100 + row, ...overrides });
}

const hostJoins: PlannerConfig = { joinMode: 'prefill', rows: 4, contextLength: 64, decodeLoop: false, prefillChunkTokens: 16, forceFullLogits: false, continuous: false };
const deviceJoins: PlannerConfig = { ...hostJoins, joinMode: 'decode' };
const looped: PlannerConfig = { ...hostJoins, decodeLoop: true, decodeChunkSteps: 8 };

const batch = (live: SlotState[], overrides: Partial<BatchView> = {}): BatchView => ({ step: 1, live, waiting: 0, ...overrides });

describe('planPrefill, joins by prefill', () => {
  it('prefills fresh prompts together while rows x longest fits the budget; the rest wait for the next step', () => {
    const plan = planPrefill(batch([slot(3, range(0, 5)), slot(2, range(0, 3)), slot(1, range(0, 6))]), hostJoins);
    // 2 rows x 5 = 10 fit 16; a third (3 x 6 = 18) does not.
    expect(plan).toEqual({
      kind: 'prefill',
      rows: [
        { row: 3, tokens: range(0, 5), maxLength: 15, completesPrompt: true },
        { row: 2, tokens: range(0, 3), maxLength: 13, completesPrompt: true },
      ],
      fullLogits: false,
    });
  });

  it('starts a prompt longer than the budget with its first chunk, then extends it chunk by chunk before anything else', () => {
    const long = range(0, 40);
    expect(planPrefill(batch([slot(0, long), slot(1, [1, 2])]), hostJoins)).toEqual({
      kind: 'prefill',
      rows: [{ row: 0, tokens: range(0, 16), maxLength: 50, completesPrompt: false }],
      fullLogits: false,
    });
    const midway = planPrefill(batch([slot(1, [1, 2]), slot(0, long, { prefilled: 32 })]), hostJoins);
    expect(midway).toEqual({ kind: 'extend', rows: [{ row: 0, tokens: range(32, 8), completesPrompt: true }], fullLogits: false });
  });

  it('asks for the full logits when a row of the run needs them (or the engine forces them)', () => {
    const rows = [slot(0, [1, 2]), slot(1, [3, 4], { needsFullLogits: true })];
    expect(planPrefill(batch(rows), hostJoins)?.fullLogits).toBe(true);
    expect(planPrefill(batch([rows[0]]), hostJoins)?.fullLogits).toBe(false);
    expect(planPrefill(batch([rows[0]]), { ...hostJoins, forceFullLogits: true })?.fullLogits).toBe(true);
  });

  it('while rows decode, holds newcomers back until joinGroup of them wait or the oldest waited joinMaxWaitSteps', () => {
    const grouped = { ...hostJoins, joinGroup: 3, joinMaxWaitSteps: 4 };
    const running = decoding(0, [1, 2, 3], 2);
    const two = [slot(1, [4, 5], { admittedAtStep: 5 }), slot(2, [6, 7], { admittedAtStep: 6 })];
    expect(planPrefill(batch([running, ...two], { step: 8 }), grouped)).toBeUndefined();
    expect(planPrefill(batch([running, ...two], { step: 9 }), grouped)?.rows.map((row) => row.row)).toEqual([1, 2]);
    const three = [...two, slot(3, [8, 9], { admittedAtStep: 7 })];
    expect(planPrefill(batch([running, ...three], { step: 7 }), grouped)?.rows.map((row) => row.row)).toEqual([1, 2, 3]);
    // Nothing decodes: nobody to make wait.
    expect(planPrefill(batch(two, { step: 6 }), grouped)?.rows.map((row) => row.row)).toEqual([1, 2]);
  });

  it('splits a join group into length-sorted runs where the padding saved is worth more than a run (prefillRunCostTokens)', () => {
    const wide = { ...hostJoins, rows: 8, prefillChunkTokens: 64 };
    const live = [slot(0, range(0, 2)), slot(1, range(0, 8)), slot(2, range(0, 2)), slot(3, range(0, 8)), slot(4, range(0, 2))];
    // One run: 5 x 8 = 40 tokens. Two: 3 x 2 + 2 x 8 = 22 tokens, + one more run's cost.
    const split = planPrefill(batch(live), { ...wide, prefillRunCostTokens: 17 });
    expect(split?.rows.map((row) => row.row)).toEqual([0, 1, 2, 3, 4]);
    expect(split?.runs).toEqual([[0, 2, 4], [1, 3]]);
    expect(planPrefill(batch(live), { ...wide, prefillRunCostTokens: 18 })?.runs).toBeUndefined();
    expect(planPrefill(batch(live), wide)?.runs).toBeUndefined();
  });

  it('plans nothing without fresh rows', () => {
    expect(planPrefill(batch([decoding(0, [1], 1)]), hostJoins)).toBeUndefined();
    expect(planPrefill(batch([]), hostJoins)).toBeUndefined();
  });
});

describe('planPrefill, joins through decode (device KV)', () => {
  it('starts a batch with every fresh prompt that fits its per-row share of the budget (16 / 4 rows = 4 tokens)', () => {
    const plan = planPrefill(batch([slot(3, [1, 2, 3, 4]), slot(2, range(0, 5)), slot(1, [7])]), deviceJoins);
    expect(plan?.kind).toBe('prefill');
    expect(plan?.rows.map((row) => row.row)).toEqual([3, 1]);
  });

  it('never prefills into a running batch', () => {
    expect(planPrefill(batch([decoding(0, [1, 2], 1), slot(1, [3])]), deviceJoins)).toBeUndefined();
    expect(planPrefill(batch([slot(0, range(0, 6), { prefilled: 2 }), slot(1, [3])]), deviceJoins)).toBeUndefined();
  });
});

describe('planDecode', () => {
  it('one step for every decoding row, each choosing its token on the host, with the full logits only if one of them needs them', () => {
    const plan = planDecode(batch([decoding(2, [1], 1), slot(1, [5, 6]), decoding(0, [2, 3], 4, { needsFullLogits: true })]), hostJoins);
    expect(plan).toEqual({
      kind: 'decode',
      rows: [
        { row: 2, token: 102, promptToken: false, choice: 'host' },
        { row: 0, token: 100, promptToken: false, choice: 'host' },
      ],
      steps: 1,
      fullLogits: true,
    });
  });

  it('joins through decode: feeds prefilling rows their next prompt token; only the last one chooses a token', () => {
    const live = [decoding(0, [1], 1), slot(1, [5, 6, 7], { prefilled: 1, needsFullLogits: true }), slot(2, [8, 9], { prefilled: 1 })];
    const plan = planDecode(batch(live), deviceJoins);
    expect(plan?.rows).toEqual([
      { row: 0, token: 100, promptToken: false, choice: 'host' },
      { row: 1, token: 6, promptToken: true, choice: 'none' },
      { row: 2, token: 9, promptToken: true, choice: 'host' },
    ]);
    // Row 1 needs full logits, but its output this step chooses nothing.
    expect(plan?.fullLogits).toBe(false);
  });

  it('plans nothing when no row decodes', () => {
    expect(planDecode(batch([slot(0, [1, 2])]), hostJoins)).toBeUndefined();
  });

  it('with a decode loop: one run of several steps, tokens chosen in the graph', () => {
    const plan = planDecode(batch([decoding(0, [1, 2], 1, { maxNewTokens: 30 }), decoding(1, [3], 2, { maxNewTokens: 30 })]), looped);
    expect(plan).toEqual({
      kind: 'decode',
      rows: [
        { row: 0, token: 100, promptToken: false, choice: 'graph' },
        { row: 1, token: 101, promptToken: false, choice: 'graph' },
      ],
      steps: 8,
      fullLogits: false,
    });
  });
});

describe('decodeRunSteps', () => {
  const rows = [decoding(0, range(0, 10), 3, { maxNewTokens: 20 }), decoding(1, range(0, 4), 1, { maxNewTokens: 6 })];

  it('is 1 without a decode loop, with forced full logits, or when any row cannot be sampled in the graph or still prefills', () => {
    expect(decodeRunSteps(batch(rows), { ...looped, decodeLoop: false }, rows)).toBe(1);
    expect(decodeRunSteps(batch(rows), { ...looped, decodeChunkSteps: 1 }, rows)).toBe(1);
    expect(decodeRunSteps(batch(rows), { ...looped, forceFullLogits: true }, rows)).toBe(1);
    const wide = [rows[0], { ...rows[1], fitsGraphSampler: false }];
    expect(decodeRunSteps(batch(wide), looped, wide)).toBe(1);
    const prefilling = [rows[0], slot(1, [1, 2], { prefilled: 1 })];
    expect(decodeRunSteps(batch(prefilling), { ...looped, joinMode: 'decode' }, prefilling)).toBe(1);
  });

  it('runs decodeChunkSteps, but no longer than the longest budget left nor past a row\'s context', () => {
    expect(decodeRunSteps(batch(rows), looped, rows)).toBe(8);
    // Budgets left: 20 - 18 = 2 and 6 - 5 = 1.
    const ending = [{ ...rows[0], generated: 18 }, { ...rows[1], generated: 5 }];
    expect(decodeRunSteps(batch(ending), looped, ending)).toBe(2);
    // Row 0 holds 10 + 3 - 1 = 12 positions of a 16-token context: room for 4.
    expect(decodeRunSteps(batch(rows), { ...looped, contextLength: 16 }, rows)).toBe(4);
  });

  it('while someone waits for a row, ends at the first row\'s budget, but runs at least decodeChunkMinSteps', () => {
    // Row 1 has 5 tokens left.
    expect(decodeRunSteps(batch(rows, { waiting: 1 }), looped, rows)).toBe(8);
    expect(decodeRunSteps(batch(rows, { waiting: 1 }), { ...looped, decodeChunkMinSteps: 2 }, rows)).toBe(5);
    expect(decodeRunSteps(batch(rows, { waiting: 1 }), { ...looped, decodeChunkMinSteps: 7 }, rows)).toBe(7);
    // A live row still prefilling (it waits for the rest of its prompt) counts as waiting.
    const withNewcomer = [...rows, slot(2, range(0, 40), { prefilled: 16 })];
    expect(decodeRunSteps(batch(withNewcomer), { ...looped, decodeChunkMinSteps: 2 }, rows)).toBe(5);
  });

  it('with continuous admission, ends when a row may free: at the first budget when only budgets end rows, else after decodeChunkMinSteps', () => {
    const continuous = { ...looped, continuous: true, decodeChunkSteps: 16, decodeChunkMinSteps: 2 };
    // Both rows end only at their budgets: row 1 frees after 5 steps.
    expect(decodeRunSteps(batch(rows), continuous, rows)).toBe(5);
    expect(decodeRunSteps(batch(rows), { ...continuous, decodeChunkMinSteps: 7 }, rows)).toBe(7);
    // Row 0 may end at any step (eos, a stop string): the run is decodeChunkMinSteps long.
    const open = [{ ...rows[0], endsOnlyAtBudget: false }, rows[1]];
    expect(decodeRunSteps(batch(open), continuous, open)).toBe(2);
    // Rows of one length free together: one run to the end.
    const even = [decoding(0, [1], 1, { maxNewTokens: 13 }), decoding(1, [2], 1, { maxNewTokens: 13 })];
    expect(decodeRunSteps(batch(even), continuous, even)).toBe(12);
  });

  it('while an interactive row decodes, runs last at most decodeChunkMinSteps, whoever waits', () => {
    const watched = [rows[0], { ...rows[1], interactive: true }];
    expect(decodeRunSteps(batch(watched), { ...looped, decodeChunkMinSteps: 3 }, watched)).toBe(3);
    // Waiting requests would allow up to the first row's budget (5): the interactive row still caps the run.
    expect(decodeRunSteps(batch(watched, { waiting: 1 }), { ...looped, decodeChunkMinSteps: 3 }, watched)).toBe(3);
    // Without one, the same batch runs the full length.
    expect(decodeRunSteps(batch(rows), { ...looped, decodeChunkMinSteps: 3 }, rows)).toBe(8);
  });
});

describe('sortedPrefillRuns', () => {
  const paddedTokens = (lengths: number[], runs: number[][]) => runs.reduce((sum, run) => sum + run.length * Math.max(...run.map((i) => lengths[i])), 0);

  it('keeps prompts of one length, or a costly run, in one run', () => {
    expect(sortedPrefillRuns([5, 5, 5], 0)).toEqual([[0, 1, 2]]);
    expect(sortedPrefillRuns([1, 100, 2], 1_000)).toEqual([[0, 2, 1]]);
  });

  it('gives every distinct length its own run when runs cost nothing', () => {
    expect(sortedPrefillRuns([3, 1, 3, 2], 0)).toEqual([[1], [3], [0, 2]]);
  });

  it('finds the cheapest partition of the sorted prompts: no other cut costs less', () => {
    const lengths = [16, 128, 40, 90, 17, 128, 64, 33, 100, 20, 72, 16];
    const cost = 100;
    const runs = sortedPrefillRuns(lengths, cost);
    expect(runs.flat().sort((a, b) => a - b)).toEqual(range(0, lengths.length));
    const best = paddedTokens(lengths, runs) + cost * runs.length;
    // Every partition of the sorted order into contiguous runs (2^11 of them) costs at least as much.
    const order = range(0, lengths.length).sort((a, b) => lengths[a] - lengths[b] || a - b);
    for (let cuts = 0; cuts < 1 << (lengths.length - 1); cuts++) {
      const candidate: number[][] = [[order[0]]];
      for (let i = 1; i < order.length; i++) {
        if (cuts & (1 << (i - 1))) candidate.push([order[i]]);
        else candidate[candidate.length - 1].push(order[i]);
      }
      expect(paddedTokens(lengths, candidate) + cost * candidate.length).toBeGreaterThanOrEqual(best);
    }
    expect(best).toBeLessThan(lengths.length * 128 + cost);
  });
});
