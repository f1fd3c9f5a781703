import { createBullBoard } from '@bull-board/api';
import { ExpressAdapter } from '@bull-board/express';
import type { INestApplication } from '@nestjs/common';
import { bullBoardAdapters } from '@app/queue';
import { requireKeyMiddleware } from './auth/express-key-middleware';
import { KeyAuthenticator } from './auth/key-authenticator';
import { JOB_QUEUE, type JobQueue } from './infra/job-queue';

export const DASHBOARD_PATH = '/dashboard';

/**
 * Bull Board (UI, its JSON API and its job actions) at /dashboard, for admin keys only. A browser can log in with
 * HTTP Basic (any user name, the key as password); scripts send the bearer key.
 */
export function mountDashboard(app: INestApplication): void {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({ queues: bullBoardAdapters(app.get<JobQueue>(JOB_QUEUE)), serverAdapter, options: { uiConfig: { boardTitle: 'falconq' } } });
  app.use(DASHBOARD_PATH, requireKeyMiddleware(app.get(KeyAuthenticator), { adminOnly: true, realm: 'falconq dashboard' }), serverAdapter.getRouter());
}
