import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelInputError } from './errors';
import type { ModelManifest } from './manifest';

// Every file of a model directory against what the converter recorded in the manifest: its size and sha256.
// `falconq model verify` hashes everything; engine start hashes only the small files (the graph, the tokenizer)
// and checks the sizes of the rest, so a truncated or missing file stops it with "re-convert" and not an
// onnxruntime error, without reading gigabytes of weights at every start.

export interface FileChecksum {
  bytes: number;
  sha256: string;
}

/** File name -> size and sha256, for every file of the directory but the manifest. */
export type ModelChecksums = Record<string, FileChecksum>;

export interface VerifyOptions {
  /** 'all': hash every file. 'small': hash files up to `smallBytes`, check only the size of larger ones. */
  hash: 'all' | 'small';
  smallBytes?: number;
}

export interface FileVerdict {
  file: string;
  ok: boolean;
  /** What is wrong, in words; absent when ok. */
  problem?: string;
  /** Whether the content was hashed (or only the size checked). */
  hashed: boolean;
}

export interface VerifyReport {
  dir: string;
  files: FileVerdict[];
  ok: boolean;
  /** The manifest predates checksums: only the presence of its files could be checked. */
  legacy: boolean;
}

const SMALL_BYTES = 64 * 1024 * 1024;

export function sha256File(file: string): string {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(4 * 1024 * 1024);
  const fd = fs.openSync(file, 'r');
  try {
    for (let read = fs.readSync(fd, buffer); read > 0; read = fs.readSync(fd, buffer)) hash.update(buffer.subarray(0, read));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Checksums of the files in `dir` (the converter calls it before writing the manifest). */
export function checksumModelFiles(dir: string, except: string[]): ModelChecksums {
  const checksums: ModelChecksums = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, name);
    if (except.includes(name) || !fs.statSync(file).isFile()) continue;
    checksums[name] = { bytes: fs.statSync(file).size, sha256: sha256File(file) };
  }
  return checksums;
}

function verdictOf(dir: string, name: string, expected: FileChecksum, options: VerifyOptions): FileVerdict {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return { file: name, ok: false, hashed: false, problem: 'is missing' };
  const bytes = fs.statSync(file).size;
  if (bytes !== expected.bytes) {
    const how = bytes < expected.bytes ? 'truncated' : 'longer than written';
    return { file: name, ok: false, hashed: false, problem: `has ${bytes} bytes, the manifest says ${expected.bytes} (${how})` };
  }
  const hashed = options.hash === 'all' || bytes <= (options.smallBytes ?? SMALL_BYTES);
  if (hashed && sha256File(file) !== expected.sha256) return { file: name, ok: false, hashed, problem: 'has the right size but its sha256 differs from the manifest (the content changed)' };
  return { file: name, ok: true, hashed };
}

export function verifyModelDirectory(dir: string, manifest: ModelManifest, options: VerifyOptions): VerifyReport {
  if (!manifest.checksums) {
    const listed = Object.values(manifest.files).filter((name): name is string => typeof name === 'string');
    const files = listed.map((name): FileVerdict => (fs.existsSync(path.join(dir, name))
      ? { file: name, ok: true, hashed: false }
      : { file: name, ok: false, hashed: false, problem: 'is missing' }));
    return { dir, files, ok: files.every((f) => f.ok), legacy: true };
  }
  const files = Object.entries(manifest.checksums).map(([name, expected]) => verdictOf(dir, name, expected, options));
  return { dir, files, ok: files.every((f) => f.ok), legacy: false };
}

/** A model directory whose files do not match its manifest. */
export class DamagedModelError extends ModelInputError {
  constructor(readonly report: VerifyReport) {
    const problems = report.files.filter((f) => !f.ok).map((f) => `${f.file} ${f.problem}`);
    super(`${report.dir} is damaged: ${problems.join('; ')}. Re-convert the model (falconq model convert ... --force), or copy it again.`);
  }
}

/** Throws DamagedModelError unless every file matches the manifest. */
export function assertModelIntact(dir: string, manifest: ModelManifest, options: VerifyOptions = { hash: 'small' }): void {
  const report = verifyModelDirectory(dir, manifest, options);
  if (!report.ok) throw new DamagedModelError(report);
}
