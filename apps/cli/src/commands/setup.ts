import type { Command } from 'commander';
import { readCudaHostConfig } from '../config/cuda.config';
import { CUDA_13_PROVIDER_PACKAGE, CudaSetupError, cudaReadiness, detectCudaMajor, hostLibraryFacts, installCuda12Provider, installCuda13Provider } from '@app/engine';

interface SetupCudaFlags {
  from?: string;
  cuda?: 'auto' | '12' | '13';
  check?: boolean;
  installOnly?: boolean;
}

export function registerSetupCommands(program: Command): void {
  const setup = program.command('setup').description('install optional runtime parts');
  setup
    .command('cuda')
    .description(`install the CUDA execution provider next to onnxruntime-node (CUDA 13: from ${CUDA_13_PROVIDER_PACKAGE}; CUDA 12: onnxruntime-node's installer), then check the host's CUDA libraries`)
    .option('--from <tgz>', `install from this local tarball of ${CUDA_13_PROVIDER_PACKAGE} instead of fetching it with npm`)
    .option('--cuda <major>', 'the host CUDA major version: auto (from libcudart), 12 or 13', 'auto')
    .option('--check', 'only report what is missing, install nothing')
    .option('--install-only', 'install, skip the host library check (image builds: the driver comes at run time)')
    .action((flags: SetupCudaFlags) => {
      const code = setupCuda(flags, (line) => process.stdout.write(`${line}\n`));
      process.exitCode = code;
    });
}

/** Returns the exit code: 0 when the CUDA EP should load, 1 otherwise (every problem printed with its fix). */
export function setupCuda(flags: SetupCudaFlags, print: (line: string) => void): number {
  if (!['auto', '12', '13', undefined].includes(flags.cuda)) throw new Error(`--cuda ${String(flags.cuda)}: expected auto, 12 or 13`);
  const facts = hostLibraryFacts(readCudaHostConfig().ldLibraryPath);
  const major = flags.cuda && flags.cuda !== 'auto' ? (Number(flags.cuda) as 12 | 13) : detectCudaMajor(facts) ?? (flags.from ? 13 : undefined);
  if (!flags.check) {
    if (major === 12) {
      print('CUDA 12: running onnxruntime-node\'s installer (--onnxruntime-node-install=cuda12)');
      installCuda12Provider();
    } else if (major === 13) {
      try {
        const installed = installCuda13Provider({ tarball: flags.from });
        for (const file of installed) print(`installed ${file} (sha256 checked)`);
        if (flags.installOnly) return 0;
      } catch (error) {
        if (error instanceof CudaSetupError) {
          print(`falconq setup cuda: ${error.message}`);
          return 1;
        }
        throw error;
      }
    } else {
      print('falconq setup cuda: no CUDA runtime library found (libcudart.so.13 or libcudart.so.12); pass --cuda 13 or --cuda 12 to install anyway');
    }
  }
  const readiness = cudaReadiness(facts);
  print(`onnxruntime-node ${readiness.ortVersion}; CUDA ${readiness.cudaMajor ?? 'not found'}; provider ${readiness.providerInstalled ? 'installed' : 'missing'}`);
  for (const library of readiness.libraries) print(`  ${library.found ? 'ok     ' : 'missing'} ${library.name}${library.found ? '' : ` -> ${library.fix}`}`);
  if (readiness.problems.length === 0) {
    print('ready: --ep cuda (or FALCONQ_EP=auto) will use the GPU');
    return 0;
  }
  print('not ready:');
  for (const problem of readiness.problems) print(`  - ${problem}`);
  return 1;
}
