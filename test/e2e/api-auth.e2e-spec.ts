// Auth matrix: every route without a key, with a wrong key and with another tenant's key gives 0 successes;
// the dashboard (UI, JSON API, job actions) needs an admin key. Positive controls prove the routes do work.
// Every call is recorded (route template x key kind -> status) in .tmp/reliability/api-auth.json for docs/reliability.md.
import { startApi, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { reportFigures } from '../support/figures';

const TENANT_A = 'tenant-a-key-0001';
const TENANT_B = 'tenant-b-key-0002';
const ADMIN = 'admin-key-0000003';
const WRONG = 'not-a-configured-key';

let redis: TestRedis;
let api: ApiProcess;
let fileId: string;
let batchId: string;
let nativeBatchId: string;

interface Route {
  method: string;
  path: () => string;
  body?: () => unknown;
  multipart?: boolean;
}

async function call(route: Route, key: string | null): Promise<Response> {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (route.multipart) return uploadFile(api.url, key, jsonl([{ custom_id: 'x', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'x' } }]));
  let body: string | undefined;
  if (route.body) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(route.body());
  }
  const controller = new AbortController();
  const response = await fetch(`${api.url}${route.path()}`, { method: route.method, headers, body, signal: controller.signal });
  // SSE answers stay open: read the status, then hang up.
  if (response.headers.get('content-type')?.includes('text/event-stream')) controller.abort();
  return response;
}

type KeyKind = 'none' | 'wrong' | 'other tenant' | 'tenant (not admin)' | 'owner' | 'admin';
interface Observation {
  route: string;
  key: KeyKind;
  status: number;
  note?: string;
}
const observed: Observation[] = [];

/** The route as documented: the ids this test created replaced by their names. */
function template(route: Route): string {
  return `${route.method} ${route.path()}`
    .replaceAll(nativeBatchId, '{native_batch_id}')
    .replaceAll(batchId, '{batch_id}')
    .replaceAll(fileId, '{file_id}');
}

function record(route: Route, key: KeyKind, status: number, note?: string): void {
  observed.push({ route: template(route), key, status, ...(note ? { note } : {}) });
}

