import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { failsAgainOnRestart } from '@app/engine';
import { CONFIG_ERROR_EXIT, WorkerConfigError, loadWorkerConfig, type WorkerConfig } from './config/worker-config';
import { WorkerModule } from './worker.module';

/** Time beyond the grace period for handing prompts back and closing the engine and connections. */
const SHUTDOWN_SLACK_MS = 15_000;

// A GPU worker process: one engine (one ORT session on one device) fed by one BullMQ consumer. No HTTP.

async function bootstrap(): Promise<void> {
  let config: WorkerConfig;
  try {
    config = loadWorkerConfig();
  } catch (error) {
    if (error instanceof WorkerConfigError) {
      process.stderr.write(`falconq worker: ${error.message}\n`);
      process.exit(CONFIG_ERROR_EXIT);
    }
    throw error;
  }
  // abortOnError false: a failed start reaches the handler below (which tells a configuration error apart) instead of
  // Nest exiting with code 1 itself.
  const app = await NestFactory.createApplicationContext(WorkerModule.forConfig(config), { logger: ['log', 'warn', 'error'], abortOnError: false });
  const logger = new Logger('Worker');
  let stoppingSince = 0;
  const stop = (signal: NodeJS.Signals) => {
    if (stoppingSince) {
      // Ctrl-C reaches this process and its supervisor (npm start, falconq worker) at once, and the supervisor then
      // sends SIGTERM: a signal within a second of the first is that echo, not a second Ctrl-C.
      if (Date.now() - stoppingSince < 1000) return;
      logger.warn(`${signal} again: exiting now; in-flight prompts come back through stalled-job recovery`);
      process.exit(1);
    }
    stoppingSince = Date.now();
    // Draining needs Redis; if it is unreachable, do not hang: the prompts still held come back by stall recovery.
    setTimeout(() => {
      logger.error(`shutdown did not finish within ${config.shutdownGraceMs + SHUTDOWN_SLACK_MS} ms (Redis unreachable?): exiting`);
      process.exit(1);
    }, config.shutdownGraceMs + SHUTDOWN_SLACK_MS).unref();
    logger.log(`${signal}: shutting down`);
    app.close().then(
      () => process.exit(0),
      (error: Error) => {
        logger.error(`shutdown failed: ${error.message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

bootstrap().catch((error: unknown) => {
  // An engine that cannot start with this configuration (bad option, not a model, damaged model, an execution
  // provider this installation lacks) exits like a bad variable does: the supervisor does not restart it. Anything
  // else (out of GPU memory, a provider that failed to load, Redis down) may pass.
  if (failsAgainOnRestart(error)) {
    process.stderr.write(`falconq worker: ${(error as Error).message}\n`);
    process.exit(CONFIG_ERROR_EXIT);
  }
  process.stderr.write(`falconq worker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
