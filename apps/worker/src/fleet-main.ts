import 'reflect-metadata';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Logger } from '@nestjs/common';
import { FleetConfigError, loadFleetConfig } from './config/fleet-config';
import { CONFIG_ERROR_EXIT } from './config/worker-config';
import { WorkerFleet } from './fleet/worker-fleet';

// `falconq worker --gpus 0,1 --per-gpu 2 ...` runs this: a supervisor of worker processes (main.js), one per slot.

function main(): void {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        gpus: { type: 'string' },
        'per-gpu': { type: 'string' },
        ep: { type: 'string' },
        slots: { type: 'string' },
        model: { type: 'string' },
        redis: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`falconq worker: ${(error as Error).message}\n`);
    process.exit(CONFIG_ERROR_EXIT);
  }
  let fleet: WorkerFleet;
  try {
    const config = loadFleetConfig(
      { gpus: values.gpus, perGpu: values['per-gpu'], ep: values.ep, slots: values.slots, model: values.model, redis: values.redis },
      undefined, // the environment: read by the config module
      hostname(),
    );
    fleet = new WorkerFleet(config, join(__dirname, 'main.js'), () => {
      new Logger('WorkerFleet').error('every worker refused its configuration (its reason is above): stopping');
      process.exit(CONFIG_ERROR_EXIT);
    });
  } catch (error) {
    if (error instanceof FleetConfigError) {
      process.stderr.write(`falconq worker: ${error.message}\n`);
      process.exit(CONFIG_ERROR_EXIT);
    }
    throw error;
  }
  const logger = new Logger('WorkerFleet');
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal}: stopping every worker (each drains its in-flight prompts)`);
    void fleet.stop('SIGTERM').then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  fleet.start();
}

main();
