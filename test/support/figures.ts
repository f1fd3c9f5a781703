// Tests print their figures and keep them in .tmp/reliability/ for docs/reliability.md (the fault tests, the api's
// access-control and bad-input tables).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';

export function reportFigures(name: string, figures: Record<string, unknown>): void {
  const dir = join(__dirname, '..', '..', '.tmp', 'reliability');
  mkdirSync(dir, { recursive: true });
  const record = { name, at: new Date().toISOString(), cpus: cpus().length, ...figures };
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(record, null, 2));
  process.stdout.write(`\n[figures] ${JSON.stringify(record)}\n`);
}

export const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
