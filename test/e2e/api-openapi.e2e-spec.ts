// The OpenAPI document at /docs-json is usable: one optional Idempotency-Key header, the bearer scheme of an API key,
// response schemas on the main routes, and request examples that succeed when sent to a running falconq.
import { jsonl, uploadFile } from '../support/api-process';
import { startServiceStack, type ServiceStack } from '../support/service-stack';

const KEY = 'sk-openapi-test';

interface Operation {
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content: Record<string, { examples?: Record<string, { value: unknown }> }> };
  responses: Record<string, { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> }>;
}
interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { type: string; scheme?: string; bearerFormat?: string }> };
}

describe('OpenAPI document', () => {
  let stack: ServiceStack;
  let document: OpenApiDocument;
  const send = (method: string, path: string, body: unknown) => fetch(`${stack.api.url}${path}`, {
    method, headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  const examplesOf = (path: string) => Object.entries(document.paths[path].post.requestBody!.content['application/json'].examples ?? {});

  beforeAll(async () => {
    stack = await startServiceStack(KEY, 4);
    const response = await fetch(`${stack.api.url}/docs-json`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(response.status).toBe(200);
    document = (await response.json()) as OpenApiDocument;
  }, 120_000);
  afterAll(() => stack?.stop());

  it('lists Idempotency-Key once, optional, on both batch creations', () => {
    for (const path of ['/batches', '/v1/batches']) {
      const headers = (document.paths[path].post.parameters ?? []).filter((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key');
      expect(headers).toHaveLength(1);
      expect(headers[0].required ?? false).toBe(false);
    }
  });

  it('describes the key as a bearer API key, not a JWT', () => {
    const schemes = Object.values(document.components.securitySchemes);
    expect(schemes).toHaveLength(1);
    expect(schemes[0]).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes[0].bearerFormat).not.toBe('JWT');
  });

  it('gives the main routes a response schema', () => {
    const routes: [string, string, string][] = [
      ['/batches', 'post', 'status'], ['/batches', 'get', 'data'], ['/batches/{id}', 'get', 'request_counts'], ['/batches/{id}/results', 'get', 'data'],
      ['/batches/{id}/cancel', 'post', 'status'], ['/v1/batches', 'post', 'status'], ['/v1/batches/{id}', 'get', 'output_file_id'],
      ['/v1/files', 'post', 'id'], ['/v1/completions', 'post', 'choices'], ['/v1/chat/completions', 'post', 'choices'],
    ];
    for (const [path, method, field] of routes) {
      const schema = document.paths[path][method].responses['200']?.content?.['application/json']?.schema;
      expect({ path, method, fields: Object.keys(schema?.properties ?? {}) }).toEqual({ path, method, fields: expect.arrayContaining([field]) });
    }
  });

  it('has request examples that succeed when sent', async () => {
    for (const path of ['/batches', '/v1/completions', '/v1/chat/completions']) {
      const examples = examplesOf(path);
      expect(examples.length).toBeGreaterThan(0);
      for (const [name, example] of examples) {
        const response = await send('POST', path, example.value);
        expect({ path, name, status: response.status, body: response.status === 200 ? 'ok' : await response.text() }).toEqual({ path, name, status: 200, body: 'ok' });
      }
    }
    // /v1/batches names an uploaded file: upload one, then send the example with its id.
    const upload = await uploadFile(stack.api.url, KEY, jsonl([{ custom_id: 'a', method: 'POST', url: '/v1/chat/completions', body: { model: 'falcon', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 } }]));
    const fileId = ((await upload.json()) as { id: string }).id;
    for (const [, example] of examplesOf('/v1/batches')) {
      const response = await send('POST', '/v1/batches', { ...(example.value as object), input_file_id: fileId });
      expect(response.status).toBe(200);
    }
  }, 120_000);
});
