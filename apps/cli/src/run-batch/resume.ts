import * as fs from 'node:fs';

// What an interrupted run already wrote. Lines are written in input order across the output and error files, so
// together they hold requests 0..n-1, each once; a partial last line (the run was killed mid-write) is cut off and
// that request runs again.

export interface ResumePoint {
  /** Requests already written (the next one to run). */
  done: number;
  /** custom_id of each written request, by index (null for a line that had none). */
  customIds: (string | null)[];
}

/** Request index in a line's id: `batch_req_<run>_<index>`. */
const INDEX = /_(\d+)$/;

function completeLines(path: string): string[] {
  if (!fs.existsSync(path)) return [];
  const content = fs.readFileSync(path, 'utf8');
  const end = content.lastIndexOf('\n') + 1;
  if (end < content.length) fs.truncateSync(path, Buffer.byteLength(content.slice(0, end), 'utf8'));
  return content.slice(0, end).split('\n').filter((line) => line !== '');
}

export function readResumePoint(outputPath: string, errorsPath: string | undefined): ResumePoint {
  const byIndex = new Map<number, string | null>();
  for (const path of [outputPath, errorsPath].filter((p): p is string => p !== undefined)) {
    completeLines(path).forEach((line, i) => {
      let parsed: { id?: unknown; custom_id?: unknown };
      try {
        parsed = JSON.parse(line) as typeof parsed;
      } catch {
        throw new Error(`--resume: ${path} line ${i + 1} is not a result line written by run-batch`);
      }
      const index = typeof parsed.id === 'string' ? INDEX.exec(parsed.id) : null;
      if (!index) throw new Error(`--resume: ${path} line ${i + 1} has no run-batch request id`);
      const at = Number(index[1]);
      if (byIndex.has(at)) throw new Error(`--resume: request ${at} is written twice (${path} line ${i + 1})`);
      byIndex.set(at, typeof parsed.custom_id === 'string' ? parsed.custom_id : null);
    });
  }
  const done = byIndex.size;
  const customIds: (string | null)[] = [];
  for (let i = 0; i < done; i++) {
    if (!byIndex.has(i)) throw new Error(`--resume: the files hold ${done} results but not request ${i}; they were not written by one run-batch of this input`);
    customIds.push(byIndex.get(i)!);
  }
  return { done, customIds };
}
