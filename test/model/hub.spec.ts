import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { convertModel, HubDownloader, ModelInputError, readManifest, writeTinyCheckpoint } from '@app/model';

interface ServedRequest {
  url: string;
  range?: string;
  authorization?: string;
}

/** Serves a checkpoint directory in the hub layout: /api/models/{repo}/revision/{rev} and /{repo}/resolve/{rev}/{file}. */
class FakeHub {
  readonly requests: ServedRequest[] = [];
  /** file -> bytes to send before cutting the connection (once). */
  readonly cuts = new Map<string, number>();
  /** file -> sha256 to advertise instead of the real one. */
  readonly wrongSha = new Map<string, string>();
  private server!: http.Server;

  constructor(private readonly dir: string, private readonly repo: string) {}

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private sha(file: string): string {
    return this.wrongSha.get(file) ?? createHash('sha256').update(fs.readFileSync(path.join(this.dir, file))).digest('hex');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ url: url.pathname, range: req.headers.range, authorization: req.headers.authorization });
    if (url.pathname === `/api/models/${this.repo}/revision/main`) {
      const siblings = fs.readdirSync(this.dir).map((name) => {
        const size = fs.statSync(path.join(this.dir, name)).size;
        return name.endsWith('.safetensors') ? { rfilename: name, size, lfs: { sha256: this.sha(name), size } } : { rfilename: name, size };
      });
      siblings.push({ rfilename: 'pytorch_model.bin', size: 10 });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: this.repo, sha: 'abc', siblings }));
      return;
    }
    const resolvePrefix = `/${this.repo}/resolve/main/`;
    if (url.pathname.startsWith(resolvePrefix)) {
      const file = url.pathname.slice(resolvePrefix.length);
      // Like the hub: LFS files redirect to a CDN, with the sha256 in x-linked-etag.
      if (file.endsWith('.safetensors')) {
        res.writeHead(302, { location: `/cdn/${file}`, 'x-linked-etag': `"${this.sha(file)}"` });
        res.end();
        return;
      }
      this.sendFile(file, req, res);
      return;
    }
    if (url.pathname.startsWith('/cdn/')) {
      this.sendFile(url.pathname.slice('/cdn/'.length), req, res);
      return;
    }
    res.writeHead(404).end();
  }

  private sendFile(file: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const full = path.join(this.dir, file);
    if (!fs.existsSync(full)) {
      res.writeHead(404).end();
      return;
    }
    const bytes = fs.readFileSync(full);
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    const body = bytes.subarray(start);
    res.writeHead(start > 0 ? 206 : 200, {
      'content-length': body.length,
      ...(start > 0 ? { 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}),
    });
    const cut = this.cuts.get(file);
    if (cut !== undefined) {
      this.cuts.delete(file);
      res.write(body.subarray(0, cut), () => res.destroy());
      return;
    }
    res.end(body);
  }
}

describe('hub download from a local HTTP server in the hub layout', () => {
  let work: string;
  let checkpoint: string;
  let hub: FakeHub;
  const repo = 'tiiuae/tiny-falcon';

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-hub-'));
    checkpoint = path.join(work, 'served');
    writeTinyCheckpoint(checkpoint, { seed: 9, shards: 2, dtype: 'BF16' });
    fs.writeFileSync(path.join(checkpoint, 'generation_config.json'), '{"eos_token_id": 11}');
    fs.writeFileSync(path.join(checkpoint, 'README.md'), 'not needed');
    hub = new FakeHub(checkpoint, repo);
    await hub.start();
  });
  afterAll(async () => {
    await hub.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    hub.requests.length = 0;
  });

  it('downloads only the needed files, resumes a cut download with Range, and converts', async () => {
    const shard = 'model-00001-of-00002.safetensors';
    hub.cuts.set(shard, 5000);
    const cacheDir = path.join(work, 'cache-resume');
    const options = { cacheDir, endpoint: hub.endpoint, token: 'secret-token' };
    await expect(new HubDownloader(repo, options).download()).rejects.toThrow(/download interrupted at byte 5000.*run again to resume/);
    const part = path.join(cacheDir, 'tiiuae--tiny-falcon', 'main', `${shard}.part`);
    expect(fs.statSync(part).size).toBe(5000);

    hub.requests.length = 0;
    const out = path.join(work, 'from-hub');
    const progress = new Set<string>();
    const { manifest } = await convertModel(repo, { out, hub: options, onProgress: (stage) => progress.add(stage) });
    expect(manifest.source).toEqual({ kind: 'hub', id: repo, revision: 'main' });
    expect(readManifest(out).shape.hiddenSize).toBe(64);
    const resumed = hub.requests.filter((r) => r.url.endsWith(shard));
    expect(resumed.every((r) => r.range === 'bytes=5000-')).toBe(true);
    expect(resumed.length).toBe(2); // the redirect and the CDN
    const downloaded = fs.readdirSync(path.join(cacheDir, 'tiiuae--tiny-falcon', 'main')).sort();
    expect(downloaded).toEqual(['config.json', 'generation_config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
      'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json']);
    for (const name of downloaded) expect(fs.readFileSync(path.join(cacheDir, 'tiiuae--tiny-falcon', 'main', name))).toEqual(fs.readFileSync(path.join(checkpoint, name)));
    expect(hub.requests.every((r) => r.url.startsWith('/cdn/') || r.authorization === 'Bearer secret-token')).toBe(true);
    expect(hub.requests.some((r) => r.url.includes('README') || r.url.includes('.bin'))).toBe(false);
    expect(progress.has(`download ${shard}`)).toBe(true);

    // A second run finds everything in the cache and checks it without downloading.
    hub.requests.length = 0;
    await new HubDownloader(repo, options).download();
    expect(hub.requests.filter((r) => r.url.includes('/resolve/'))).toEqual([]);
  });

  it('refuses a file whose sha256 does not match the hub and removes the partial download', async () => {
    const shard = 'model-00002-of-00002.safetensors';
    hub.wrongSha.set(shard, 'f'.repeat(64));
    try {
      const cacheDir = path.join(work, 'cache-bad-sha');
      const out = path.join(work, 'bad-sha');
      const attempt = convertModel(repo, { out, hub: { cacheDir, endpoint: hub.endpoint } });
      await expect(attempt).rejects.toBeInstanceOf(ModelInputError);
      await expect(convertModel(repo, { out, hub: { cacheDir, endpoint: hub.endpoint } })).rejects.toThrow(/sha256 [0-9a-f]{64} does not match the hub's f{64}/);
      expect(fs.existsSync(path.join(cacheDir, 'tiiuae--tiny-falcon', 'main', `${shard}.part`))).toBe(false);
      expect(fs.existsSync(path.join(cacheDir, 'tiiuae--tiny-falcon', 'main', shard))).toBe(false);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      hub.wrongSha.clear();
    }
  });

  it('names the repo when it does not exist, and rejects what is neither a directory nor a repo id', async () => {
    const cacheDir = path.join(work, 'cache-missing');
    await expect(new HubDownloader('tiiuae/nope', { cacheDir, endpoint: hub.endpoint }).download()).rejects.toThrow(/tiiuae\/nope@main: repo or revision not found/);
    await expect(convertModel('./no/such/dir/here', { out: path.join(work, 'x'), hub: { cacheDir } })).rejects.toThrow(/no such directory, and not a hub repo id/);
  });
});
