// File uploads over real HTTP into a real Redis: the body is streamed into Redis in chunks as it arrives and published
// only when complete and valid; a refused or cut-off upload leaves nothing behind; each tenant has a cap on upload
// bytes in flight, reserved from Content-Length and released however the upload ends (client abort included).
import { request as httpRequest, type ClientRequest } from 'node:http';
import { Redis } from 'ioredis';
import { keysUnder, startApi, jsonl, uploadFile, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';

const KEY_A = 'uploads-key-a-0001';
const KEY_B = 'uploads-key-b-0002';
const MiB = 1024 * 1024;
const MAX_FILE = 4 * MiB;
const CAP = 6 * MiB;

let redis: TestRedis;
let client: Redis;
let api: ApiProcess;

async function startApiWith(env: Record<string, string>): Promise<ApiProcess> {
  return startApi({
    redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(),
    env: { FALCONQ_API_KEYS: `${KEY_A}:tenant-a,${KEY_B}:tenant-b`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0', FALCONQ_OPEN_ROUTES: 'health,metrics', ...env },
  });
}

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  api = await startApiWith({ FALCONQ_MAX_FILE_BYTES: String(MAX_FILE), FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT: String(CAP) });
});

afterAll(async () => {
  await api?.stop();
  client?.disconnect();
  await redis?.stop();
});

/** A valid JSONL file of about `bytes` bytes, with multi-byte characters (which chunk boundaries will split). */
function fileOf(bytes: number, tag = 'x'): Buffer {
  const lines: unknown[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = { custom_id: `${tag}-${i}`, method: 'POST', url: '/v1/completions', body: { model: 'falcon', prompt: `é€😀 question ${i} ${'word '.repeat(40)}`, max_tokens: 2 } };
    size += Buffer.byteLength(JSON.stringify(line)) + 1;
    lines.push(line);
  }
  return Buffer.from(jsonl(lines));
}

const BOUNDARY = 'falconq-test-boundary';
const HEAD = Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n`
  + `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n`);
const TAIL = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: { id?: string; bytes?: number; error?: { message: string; param: string | null; code: string | null } };
}

/** A multipart upload sent piece by piece over node:http, so a test decides when the body goes on, ends or is cut. */
class RawUpload {
  readonly request: ClientRequest;
  readonly answer: Promise<Answer>;

  constructor(key: string, fileBytes: number | null) {
    const headers: Record<string, string> = { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
    // null: sent chunked, with no Content-Length.
    if (fileBytes !== null) headers['content-length'] = String(HEAD.length + fileBytes + TAIL.length);
    this.request = httpRequest(`${api.url}/v1/files`, { method: 'POST', headers });
    this.answer = new Promise<Answer>((resolve, reject) => {
      this.request.on('response', (response) => {
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, json: JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') as Answer['json'] }));
      });
      // An answer before the whole body was sent may end in a reset of what is still being written: not a failure here.
      this.request.on('error', (error) => (/socket hang up|ECONNRESET|EPIPE/.test(error.message) ? undefined : reject(error)));
    });
    this.request.write(HEAD);
  }

  /** Writes, waiting for the socket to take it (false: the server answered already). */
  async write(bytes: Buffer): Promise<boolean> {
    if (this.request.destroyed) return false;
    if (!this.request.write(bytes)) await new Promise((resolve) => this.request.once('drain', resolve).once('close', resolve));
    return !this.request.destroyed;
  }

  end(): void {
    this.request.end(TAIL);
  }
}

/** This api's reservation for a tenant's uploads in flight (/metrics), 0 when it holds none. */
async function inFlight(tenant: string, base = api.url): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`falconq_upload_bytes_in_flight{tenant="${tenant}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const stagedUploads = async () => (await keysUnder(client, redis.prefix)).filter((key) => key.endsWith(':upload'));

describe('uploads are streamed into Redis in chunks', () => {
  it('stores a file of several chunks and gives it back byte for byte, nothing staged left over', async () => {
    const content = fileOf(1.5 * MiB);
    const response = await uploadFile(api.url, KEY_A, content.toString('utf8'));
    expect(response.status).toBe(200);
    const file = (await response.json()) as { id: string; bytes: number };
    expect(file.bytes).toBe(content.length);
    // Chunks of about 256 KiB: the file is a list of them in Redis, not one value.
    expect(await client.llen(`${redis.prefix}:file:${file.id}:chunks`)).toBeGreaterThanOrEqual(5);
    const stored = await fetch(`${api.url}/v1/files/${file.id}/content`, { headers: { authorization: `Bearer ${KEY_A}` } });
    expect(Buffer.from(await stored.arrayBuffer()).equals(content)).toBe(true);
    expect(await stagedUploads()).toEqual([]);
  });

  it('refuses a chunked upload that grows past FALCONQ_MAX_FILE_BYTES while it streams (413) and leaves nothing', async () => {
    const before = await keysUnder(client, redis.prefix);
    const upload = new RawUpload(KEY_A, null);
    const piece = fileOf(MiB);
    // Bounded: at most twice the limit is sent; the answer comes once the limit is passed.
    for (let sent = 0; sent < 2 * MAX_FILE && (await upload.write(piece)); sent += piece.length) {
      if (await Promise.race([upload.answer.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))])) break;
    }
    const answer = await upload.answer;
    upload.request.destroy();
    expect(answer.status).toBe(413);
    expect(answer.json.error?.message).toContain('FALCONQ_MAX_FILE_BYTES');
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
  });

  it('refuses a file whose invalid UTF-8 comes after chunks were stored (400, naming the file) and leaves nothing', async () => {
    const before = await keysUnder(client, redis.prefix);
    const bytes = Buffer.concat([fileOf(MiB), Buffer.from('{"custom_id": "bad", "body": "'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}\n')]);
    const form = new FormData();
    form.set('purpose', 'batch');
    form.set('file', new Blob([bytes], { type: 'application/jsonl' }), 'input.jsonl');
    const response = await fetch(`${api.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEY_A}` } });
    const body = (await response.json()) as Answer['json'];
    expect(response.status).toBe(400);
    expect(body.error).toMatchObject({ param: 'file', message: 'file: is not valid UTF-8 text' });
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
  });

  it('creates a batch from a file of several chunks', async () => {
    const content = fileOf(0.6 * MiB, 'batch');
    const upload = await uploadFile(api.url, KEY_A, content.toString('utf8'));
    const file = (await upload.json()) as { id: string };
    const lines = content.toString('utf8').trim().split('\n').length;
    const batch = await fetch(`${api.url}/v1/batches`, {
      method: 'POST', headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/json' },
      body: JSON.stringify({ input_file_id: file.id, endpoint: '/v1/completions', completion_window: '24h', dry_run: true }),
    });
    expect(batch.status).toBe(200);
    expect(await batch.json()).toMatchObject({ valid: true, request_counts: { total: lines, valid: lines } });
  });
});

