// `falconq setup cuda`: puts the CUDA execution provider that matches the pinned onnxruntime-node next to its
// binding, and says which host libraries it still lacks. The provider is not in onnxruntime-node's npm package:
// - CUDA 13 hosts: Microsoft's ORT 1.29.0 CUDA 13 build, repackaged on npm (CUDA_13_PROVIDER_PACKAGE), checked by
//   sha256 and written atomically;
// - CUDA 12 hosts: onnxruntime-node's own installer (its NuGet feed must be reachable).
// Pure file work (no onnxruntime import), so it is tested on machines without a GPU.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The onnxruntime-node version the providers below are built for (package.json pins it). */
export const CUDA_PROVIDER_ORT_VERSION = '1.29.0';
export const CUDA_13_PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
const PACKAGE_DIR = 'package/Plugins/Linux/x64';

export const CUDA_PROVIDER_FILE = 'libonnxruntime_providers_cuda.so';
export const SHARED_PROVIDER_FILE = 'libonnxruntime_providers_shared.so';

/** sha256 of the CUDA 13 package's files. */
export const CUDA_13_PROVIDER_SHA256: Record<string, string> = {
  [CUDA_PROVIDER_FILE]: '56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037',
  [SHARED_PROVIDER_FILE]: 'c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772',
};

/** What the CUDA 13 provider loads (readelf -d), and where each comes from. */
export const CUDA_13_LIBRARIES: { name: string; from: string }[] = [
  { name: 'libcudart.so.13', from: 'the CUDA 13 runtime' },
  { name: 'libcublas.so.13', from: 'CUDA 13 cuBLAS' },
  { name: 'libcublasLt.so.13', from: 'CUDA 13 cuBLAS' },
  { name: 'libcurand.so.10', from: 'CUDA 13 cuRAND' },
  { name: 'libcuda.so.1', from: 'the NVIDIA driver' },
];
export const CUDA_12_LIBRARIES: { name: string; from: string }[] = [
  { name: 'libcudart.so.12', from: 'the CUDA 12 runtime' },
  { name: 'libcublas.so.12', from: 'CUDA 12 cuBLAS' },
  { name: 'libcublasLt.so.12', from: 'CUDA 12 cuBLAS' },
  { name: 'libcurand.so.10', from: 'CUDA 12 cuRAND' },
  { name: 'libcudnn.so.9', from: 'cuDNN 9' },
  { name: 'libcuda.so.1', from: 'the NVIDIA driver' },
];

/** Where CUDA toolkits put their libraries when they are not on the loader's path. */
const TOOLKIT_LIBRARY_DIRS = ['/usr/local/cuda/targets/x86_64-linux/lib', '/usr/local/cuda/lib64', '/usr/lib/x86_64-linux-gnu', '/usr/local/nvidia/lib64'];

export interface LibraryFacts {
  /** Directories the dynamic loader searches: LD_LIBRARY_PATH, then ldconfig's cache. */
  loaderDirs: string[];
  /** Libraries in ldconfig's cache (names). */
  cached: Set<string>;
  exists(file: string): boolean;
}

/** `ldLibraryPath`: the LD_LIBRARY_PATH the caller's config read. */
export function hostLibraryFacts(ldLibraryPath: string | undefined): LibraryFacts {
  const loaderDirs = (ldLibraryPath ?? '').split(':').filter(Boolean);
  const cached = new Set<string>();
  try {
    const listing = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const line of listing.split('\n')) {
      const name = /^\s*(\S+)\s/.exec(line)?.[1];
      if (name) cached.add(name);
    }
  } catch {
    // no ldconfig: only LD_LIBRARY_PATH counts
  }
  return { loaderDirs, cached, exists: (file) => fs.existsSync(file) };
}

export interface LibraryCheck {
  name: string;
  found: boolean;
  /** Missing from the loader's path but present in a toolkit directory. */
  foundIn?: string;
  fix?: string;
}

/** Which of `libraries` the dynamic loader would find, and the one-line fix for each it would not. */
export function checkLibraries(libraries: { name: string; from: string }[], facts: LibraryFacts): LibraryCheck[] {
  return libraries.map(({ name, from }) => {
    if (facts.cached.has(name) || facts.loaderDirs.some((dir) => facts.exists(path.join(dir, name)))) return { name, found: true };
    const foundIn = TOOLKIT_LIBRARY_DIRS.find((dir) => facts.exists(path.join(dir, name)));
    if (foundIn) return { name, found: false, foundIn, fix: `export LD_LIBRARY_PATH=${foundIn}\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}` };
    const fix = name === 'libcuda.so.1'
      ? 'install the NVIDIA driver (it provides libcuda.so.1), or run the container with the NVIDIA runtime (--gpus all)'
      : `install ${from} (e.g. the CUDA toolkit's runtime libraries) and put its lib directory on LD_LIBRARY_PATH`;
    return { name, found: false, fix };
  });
}

/** CUDA major version of the host: from the runtime library the loader (or a toolkit directory) has. */
export function detectCudaMajor(facts: LibraryFacts): 12 | 13 | undefined {
  const has = (name: string) => checkLibraries([{ name, from: '' }], facts)[0];
  for (const major of [13, 12] as const) {
    const check = has(`libcudart.so.${major}`);
    if (check.found || check.foundIn) return major;
  }
  return undefined;
}

/** The directory onnxruntime-node loads providers from (next to libonnxruntime.so.1). */
export function onnxruntimeBindingDir(): string {
  const root = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(root, 'bin', 'napi-v6', process.platform, process.arch);
}

