import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';

// `falconq worker`: GPU worker processes for this machine. The command starts the worker app's fleet supervisor
// (a separate process, like the api: the CLI does not import other apps) and passes signals on to it.

interface WorkerFlags {
  gpus?: string;
  perGpu?: string;
  ep?: string;
  slots?: string;
  model?: string;
  redis?: string;
}

const FLEET_ENTRY = join(__dirname, '..', '..', '..', 'worker', 'src', 'fleet-main.js');

export function registerServiceCommands(program: Command): void {
  program
    .command('worker')
    .description('run GPU worker processes: one per device and slot, restarted if they die; workers on other machines join through the same Redis')
    .option('--gpus <ids>', 'devices to use, e.g. 0,1 (env FALCONQ_GPUS; default 0)')
    .option('--per-gpu <n>', 'worker processes per device (env FALCONQ_PER_GPU; default 1)')
    .option('--ep <name>', 'execution provider: cpu, webgpu or cuda (env FALCONQ_EP; default cpu)')
    .option('--slots <n>', 'sequences each worker decodes together (env FALCONQ_SLOTS; default 16)')
    .option('--model <dir>', 'model directory (env MODEL_DIR)')
    .option('--redis <url>', 'Redis URL shared with the api (env REDIS_URL; default redis://127.0.0.1:6379)')
    .addHelpText('after', '\nOther settings come from the environment: FALCONQ_REDIS_PREFIX, FALCONQ_LOCK_MS, FALCONQ_SHUTDOWN_GRACE_MS, ... (docs/deploy.md).')
    .action(async (flags: WorkerFlags) => {
      process.exitCode = await runFleet(flags);
    });
}

function runFleet(flags: WorkerFlags): Promise<number> {
  if (!existsSync(FLEET_ENTRY)) throw new Error(`the worker is not built (${FLEET_ENTRY} is missing): run npm run build`);
  const args = [FLEET_ENTRY];
  const pass = (name: string, value?: string) => value !== undefined && args.push(`--${name}`, value);
  pass('gpus', flags.gpus);
  pass('per-gpu', flags.perGpu);
  pass('ep', flags.ep);
  pass('slots', flags.slots);
  pass('model', flags.model);
  pass('redis', flags.redis);
  const fleet = spawn(process.execPath, args, { stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => fleet.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  return new Promise((resolve) => {
    fleet.once('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}
