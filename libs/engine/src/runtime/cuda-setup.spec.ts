import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkLibraries, CUDA_13_LIBRARIES, CUDA_PROVIDER_FILE, CudaSetupError, cudaReadiness, installCuda13Provider, type LibraryFacts, SHARED_PROVIDER_FILE } from './cuda-setup';

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

/** A tarball laid out like the npm package (package/Plugins/Linux/x64/<libs>), with the given file contents. */
function fakePackage(dir: string, contents: Record<string, string>): string {
  const lib = path.join(dir, 'src', 'package', 'Plugins', 'Linux', 'x64');
  fs.mkdirSync(lib, { recursive: true });
  for (const [file, text] of Object.entries(contents)) fs.writeFileSync(path.join(lib, file), text);
  const tarball = path.join(dir, 'provider.tgz');
  execFileSync('tar', ['-czf', tarball, '-C', path.join(dir, 'src'), 'package']);
  return tarball;
}

function facts(present: Record<string, string[]> = {}, cached: string[] = [], loaderDirs: string[] = []): LibraryFacts {
  return { loaderDirs, cached: new Set(cached), exists: (file) => (present[path.dirname(file)] ?? []).includes(path.basename(file)) };
}

describe('falconq setup cuda: installing the provider', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-cuda-spec-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const contents = { [CUDA_PROVIDER_FILE]: 'cuda provider bytes', [SHARED_PROVIDER_FILE]: 'shared provider bytes' };
  const hashes = { [CUDA_PROVIDER_FILE]: sha256(contents[CUDA_PROVIDER_FILE]), [SHARED_PROVIDER_FILE]: sha256(contents[SHARED_PROVIDER_FILE]) };

  it('installs both libraries next to the binding when their sha256 match', () => {
    const target = path.join(dir, 'bin');
    const installed = installCuda13Provider({ tarball: fakePackage(dir, contents), targetDir: target, sha256: hashes });
    expect(installed.map((file) => path.basename(file)).sort()).toEqual([CUDA_PROVIDER_FILE, SHARED_PROVIDER_FILE].sort());
    expect(fs.readFileSync(path.join(target, CUDA_PROVIDER_FILE), 'utf8')).toBe(contents[CUDA_PROVIDER_FILE]);
    expect(fs.readdirSync(target).sort()).toEqual([CUDA_PROVIDER_FILE, SHARED_PROVIDER_FILE].sort());
  });

  it('refuses a library whose sha256 differs and writes nothing', () => {
    const target = path.join(dir, 'bin');
    const tampered = fakePackage(dir, { ...contents, [CUDA_PROVIDER_FILE]: 'something else' });
    expect(() => installCuda13Provider({ tarball: tampered, targetDir: target, sha256: hashes })).toThrow(CudaSetupError);
    expect(() => installCuda13Provider({ tarball: tampered, targetDir: target, sha256: hashes })).toThrow(/libonnxruntime_providers_cuda.so .* has sha256 .* refusing/);
    expect(fs.existsSync(target)).toBe(false);
  });

  it('refuses the pinned hashes for anything but the real package, and a tarball without the package layout', () => {
    expect(() => installCuda13Provider({ tarball: fakePackage(dir, contents), targetDir: path.join(dir, 'bin') })).toThrow(/expected 56cf3254/);
    const other = path.join(dir, 'other.tgz');
    fs.writeFileSync(path.join(dir, 'readme.txt'), 'x');
    execFileSync('tar', ['-czf', other, '-C', dir, 'readme.txt']);
    expect(() => installCuda13Provider({ tarball: other, targetDir: path.join(dir, 'bin'), sha256: hashes })).toThrow(/not com\.github\.asus4\.onnxruntime\.linux-x64-gpu@0\.4\.9's tarball/);
  });
});

describe('falconq setup cuda: what the host lacks', () => {
  it('names every library a host without CUDA is missing, with its fix', () => {
    const checks = checkLibraries(CUDA_13_LIBRARIES, facts());
    expect(checks.every((check) => !check.found)).toBe(true);
    expect(checks.find((check) => check.name === 'libcuda.so.1')?.fix).toMatch(/NVIDIA driver/);
    expect(checks.find((check) => check.name === 'libcublas.so.13')?.fix).toMatch(/CUDA 13 cuBLAS/);
  });

  it('finds libraries on the loader path or in its cache, and points LD_LIBRARY_PATH at a toolkit directory that has them', () => {
    const toolkit = '/usr/local/cuda/targets/x86_64-linux/lib';
    const checks = checkLibraries(CUDA_13_LIBRARIES, facts({ [toolkit]: ['libcudart.so.13', 'libcublas.so.13'], '/opt/cuda': ['libcurand.so.10'] }, ['libcuda.so.1', 'libcublasLt.so.13'], ['/opt/cuda']));
    const byName = Object.fromEntries(checks.map((check) => [check.name, check]));
    expect(byName['libcuda.so.1'].found).toBe(true);
    expect(byName['libcurand.so.10'].found).toBe(true);
    expect(byName['libcudart.so.13']).toMatchObject({ found: false, foundIn: toolkit });
    expect(byName['libcudart.so.13'].fix).toBe(`export LD_LIBRARY_PATH=${toolkit}\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}`);
  });

  it('readiness: a wrong onnxruntime-node version, no provider and no CUDA are each a problem with a fix', () => {
    const binding = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-binding-'));
    try {
      const readiness = cudaReadiness(facts(), binding, '1.30.0');
      expect(readiness.versionMatches).toBe(false);
      expect(readiness.providerInstalled).toBe(false);
      expect(readiness.problems.join('\n')).toMatch(/onnxruntime-node is 1\.30\.0.*built for 1\.29\.0/);
      expect(readiness.problems.join('\n')).toMatch(/CUDA provider is not installed.*run falconq setup cuda/);
      expect(readiness.problems.join('\n')).toMatch(/no CUDA runtime found/);
      expect(readiness.problems.join('\n')).toMatch(/libcuda\.so\.1 is not on the loader's path/);
    } finally {
      fs.rmSync(binding, { recursive: true, force: true });
    }
  });
});
