import 'reflect-metadata';
import { Logger, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { checkMaxmemoryPolicy, type RedisClient } from '@app/redis';
import { AppModule } from './app.module';
import { requireKeyMiddleware } from './auth/express-key-middleware';
import { KeyAuthenticator } from './auth/key-authenticator';
import { ApiConfigError, loadApiConfig, type ApiConfig } from './config/api-config';
import { mountDashboard } from './dashboard';
import { ApiExceptionFilter } from './http/api-exception.filter';
import { MULTIPART_ENVELOPE_BYTES } from './files/upload-budget';
import { jsonBodyForAuthenticated, refuseCrossSiteWrites, refuseOversizedBodies, requireJsonBodies } from './http/request-guards';
import { ApiLogger } from './http/api-logger';
import { REDIS } from './infra/infra.module';
import { MetricsService } from './ops/metrics.service';

const logger = new Logger('falconq-api');

function mountDocs(app: INestApplication, config: ApiConfig): void {
  if (!config.openRoutes.has('docs')) {
    const requireKey = requireKeyMiddleware(app.get(KeyAuthenticator), { adminOnly: false, realm: 'falconq docs' });
    // Swagger serves the UI under /docs and the document beside it at /docs-json and /docs-yaml.
    for (const path of ['/docs', '/docs-json', '/docs-yaml']) app.use(path, requireKey);
  }
  const document = SwaggerModule.createDocument(app, new DocumentBuilder()
    .setTitle('falconq')
    .setDescription('Batch and online text generation with Falcon: OpenAI-compatible files, batches and completions, plus native batches.')
    .setVersion('0.1.0')
    // An opaque API key (FALCONQ_API_KEYS), sent as a bearer token: not a JWT.
    .addBearerAuth({ type: 'http', scheme: 'bearer', bearerFormat: 'API key', description: 'Authorization: Bearer <key>, a key of FALCONQ_API_KEYS or FALCONQ_ADMIN_KEYS' })
    .build());
  SwaggerModule.setup('docs', app, document);
}

function timeRequests(app: INestApplication): void {
  const metrics = app.get(MetricsService);
  app.use((request: Request, response: Response, next: NextFunction) => {
    const stop = metrics.httpDuration.startTimer();
    response.on('finish', () => {
      // The matched route pattern, never the raw path (ids would explode the label set).
      const route = (request.route?.path as string | undefined) ?? (request.baseUrl || 'unmatched');
      stop({ method: request.method, route, status: String(response.statusCode) });
    });
    next();
  });
}

async function refuseEvictingRedis(app: INestApplication): Promise<void> {
  const check = await checkMaxmemoryPolicy(app.get<RedisClient>(REDIS));
  if (check.ok === 'unknown') logger.warn(check.reason);
  else if (!check.ok) throw new ApiConfigError(check.reason);
}

async function bootstrap(): Promise<void> {
  let config: ApiConfig;
  try {
    config = loadApiConfig();
  } catch (error) {
    console.error(`falconq api: ${(error as Error).message}`);
    process.exit(2);
  }
  if (config.keys.size === 0) {
    logger.warn('!!! No API keys configured (FALCONQ_API_KEYS / FALCONQ_ADMIN_KEYS): every route, the dashboard included, is OPEN to anyone who can reach this port. Set keys before exposing the service. !!!');
  }
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forConfig(config), { bodyParser: false, logger: new ApiLogger(config.logLevel) });
  app.set('trust proxy', 'loopback');
  // Before any body is read: cross-site writes, bodies that are not JSON, and (in the parser) callers without a key.
  app.use(refuseCrossSiteWrites());
  app.use(requireJsonBodies({ multipartPaths: ['/v1/files'] }));
  app.use(refuseOversizedBodies({
    defaultLimit: config.limits.maxBodyBytes,
    limitByPath: { '/v1/files': config.limits.maxFileBytes + MULTIPART_ENVELOPE_BYTES },
    describe: (path) => path === '/v1/files'
      ? `Upload is larger than FALCONQ_MAX_FILE_BYTES (${config.limits.maxFileBytes} bytes)`
      : `Request body is larger than FALCONQ_MAX_BODY_BYTES (${config.limits.maxBodyBytes} bytes)`,
  }));
  app.use(jsonBodyForAuthenticated(app.get(KeyAuthenticator), config.limits.maxBodyBytes, { unparsedPaths: ['/batches', '/v1/completions', '/v1/chat/completions'] }));
  app.useGlobalFilters(new ApiExceptionFilter(config.limits));
  app.enableShutdownHooks();
  await refuseEvictingRedis(app);
  timeRequests(app);
  mountDashboard(app);
  mountDocs(app, config);
  const server = await app.listen(config.port, config.host);
  // Keep-alive sockets would hold shutdown open; in-flight requests still finish (server.close waits for them).
  server.keepAliveTimeout = 5_000;
  logger.log(`listening on http://${config.host}:${config.port} (model ${config.modelDir}, prefix ${config.prefix})`);
}

bootstrap().catch((error: unknown) => {
  console.error(`falconq api: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
