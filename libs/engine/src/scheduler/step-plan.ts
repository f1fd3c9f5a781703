// The planner: what the next model runs of a step do, decided from the batch's state alone. Pure: no runner, no
// sampler, no clock. A step is at most one prefill (planPrefill: one or more model runs) and then one decode run (planDecode), planned
// after the prefill's tokens are in (a row whose prompt completes decodes in the same step).

import type { JoinMode } from './forward-runner';

/** What the planner reads of one live row (a sequence holding a slot). */
export interface SlotState {
  row: number;
  phase: 'prefilling' | 'decoding';
  prompt: number[];
  /** Prompt tokens already in the row's KV cache. */
  prefilled: number;
  /** Step at which the sequence took its row. */
  admittedAtStep: number;
  /** Tokens generated so far. */
  generated: number;
  maxNewTokens: number;
  /** decoding: the token to feed on the next decode step (the last one generated). */
  pending: number;
  /** The row's token choice needs the full logits row, not only the graph's top-K (needsFullLogits). */
  needsFullLogits: boolean;
  /** The decode-loop graph can choose this row's tokens (fitsInGraphSampler). */
  fitsGraphSampler: boolean;
  /** Someone reads this row's tokens as they come: runs stay at decodeChunkMinSteps while it decodes. */
  interactive: boolean;
  /** Only max_new_tokens can end this row (ignore_eos, no stop strings): when it frees is known in advance. */
  endsOnlyAtBudget: boolean;
}

export interface BatchView {
  /** The step being planned (1 for the first). */
  step: number;
  /** Live rows, in the order they took their slots. */
  live: readonly SlotState[];
  /** Sequences waiting for a slot. */
  waiting: number;
}

/** Budgets, and what the runner can do. */
export interface PlannerConfig {
  joinMode: JoinMode;
  rows: number;
  contextLength: number;
  /** The runner decodes several steps per run (it has decodeChunk). */
  decodeLoop: boolean;
  /** Upper bound of prompt tokens (padding included) in one prefill run. */
  prefillChunkTokens: number;
  /**
   * The fixed cost of one prefill run, in prompt tokens: a join group is prefilled in length-sorted runs wherever the
   * padding that saves is worth more (sortedPrefillRuns). Absent: one run per group.
   */
  prefillRunCostTokens?: number;
  joinGroup?: number;
  joinMaxWaitSteps?: number;
  forceFullLogits: boolean;
  /** Newcomers take rows as they free (continuous admission), not only once the whole batch is done. */
  continuous: boolean;
  decodeChunkSteps?: number;
  decodeChunkMinSteps?: number;
}

export interface PrefillRow {
  row: number;
  tokens: number[];
  /** The most tokens the row will hold (prompt + max new tokens); set on runs that start rows (prefill). */
  maxLength?: number;
  /** These tokens end the prompt: the run's output for this row chooses its first generated token. */
  completesPrompt: boolean;
}

/**
 * prefill: rows start at position 0, each model run right-padded to its longest prompt. extend: the next chunk of one
 * row's prompt (B = 1).
 */
export interface PrefillPlan {
  kind: 'prefill' | 'extend';
  rows: PrefillRow[];
  fullLogits: boolean;
  /** prefill: the model runs, as indices into `rows`, run one after the other. Absent: all rows in one run. */
  runs?: number[][];
}

/**
 * How a decode row's next token is chosen: `host` from the run's scores by the host sampler, `graph` inside a
 * decode-loop run, `none` for a prompt token fed through decode that does not end the prompt.
 */
export type TokenChoice = 'host' | 'graph' | 'none';

export interface DecodeRow {
  row: number;
  /** The token appended to the row. */
  token: number;
  /** joinMode decode: the token is the row's next prompt token (prefill through decode). */
  promptToken: boolean;
  choice: TokenChoice;
}

/** steps 1: one token per row, scores back (choices host or none). steps > 1: a decode-loop run (choices graph). */
export interface DecodePlan {
  kind: 'decode';
  rows: DecodeRow[];
  steps: number;
  fullLogits: boolean;
}

export type RunPlan = PrefillPlan | DecodePlan;

