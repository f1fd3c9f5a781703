import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeyGuard } from './auth/api-key.guard';
import { KeyAuthenticator } from './auth/key-authenticator';
import { BatchLifecycleService } from './batches/batch-lifecycle.service';
import { BatchSubmissionService } from './batches/batch-submission.service';
import { NativeBatchesController } from './batches/native-batches.controller';
import { OpenAiBatchesController } from './batches/openai-batches.controller';
import { API_CONFIG, type ApiConfig } from './config/api-config';
import { BatchEventsController } from './events/batch-events.controller';
import { FilesController } from './files/files.controller';
import { FilesService } from './files/files.service';
import { UploadBudget } from './files/upload-budget';
import { InFlightRequests } from './http/in-flight-requests';
import { RequestChecker } from './checks/request-checker';
import { InfraModule } from './infra/infra.module';
import { RedisAvailability } from './infra/redis-availability';
import { OnlineController } from './online/online.controller';
import { OnlineService } from './online/online.service';
import { MetricsService } from './ops/metrics.service';
import { OpsController } from './ops/ops.controller';
import { WebhookDispatcher } from './webhooks/webhook-dispatcher.service';
import { BatchPageController } from './ui/batch-page.controller';

@Module({})
export class AppModule {
  static forConfig(config: ApiConfig): DynamicModule {
    const configModule: DynamicModule = {
      module: class ApiConfigModule {},
      global: true,
      providers: [{ provide: API_CONFIG, useValue: config }],
      exports: [API_CONFIG],
    };
    return {
      module: AppModule,
      imports: [configModule, InfraModule],
      controllers: [FilesController, OpenAiBatchesController, NativeBatchesController, BatchEventsController, OnlineController, OpsController, BatchPageController],
      providers: [
        KeyAuthenticator,
        RedisAvailability,
        RequestChecker,
        InFlightRequests,
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        BatchSubmissionService,
        BatchLifecycleService,
        FilesService,
        UploadBudget,
        OnlineService,
        MetricsService,
        WebhookDispatcher,
      ],
      exports: [KeyAuthenticator, MetricsService],
    };
  }
}
