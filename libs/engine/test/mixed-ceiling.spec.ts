// bench/mixed-ceiling.js drives the real Scheduler with a runner that only adds up modeled time: these runs check
// that the script works on the built engine and that the scheduler's admission shows in its numbers.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

const script = path.resolve(__dirname, '../../../bench/mixed-ceiling.js');

interface Row {
  runCost: number;
  static: { tokensPerSecond: number; prefillSeconds: number };
  continuous: { tokensPerSecond: number };
}

function ceiling(args: string[]): Row[] {
  const out = execFileSync(process.execPath, [script, '--requests', '96', '--in-flight', '16', '--slots', '16', '--prefill-budget', '4096', ...args], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((line) => /^\S+ \| \d+ \| \d+ \|/.test(line))
    .map((line) => {
      const [, , runCost, fixed, moving] = line.split(' | ');
      const numbers = (cell: string) => cell.match(/[\d.]+/g)?.map(Number) ?? [];
      return {
        runCost: Number(runCost),
        static: { tokensPerSecond: numbers(fixed)[0], prefillSeconds: numbers(fixed)[1] },
        continuous: { tokensPerSecond: numbers(moving)[0] },
      };
    });
}

describe('bench/mixed-ceiling.js (the scheduler on modeled costs)', () => {
  it('continuous admission fills freed rows: far ahead of static when a step costs the same for any number of rows', () => {
    const [row] = ceiling(['--boundary-gbps', '0', '--run-cost', '256', '--step-ms', '20', '--step-ms-per-row', '0']);
    expect(row.continuous.tokensPerSecond / row.static.tokensPerSecond).toBeGreaterThan(1.25);
  });

  it('length-sorted prefill runs take less modeled prefill time than one padded run per group', () => {
    const [split, single] = ceiling(['--boundary-gbps', '0', '--run-cost', '256,1000000']);
    expect([split.runCost, single.runCost]).toEqual([256, 1000000]);
    expect(split.static.prefillSeconds).toBeLessThan(single.static.prefillSeconds);
  });

  it('refuses an unknown option, naming it', () => {
    expect(() => execFileSync(process.execPath, [script, '--bogus', '1'], { encoding: 'utf8', stdio: 'pipe' })).toThrow(/unknown option or missing value: --bogus/);
  });
});