/** The step's prefill run, if any (after admission). */
export function planPrefill(batch: BatchView, config: PlannerConfig): PrefillPlan | undefined {
  return config.joinMode === 'prefill' ? planJoinPrefill(batch, config) : planBatchStart(batch, config);
}

/** joinMode prefill: the next chunk of a long prompt, or a group of fresh short prompts. */
function planJoinPrefill(batch: BatchView, config: PlannerConfig): PrefillPlan | undefined {
  const budget = config.prefillChunkTokens;
  const prefilling = batch.live.filter((slot) => slot.phase === 'prefilling');
  const midway = prefilling.find((slot) => slot.prefilled > 0);
  if (midway) {
    const tokens = midway.prompt.slice(midway.prefilled, midway.prefilled + budget);
    return { kind: 'extend', rows: [{ row: midway.row, tokens, completesPrompt: midway.prefilled + tokens.length === midway.prompt.length }], fullLogits: wantsFull(config, [midway]) };
  }
  const group: SlotState[] = [];
  let longest = 0;
  for (const slot of prefilling) {
    const length = slot.prompt.length;
    if (group.length === 0 && length > budget) {
      return { kind: 'prefill', rows: [startRow(slot, slot.prompt.slice(0, budget))], fullLogits: wantsFull(config, [slot]) };
    }
    if ((group.length + 1) * Math.max(longest, length) > budget) break;
    group.push(slot);
    longest = Math.max(longest, length);
  }
  if (group.length === 0 || deferJoin(batch, config, group, prefilling.length)) return undefined;
  const plan: PrefillPlan = { kind: 'prefill', rows: group.map((slot) => startRow(slot)), fullLogits: wantsFull(config, group) };
  if (config.prefillRunCostTokens !== undefined) {
    const runs = sortedPrefillRuns(group.map((slot) => slot.prompt.length), config.prefillRunCostTokens);
    if (runs.length > 1) plan.runs = runs;
  }
  return plan;
}

/**
 * How to prefill prompts of these lengths in right-padded runs at the least cost, a run costing `runCostTokens` plus
 * its rows x its longest prompt: the prompts sorted by length and cut where the padding saved is worth another run
 * (an exact partition, by dynamic programming over the sorted lengths; ties keep fewer runs). Returns indices into
 * `lengths`, shortest prompts first.
 */
export function sortedPrefillRuns(lengths: readonly number[], runCostTokens: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  // cost[j]: the cheapest way to prefill the j shortest prompts; start[j]: where the last of those runs starts.
  const cost = [0];
  const start = [0];
  for (let j = 1; j <= order.length; j++) {
    const longest = lengths[order[j - 1]];
    cost[j] = Infinity;
    for (let i = 0; i < j; i++) {
      const total = cost[i] + runCostTokens + (j - i) * longest;
      if (total < cost[j]) {
        cost[j] = total;
        start[j] = i;
      }
    }
  }
  const runs: number[][] = [];
  for (let j = order.length; j > 0; j = start[j]) runs.unshift(order.slice(start[j], j));
  return runs;
}

/** Whether `group` (all of the `candidates` newcomers, or as many as the budget allows) should wait for more. */
function deferJoin(batch: BatchView, config: PlannerConfig, group: SlotState[], candidates: number): boolean {
  const decoding = batch.live.some((slot) => slot.phase === 'decoding');
  if (!decoding || group.length < candidates) return false;
  const oldest = Math.min(...group.map((slot) => slot.admittedAtStep));
  return group.length < (config.joinGroup ?? 1) && batch.step - oldest < (config.joinMaxWaitSteps ?? 0);
}

/**
 * joinMode decode: a batch starts only when nothing is in the cache (every live row fresh): every row whose prompt
 * fits the per-row share of the budget (rows x longest prompt, padding included) is prefilled in one run; the others
 * join through decode.
 */