export function installedOnnxruntimeVersion(): string {
  return (JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
}

export class CudaSetupError extends Error {}

export interface InstallFromPackageOptions {
  /** The npm package's tarball (.tgz); default: `npm pack` it from the registry into a temporary directory. */
  tarball?: string;
  /** Where to install (default: onnxruntime-node's binding directory). */
  targetDir?: string;
  /** Expected sha256 per file (default: the pinned CUDA 13 hashes). */
  sha256?: Record<string, string>;
}

function sha256Of(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/**
 * Installs the CUDA 13 provider from the npm package: extracts its two libraries, checks their sha256, then moves
 * them next to the binding (each written to a temporary name and renamed, so a failed run leaves nothing half
 * written). Returns the installed paths.
 */
export function installCuda13Provider(options: InstallFromPackageOptions = {}): string[] {
  const targetDir = options.targetDir ?? onnxruntimeBindingDir();
  const expected = options.sha256 ?? CUDA_13_PROVIDER_SHA256;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-cuda-'));
  try {
    let tarball = options.tarball;
    if (!tarball) {
      const packed = execFileSync('npm', ['pack', '--silent', CUDA_13_PROVIDER_PACKAGE, '--pack-destination', work], { encoding: 'utf8' }).trim().split('\n').pop();
      tarball = path.join(work, packed ?? '');
    }
    if (!fs.existsSync(tarball)) throw new CudaSetupError(`${tarball}: no such file`);
    const files = Object.keys(expected);
    try {
      execFileSync('tar', ['-xzf', tarball, '-C', work, ...files.map((file) => `${PACKAGE_DIR}/${file}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      throw new CudaSetupError(`${tarball} is not ${CUDA_13_PROVIDER_PACKAGE}'s tarball: ${files.map((f) => `${PACKAGE_DIR}/${f}`).join(', ')} not found (${String((error as { stderr?: Buffer }).stderr ?? error).trim()})`);
    }
    for (const file of files) {
      const actual = sha256Of(path.join(work, PACKAGE_DIR, file));
      if (actual !== expected[file]) {
        throw new CudaSetupError(`${file} from ${path.basename(tarball)} has sha256 ${actual}, expected ${expected[file]}: refusing to install it`);
      }
    }
    fs.mkdirSync(targetDir, { recursive: true });
    return files.map((file) => {
      const destination = path.join(targetDir, file);
      const temporary = `${destination}.partial-${process.pid}`;
      fs.copyFileSync(path.join(work, PACKAGE_DIR, file), temporary);
      fs.renameSync(temporary, destination);
      return destination;
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** CUDA 12 hosts: onnxruntime-node's own installer fetches the matching provider from its NuGet feed. */
export function installCuda12Provider(): void {
  const script = path.join(path.dirname(require.resolve('onnxruntime-node/package.json')), 'script', 'install');
  execFileSync(process.execPath, [script, '--onnxruntime-node-install=cuda12'], { stdio: 'inherit' });
}

export interface CudaReadiness {
  ortVersion: string;
  versionMatches: boolean;
  providerInstalled: boolean;
  providerMatchesPin?: boolean;
  cudaMajor?: 12 | 13;
  libraries: LibraryCheck[];
  /** One line per problem, each with its fix; empty when the CUDA EP should load. */
  problems: string[];
}

/** What stands between this host and a CUDA session, with the fix for each. */
export function cudaReadiness(facts: LibraryFacts, bindingDir = onnxruntimeBindingDir(), ortVersion = installedOnnxruntimeVersion()): CudaReadiness {
  const problems: string[] = [];
  const versionMatches = ortVersion === CUDA_PROVIDER_ORT_VERSION;
  if (!versionMatches) {
    problems.push(`onnxruntime-node is ${ortVersion}, but the CUDA providers falconq installs are built for ${CUDA_PROVIDER_ORT_VERSION} (a provider loads only into its own version): npm ci with falconq's package-lock.json`);
  }
  const providerPath = path.join(bindingDir, CUDA_PROVIDER_FILE);
  const providerInstalled = fs.existsSync(providerPath);
  let providerMatchesPin: boolean | undefined;
  if (providerInstalled && fs.statSync(providerPath).size === 0) problems.push(`${providerPath} is empty: run falconq setup cuda again`);
  if (!providerInstalled) problems.push(`the CUDA provider is not installed (${providerPath} is missing): run falconq setup cuda`);
  const cudaMajor = detectCudaMajor(facts);
  if (providerInstalled && cudaMajor === 13) providerMatchesPin = sha256Of(providerPath) === CUDA_13_PROVIDER_SHA256[CUDA_PROVIDER_FILE];
  if (providerMatchesPin === false) problems.push(`${providerPath} is not the CUDA 13 build falconq pins (sha256 differs): run falconq setup cuda to replace it`);
  const libraries = checkLibraries(cudaMajor === 12 ? CUDA_12_LIBRARIES : CUDA_13_LIBRARIES, facts);
  if (cudaMajor === undefined) problems.push('no CUDA runtime found (libcudart.so.13 or .12): install the CUDA 13 (or 12) runtime libraries');
  for (const check of libraries) if (!check.found) problems.push(`${check.name} is not on the loader's path: ${check.fix}`);
  return { ortVersion, versionMatches, providerInstalled, providerMatchesPin, cudaMajor, libraries, problems };
}