describe('upload bytes in flight per tenant (FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT)', () => {
  it('answers 429 naming the limit while the tenant\'s other uploads fill it, other tenants unaffected, and frees it when the upload ends', async () => {
    const big = fileOf(3.5 * MiB, 'a');
    const held = new RawUpload(KEY_A, big.length);
    await held.write(big.subarray(0, MiB));
    await until('the held upload reserved', async () => (await inFlight('tenant-a')) === HEAD.length + big.length + TAIL.length);

    const second = fileOf(3 * MiB, 'b').toString('utf8');
    const refused = await uploadFile(api.url, KEY_A, second);
    const body = (await refused.json()) as Answer['json'];
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(body.error).toMatchObject({ code: 'upload_bytes_in_flight', param: 'file' });
    expect(body.error?.message).toContain(`FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT (${CAP} bytes)`);
    expect((await uploadFile(api.url, KEY_B, second)).status).toBe(200);

    await held.write(big.subarray(MiB));
    held.end();
    const answer = await held.answer;
    expect(answer.status).toBe(200);
    expect(answer.json.bytes).toBe(big.length);
    expect(await inFlight('tenant-a')).toBe(0);
    expect((await uploadFile(api.url, KEY_A, second)).status).toBe(200);
  });

  it('releases the reservation and deletes the staged chunks of an upload the client cuts off', async () => {
    const before = await keysUnder(client, redis.prefix);
    const big = fileOf(3.5 * MiB, 'cut');
    const cut = new RawUpload(KEY_A, big.length);
    await cut.write(big.subarray(0, 2 * MiB));
    // Cut only once the api holds the reservation and has staged chunks in Redis: mid-upload for sure.
    await until('the upload reserved and staging', async () => (await inFlight('tenant-a')) > 0 && (await stagedUploads()).length > 0);
    cut.request.destroy();

    await until('the reservation released', async () => (await inFlight('tenant-a')) === 0);
    await until('the staged chunks deleted', async () => (await stagedUploads()).length === 0);
    expect(await keysUnder(client, redis.prefix)).toEqual(before);
    // The whole cap is free again: an upload that would not fit beside the cut one is taken.
    const next = fileOf(3.5 * MiB, 'next');
    expect((await uploadFile(api.url, KEY_A, next.toString('utf8'))).status).toBe(200);
  });

  it('answers 413 naming the limit to an upload that alone is over it, before its body is read', async () => {
    const small = await startApiWith({ FALCONQ_MAX_FILE_BYTES: String(MAX_FILE), FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT: String(2 * MiB) });
    try {
      const before = await keysUnder(client, redis.prefix);
      for (const announced of [3 * MiB, null]) {
        const answer = await new Promise<Answer>((resolve, reject) => {
          const headers: Record<string, string> = { authorization: `Bearer ${KEY_A}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
          if (announced !== null) headers['content-length'] = String(announced);
          const request = httpRequest(`${small.url}/v1/files`, { method: 'POST', headers }, (response) => {
            const parts: Buffer[] = [];
            response.on('data', (part: Buffer) => parts.push(part));
            response.on('end', () => {
              resolve({ status: response.statusCode ?? 0, headers: response.headers, json: JSON.parse(Buffer.concat(parts).toString('utf8')) as Answer['json'] });
              request.destroy();
            });
          });
          request.on('error', (error) => (/socket hang up|ECONNRESET|EPIPE/.test(error.message) ? undefined : reject(error)));
          request.write(HEAD); // the rest never comes: the answer must not wait for it
        });
        expect(answer.status).toBe(413);
        expect(answer.json.error?.message).toContain(`FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT (${2 * MiB} bytes)`);
      }
      expect(await inFlight('tenant-a', small.url)).toBe(0);
      expect(await keysUnder(client, redis.prefix)).toEqual(before);
    } finally {
      await small.stop();
    }
  });
});
