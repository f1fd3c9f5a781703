import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelInputError } from './errors';

export const MANIFEST_FILE = 'falconq.json';

/**
 * Builds a model directory atomically: everything is written into `<out>.partial-<pid>` next to the target and
 * renamed into place at the end, so an interrupted build never leaves a directory that looks complete.
 */
export async function buildDirectoryAtomically<T>(out: string, force: boolean, build: (partialDir: string) => Promise<T>): Promise<T> {
  const target = path.resolve(out);
  assertWritableTarget(target, force);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  removeStalePartials(target);
  const partial = `${target}.partial-${process.pid}`;
  fs.mkdirSync(partial);
  try {
    const result = await build(partial);
    replaceDirectory(partial, target);
    return result;
  } catch (error) {
    fs.rmSync(partial, { recursive: true, force: true });
    throw error;
  }
}

/** A build killed before it could clean up (SIGKILL, power loss) leaves `<out>.partial-<pid>`: remove dead ones. */
function removeStalePartials(target: string): void {
  const prefix = `${path.basename(target)}.partial-`;
  for (const name of fs.readdirSync(path.dirname(target))) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || (pid !== process.pid && isRunning(pid))) continue;
    fs.rmSync(path.join(path.dirname(target), name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function assertWritableTarget(target: string, force: boolean): void {
  if (!fs.existsSync(target)) return;
  if (!fs.statSync(target).isDirectory()) throw new ModelInputError(`${target} exists and is not a directory`);
  if (force) return;
  if (fs.existsSync(path.join(target, MANIFEST_FILE))) {
    throw new ModelInputError(`${target} already holds a converted model; pass --force to replace it`);
  }
  if (fs.readdirSync(target).length > 0) throw new ModelInputError(`${target} exists and is not empty; pass --force to replace it`);
}

function replaceDirectory(partial: string, target: string): void {
  if (!fs.existsSync(target)) {
    fs.renameSync(partial, target);
    return;
  }
  const old = `${target}.old-${process.pid}`;
  fs.rmSync(old, { recursive: true, force: true });
  fs.renameSync(target, old);
  fs.renameSync(partial, target);
  fs.rmSync(old, { recursive: true, force: true });
}

export function directorySize(dir: string): number {
  return fs.readdirSync(dir).reduce((total, name) => total + fs.statSync(path.join(dir, name)).size, 0);
}
