import { Module, type DynamicModule } from '@nestjs/common';
import { WORKER_CONFIG, type WorkerConfig } from './config/worker-config';
import { startWorkerEngine } from './worker-engine';
import { WORKER_ENGINE, WORKER_STORE } from './ports';
import { RedisWorkerStore } from './redis-worker-store';
import { WorkerRuntime } from './worker-runtime';

@Module({})
export class WorkerModule {
  static forConfig(config: WorkerConfig): DynamicModule {
    return {
      module: WorkerModule,
      providers: [
        { provide: WORKER_CONFIG, useValue: config },
        { provide: WORKER_STORE, useFactory: () => new RedisWorkerStore(config) },
        { provide: WORKER_ENGINE, useFactory: () => startWorkerEngine(config) },
        WorkerRuntime,
      ],
    };
  }
}