beforeAll(async () => {
  redis = await startTestRedis();
  api = await startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${TENANT_A}:tenant-a,${TENANT_B}:tenant-b`, FALCONQ_ADMIN_KEYS: `${ADMIN}:ops`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_OPEN_ROUTES: '' },
  });
  const upload = await uploadFile(api.url, TENANT_A, jsonl([{ custom_id: 'a', method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: 'Hi', max_tokens: 2 } }]));
  fileId = ((await upload.json()) as { id: string }).id;
  const created = await call({ method: 'POST', path: () => '/v1/batches', body: () => ({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' }) }, TENANT_A);
  batchId = ((await created.json()) as { id: string }).id;
  const native = await call({ method: 'POST', path: () => '/batches', body: () => ({ prompts: ['a'], max_new_tokens: 2 }) }, TENANT_A);
  nativeBatchId = ((await native.json()) as { id: string }).id;
  // Cancel the native one so its error file exists (no worker runs in this test).
  await call({ method: 'POST', path: () => `/batches/${nativeBatchId}/cancel` }, TENANT_A);
});

afterAll(async () => {
  const refused: KeyKind[] = ['none', 'wrong', 'other tenant', 'tenant (not admin)'];
  const negative = observed.filter((o) => refused.includes(o.key));
  reportFigures('api-auth', {
    routes: [...new Set(observed.map((o) => o.route))],
    calls: observed.length,
    refusedCalls: negative.length,
    successesWithoutRightKey: negative.filter((o) => o.status < 400 && !o.note).length,
    positiveControls: observed.filter((o) => !refused.includes(o.key)).length,
    observed,
  });
  await api?.stop();
  await redis?.stop();
});

// Routes of tenant A's resources (or creating new ones). Tenant B must see none of A's.
const tenantRoutes: Route[] = [
  { method: 'POST', path: () => '/v1/files', multipart: true },
  { method: 'GET', path: () => `/v1/files/${fileId}` },
  { method: 'GET', path: () => `/v1/files/${fileId}/content` },
  { method: 'DELETE', path: () => `/v1/files/${fileId}` },
  { method: 'GET', path: () => `/v1/files/file-${nativeBatchId}-errors` },
  { method: 'GET', path: () => `/v1/files/file-${nativeBatchId}-errors/content` },
  { method: 'POST', path: () => '/v1/batches', body: () => ({ input_file_id: fileId, endpoint: '/v1/completions', completion_window: '24h' }) },
  { method: 'GET', path: () => `/v1/batches/${batchId}` },
  { method: 'POST', path: () => `/v1/batches/${batchId}/cancel` },
  { method: 'GET', path: () => `/v1/batches/${batchId}/events` },
  { method: 'GET', path: () => `/v1/batches?after=${batchId}` },
  { method: 'POST', path: () => '/batches', body: () => ({ prompts: ['a'] }) },
  { method: 'GET', path: () => `/batches/${nativeBatchId}` },
  { method: 'GET', path: () => `/batches/${nativeBatchId}/results` },
  { method: 'GET', path: () => `/batches/${nativeBatchId}/results/item-0` },
  { method: 'GET', path: () => `/batches/${nativeBatchId}/events` },
  { method: 'POST', path: () => `/batches/${nativeBatchId}/cancel` },
  { method: 'POST', path: () => `/batches/${nativeBatchId}/retry-failed` },
  { method: 'POST', path: () => '/v1/completions', body: () => ({ model: 'falcon', prompt: 'x', max_tokens: 1 }) },
  { method: 'POST', path: () => '/v1/chat/completions', body: () => ({ model: 'falcon', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }) },
  { method: 'GET', path: () => '/v1/models' },
  { method: 'GET', path: () => '/health' },
  { method: 'GET', path: () => '/metrics' },
  { method: 'GET', path: () => '/docs' },
  { method: 'GET', path: () => '/docs-json' },
];

const adminRoutes: Route[] = [
  { method: 'GET', path: () => '/dashboard' },
  { method: 'GET', path: () => '/dashboard/api/queues' },
  { method: 'PUT', path: () => '/dashboard/api/queues/generate/retry/failed' },
  { method: 'PUT', path: () => '/dashboard/api/queues/generate/clean/completed' },
  { method: 'PUT', path: () => '/dashboard/api/queues/generate/pause' },
];

const label = (r: Route) => `${r.method} ${r.path()}`;

describe('auth matrix', () => {
  it('answers 401 to every route without a key and with a wrong key', async () => {
    const successes: string[] = [];
    for (const route of [...tenantRoutes, ...adminRoutes]) {
      for (const key of [null, WRONG]) {
        const response = await call(route, key);
        record(route, key ? 'wrong' : 'none', response.status);
        if (response.status !== 401) successes.push(`${label(route)} with ${key ? 'wrong key' : 'no key'} -> ${response.status}`);
      }
    }
    expect(successes).toEqual([]);
  });

  it("shows tenant B none of tenant A's batches and files (404, not 403)", async () => {
    const ownResourceRoutes = tenantRoutes.filter((r) => r.path().includes(batchId) || r.path().includes(nativeBatchId) || r.path().includes(fileId));
    expect(ownResourceRoutes.length).toBeGreaterThanOrEqual(15);
    const leaks: string[] = [];
    for (const route of ownResourceRoutes) {
      const response = await call(route, TENANT_B);
      record(route, 'other tenant', response.status);
      if (response.status !== 404) leaks.push(`${label(route)} -> ${response.status}`);
    }
    expect(leaks).toEqual([]);
    const listRoute: Route = { method: 'GET', path: () => '/v1/batches' };
    const listResponse = await call(listRoute, TENANT_B);
    const list = (await listResponse.json()) as { data: unknown[] };
    record(listRoute, 'other tenant', listResponse.status, `lists ${list.data.length} of tenant A's batches`);
    expect(list.data).toEqual([]);
    const filesRoute: Route = { method: 'GET', path: () => '/v1/files' };
    const filesResponse = await call(filesRoute, TENANT_B);
    const files = (await filesResponse.json()) as { data: unknown[] };
    record(filesRoute, 'other tenant', filesResponse.status, `lists ${files.data.length} of tenant A's files`);
    expect(files.data).toEqual([]);
    // Tenant B's own upload did not reveal tenant A's file either; A's file is intact.
    expect((await call({ method: 'GET', path: () => `/v1/files/${fileId}` }, TENANT_A)).status).toBe(200);
  });

  it('keeps the dashboard, its JSON API and its job actions to admin keys', async () => {
    const opened: string[] = [];
    for (const route of adminRoutes) {
      const response = await call(route, TENANT_A);
      record(route, 'tenant (not admin)', response.status);
      if (response.status !== 403) opened.push(`${label(route)} -> ${response.status}`);
    }
    expect(opened).toEqual([]);
    expect((await call(adminRoutes[0], ADMIN)).status).toBe(200);
    const queues = await call(adminRoutes[1], ADMIN);
    expect(queues.status).toBe(200);
    expect(JSON.stringify(await queues.json())).toContain('generate');
    // A browser logs in with Basic auth (key as password).
    const basic = await fetch(`${api.url}/dashboard/api/queues`, { headers: { authorization: `Basic ${Buffer.from(`x:${ADMIN}`).toString('base64')}` } });
    expect(basic.status).toBe(200);
    const challenge = await fetch(`${api.url}/dashboard`);
    expect(challenge.headers.get('www-authenticate')).toContain('Basic');
  });

  it('keeps the dashboard read-only even for admins: emptying, cleaning or obliterating the queue would strand batches', async () => {
    const destructive = ['empty', 'clean/completed', 'clean/waiting', 'obliterate', 'retry/failed'];
    const answered: Record<string, number> = {};
    for (const action of destructive) {
      answered[action] = (await call({ method: 'PUT', path: () => `/dashboard/api/queues/generate/${action}` }, ADMIN)).status;
    }
    expect(answered).toEqual(Object.fromEntries(destructive.map((action) => [action, 405])));
    const queues = (await (await call({ method: 'GET', path: () => '/dashboard/api/queues' }, ADMIN)).json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(queues.queues.find((queue) => queue.name === 'generate')?.readOnlyMode).toBe(true);
    // The batch whose jobs an "Empty queue" click would have taken is still running, its jobs still queued.
    expect(((await (await call({ method: 'GET', path: () => `/v1/batches/${batchId}` }, ADMIN)).json()) as { status: string }).status).toBe('in_progress');
  });

  it("lets the owner and admins use the routes (positive control)", async () => {
    expect((await call({ method: 'GET', path: () => `/v1/batches/${batchId}` }, TENANT_A)).status).toBe(200);
    expect((await call({ method: 'GET', path: () => `/v1/batches/${batchId}` }, ADMIN)).status).toBe(200);
    expect((await call({ method: 'GET', path: () => `/batches/${nativeBatchId}/results` }, TENANT_A)).status).toBe(200);
    expect((await call({ method: 'GET', path: () => `/v1/files/file-${nativeBatchId}-errors/content` }, TENANT_A)).status).toBe(200);
    expect((await call({ method: 'GET', path: () => '/health' }, TENANT_B)).status).toBe(200);
    expect((await call({ method: 'GET', path: () => '/docs-json' }, TENANT_B)).status).toBe(200);
    // GET /batches lists every kind (GET /v1/batches, OpenAI batches only).
    const adminList = (await (await call({ method: 'GET', path: () => '/batches' }, ADMIN)).json()) as { data: { id: string }[] };
    expect(adminList.data.map((b) => b.id)).toEqual(expect.arrayContaining([batchId, nativeBatchId]));
  });

  it('answers every route to its owner or an admin (positive control, recorded)', async () => {
    // Deleting the file goes last (the batch routes above use it). An online request is answered by a worker and none
    // runs in this test: past the key check it waits for one, so it is recorded as queued after 3 s without a refusal.
    const ordered = [...tenantRoutes.filter((r) => r.method !== 'DELETE'), ...tenantRoutes.filter((r) => r.method === 'DELETE')];
    const refused = (status: number) => status === 401 || status === 403 || status === 404 || status >= 500;
    const failures: string[] = [];
    for (const route of ordered) {
      if (route.path() === '/v1/completions' || route.path() === '/v1/chat/completions') {
        const response = await fetch(`${api.url}${route.path()}`, {
          method: 'POST', headers: { authorization: `Bearer ${TENANT_A}`, 'content-type': 'application/json' },
          body: JSON.stringify(route.body!()), signal: AbortSignal.timeout(3000),
        }).catch((error: Error) => (error.name === 'TimeoutError' ? null : Promise.reject(error)));
        record(route, 'owner', response?.status ?? 0, response ? undefined : 'accepted and waiting for a worker (none runs here); no answer in 3 s');
        if (response && refused(response.status)) failures.push(`${label(route)} -> ${response.status}`);
        continue;
      }
      const response = await call(route, TENANT_A);
      record(route, 'owner', response.status, response.status === 409 ? 'conflict: the batch has nothing to retry (the key was accepted)' : undefined);
      if (refused(response.status)) failures.push(`${label(route)} -> ${response.status}`);
    }
    for (const route of adminRoutes) {
      const response = await call(route, ADMIN);
      record(route, 'admin', response.status);
      if (refused(response.status)) failures.push(`${label(route)} -> ${response.status}`);
    }
    expect(failures).toEqual([]);
  });

  it('never writes keys to its log', () => {
    for (const key of [TENANT_A, TENANT_B, ADMIN, WRONG]) expect(api.output()).not.toContain(key);
  });
});