function planBatchStart(batch: BatchView, config: PlannerConfig): PrefillPlan | undefined {
  if (batch.live.length === 0 || !batch.live.every((slot) => slot.phase === 'prefilling' && slot.prefilled === 0)) return undefined;
  const perRowBudget = Math.floor(config.prefillChunkTokens / config.rows);
  const group = batch.live.filter((slot) => slot.prompt.length <= perRowBudget);
  if (group.length === 0) return undefined;
  return { kind: 'prefill', rows: group.map((slot) => startRow(slot)), fullLogits: wantsFull(config, group) };
}

/** A run that starts the row at position 0 with `tokens` (its whole prompt, or a first chunk of it). */
function startRow(slot: SlotState, tokens: number[] = slot.prompt): PrefillRow {
  return { row: slot.row, tokens, maxLength: slot.prompt.length + slot.maxNewTokens, completesPrompt: tokens.length === slot.prompt.length };
}

/** The step's decode run, if any: every decoding row, and (joinMode decode) the next prompt token of prefilling rows. */
export function planDecode(batch: BatchView, config: PlannerConfig): DecodePlan | undefined {
  const feeding: SlotState[] = [];
  const rows: DecodeRow[] = [];
  for (const slot of batch.live) {
    if (slot.phase === 'decoding') {
      feeding.push(slot);
      rows.push({ row: slot.row, token: slot.pending, promptToken: false, choice: 'host' });
    } else if (config.joinMode === 'decode') {
      // Prefill through decode: one prompt token per step at the row's own position.
      feeding.push(slot);
      const last = slot.prefilled === slot.prompt.length - 1;
      rows.push({ row: slot.row, token: slot.prompt[slot.prefilled], promptToken: true, choice: last ? 'host' : 'none' });
    }
  }
  if (rows.length === 0) return undefined;
  const steps = decodeRunSteps(batch, config, feeding);
  if (steps > 1) return { kind: 'decode', rows: rows.map((row) => ({ ...row, choice: 'graph' })), steps, fullLogits: false };
  const choosing = feeding.filter((_, i) => rows[i].choice === 'host');
  return { kind: 'decode', rows, steps: 1, fullLogits: wantsFull(config, choosing) };
}

/**
 * How many steps a decode run over `feeding` may take in one go: 1 unless the runner has a decode loop and every
 * row decodes and fits its sampler; never more than the longest remaining budget, nor past any row's context.
 * Every run boundary moves the KV cache through the host, so a run is as long as nothing needs a boundary sooner:
 * where a freed row can take a newcomer (continuous admission, or someone waiting for the rest of its prompt), it
 * ends when a row may free: at the first row's budget if only budgets can end rows, else (eos or a stop string may
 * end a row at any step) after decodeChunkMinSteps; never shorter than decodeChunkMinSteps. While an interactive row
 * decodes, at most decodeChunkMinSteps.
 */
export function decodeRunSteps(batch: BatchView, config: PlannerConfig, feeding: readonly SlotState[]): number {
  const wanted = config.decodeChunkSteps ?? 1;
  if (wanted <= 1 || !config.decodeLoop || config.forceFullLogits) return 1;
  let remaining = 0;
  let firstToFinish = Infinity;
  let room = Infinity;
  for (const slot of feeding) {
    if (slot.phase !== 'decoding' || !slot.fitsGraphSampler) return 1;
    const left = slot.maxNewTokens - slot.generated;
    remaining = Math.max(remaining, left);
    firstToFinish = Math.min(firstToFinish, left);
    // Positions in the cache: the prompt and every generated token but the pending one.
    room = Math.min(room, config.contextLength - (slot.prompt.length + slot.generated - 1));
  }
  let steps = Math.min(wanted, remaining, room);
  const short = config.decodeChunkMinSteps ?? wanted;
  const joining = batch.waiting > 0 || feeding.length < batch.live.length;
  if (config.continuous || joining) {
    const mayFreeAt = feeding.every((slot) => slot.endsOnlyAtBudget) ? firstToFinish : short;
    steps = Math.min(steps, Math.max(short, mayFreeAt));
  }
  if (feeding.some((slot) => slot.interactive)) steps = Math.min(steps, short);
  return Math.max(1, steps);
}

function wantsFull(config: PlannerConfig, slots: readonly SlotState[]): boolean {
  return config.forceFullLogits || slots.some((slot) => slot.needsFullLogits);
}
