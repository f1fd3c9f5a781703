// Runs one planned model run on a ForwardRunner and hands back its raw per-row results, in the plan's row order:
// next-token scores (one-step runs), or the tokens the decode-loop graph chose (several steps per run).

import type { ChunkEntry, ForwardRunner, RowOutput, RowSampling, RowTokens } from './forward-runner';
import type { PrefillRow, RunPlan } from './step-plan';

export type RunResult = { kind: 'scores'; rows: RowOutput[] } | { kind: 'tokens'; rows: number[][] };

/** `graphSampling`: for a decode-loop run (steps > 1), each row's in-graph sampling, in the plan's row order. */
export async function executePlan(runner: ForwardRunner, plan: RunPlan, graphSampling: readonly RowSampling[] = []): Promise<RunResult> {
  switch (plan.kind) {
    case 'prefill': {
      const rows: RowOutput[] = new Array(plan.rows.length);
      for (const run of plan.runs ?? [plan.rows.map((_, i) => i)]) {
        const outputs = await runner.prefill(run.map((i) => rowTokens(plan.rows[i])), plan.fullLogits);
        run.forEach((i, k) => (rows[i] = outputs[k]));
      }
      return { kind: 'scores', rows };
    }
    case 'extend':
      return { kind: 'scores', rows: [await runner.extend(rowTokens(plan.rows[0]), plan.fullLogits)] };
    case 'decode': {
      if (plan.steps === 1) return { kind: 'scores', rows: await runner.decode(plan.rows.map(({ row, token }) => ({ row, token })), plan.fullLogits) };
      if (!runner.decodeChunk) throw new Error('scheduler bug: a decode-loop plan for a runner without a decode loop');
      if (graphSampling.length !== plan.rows.length) throw new Error('scheduler bug: a decode-loop plan needs every row\'s in-graph sampling');
      const entries: ChunkEntry[] = plan.rows.map(({ row, token }, i) => ({ row, token, sampling: graphSampling[i] }));
      return { kind: 'tokens', rows: await runner.decodeChunk(entries, plan.steps) };
    }
  }
}

function rowTokens({ row, tokens, maxLength }: PrefillRow): RowTokens {
  return maxLength === undefined ? { row, tokens } : { row, tokens, maxLength };
}
