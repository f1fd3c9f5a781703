// Download of the files a conversion needs from the Hugging Face hub (or a mirror with the same URL layout):
// resumable (HTTP Range into a .part file), checked against the hub's LFS sha256 where it gives one.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { INDEX_FILE, SINGLE_FILE } from './checkpoint';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, type ProgressCallback } from './convert';
import { ModelInputError } from './errors';

export const DEFAULT_HUB_ENDPOINT = 'https://huggingface.co';
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export interface HubDownloadOptions {
  /** Where downloads are kept: `<cacheDir>/<owner>--<name>/<revision>/`. */
  cacheDir: string;
  revision?: string;
  endpoint?: string;
  token?: string;
  onProgress?: ProgressCallback;
  /** Abort the download; the .part file stays for a later resume. */
  signal?: AbortSignal;
}

interface Sibling {
  rfilename: string;
  size?: number;
  lfs?: { sha256?: string; size?: number };
}

export function isHubRepoId(source: string): boolean {
  return REPO_ID.test(source) && !source.includes('..');
}

export class HubDownloader {
  private readonly endpoint: string;
  private readonly revision: string;

  constructor(private readonly repoId: string, private readonly options: HubDownloadOptions) {
    if (!isHubRepoId(repoId)) throw new ModelInputError(`"${repoId}" is not a hub repo id (owner/name)`);
    this.endpoint = (options.endpoint ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, '');
    this.revision = options.revision ?? 'main';
  }

  get targetDir(): string {
    return path.join(this.options.cacheDir, this.repoId.replace('/', '--'), this.revision.replaceAll('/', '--'));
  }

  /** Downloads config, tokenizer and safetensors files; returns the local directory. */
  async download(): Promise<string> {
    const siblings = await this.listFiles();
    const byName = new Map(siblings.map((s) => [s.rfilename, s]));
    const required = ['config.json', TOKENIZER_FILE];
    for (const name of required) {
      if (!byName.has(name)) throw new ModelInputError(`${this.repoId}@${this.revision}: the repo has no ${name}`);
    }
    const optional = [TOKENIZER_CONFIG_FILE, 'generation_config.json'].filter((name) => byName.has(name));
    fs.mkdirSync(this.targetDir, { recursive: true });
    for (const name of [...required, ...optional]) await this.fetchFile(byName.get(name)!);
    if (byName.has(INDEX_FILE)) {
      await this.fetchFile(byName.get(INDEX_FILE)!);
      const index = JSON.parse(fs.readFileSync(path.join(this.targetDir, INDEX_FILE), 'utf8')) as { weight_map?: Record<string, string> };
      const shards = [...new Set(Object.values(index.weight_map ?? {}))];
      if (shards.length === 0) throw new ModelInputError(`${this.repoId}: ${INDEX_FILE} has an empty weight_map`);
      for (const shard of shards) {
        const sibling = byName.get(shard);
        if (!sibling) throw new ModelInputError(`${this.repoId}: ${INDEX_FILE} names ${shard}, which the repo does not have`);
        await this.fetchFile(sibling);
      }
    } else if (byName.has(SINGLE_FILE)) {
      await this.fetchFile(byName.get(SINGLE_FILE)!);
    } else {
      throw new ModelInputError(`${this.repoId}@${this.revision}: no ${SINGLE_FILE} or ${INDEX_FILE} (falconq reads safetensors only)`);
    }
    return this.targetDir;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}), ...extra };
  }

  private async listFiles(): Promise<Sibling[]> {
    const url = `${this.endpoint}/api/models/${this.repoId}/revision/${encodeURIComponent(this.revision)}?blobs=true`;
    const response = await this.request(url, {});
    if (response.status === 401 || response.status === 403) {
      throw new ModelInputError(`${this.repoId}: access denied (HTTP ${response.status}); set HF_TOKEN for gated or private repos`);
    }
    if (response.status === 404) throw new ModelInputError(`${this.repoId}@${this.revision}: repo or revision not found (HTTP 404 from ${this.endpoint})`);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const body = (await response.json()) as { siblings?: Sibling[] };
    if (!Array.isArray(body.siblings)) throw new Error(`${url}: the answer has no siblings list`);
    return body.siblings;
  }

  private request(url: string, extraHeaders: Record<string, string>): Promise<Response> {
    return this.send(url, this.headers(extraHeaders));
  }

  /**
   * One GET, tried again (twice, after 0.2 s and 1 s) when the connection itself fails, e.g. a reset keep-alive
   * socket: every request here is an idempotent GET. HTTP errors are answers, not retried.
   */
  private async send(url: string | URL, headers: Record<string, string>): Promise<Response> {
    const delays = [200, 1000];
    for (let attempt = 0; ; attempt++) {
      try {
        return await fetch(url, { headers, redirect: 'manual', signal: this.options.signal });
      } catch (error) {
        if (this.options.signal?.aborted || attempt >= delays.length) {
          throw new Error(`${String(url)}: ${(error as Error).message}${(error as { cause?: Error }).cause ? ` (${(error as { cause: Error }).cause.message})` : ''}`);
        }
        await new Promise((resolve) => setTimeout(resolve, delays[attempt]));
      }
    }
  }

  private async fetchFile(sibling: Sibling): Promise<void> {
    const name = sibling.rfilename;
    const finalPath = path.join(this.targetDir, name);
    const partPath = `${finalPath}.part`;
    const expectedSha = sibling.lfs?.sha256;
    const expectedSize = sibling.lfs?.size ?? sibling.size;
    if (fs.existsSync(finalPath) && (expectedSize === undefined || fs.statSync(finalPath).size === expectedSize)) {
      if (!expectedSha || (await sha256OfFile(finalPath)) === expectedSha) return;
      fs.rmSync(finalPath);
    }
    let hash = createHash('sha256');
    let offset = fs.existsSync(partPath) ? fs.statSync(partPath).size : 0;
    if (offset > 0) await hashFileInto(partPath, hash);
    const url = `${this.endpoint}/${this.repoId}/resolve/${encodeURIComponent(this.revision)}/${name}`;
    let response = await this.request(url, offset > 0 ? { range: `bytes=${offset}-` } : {});
    let linkedEtag = response.headers.get('x-linked-etag') ?? undefined;
    for (let hops = 0; response.status >= 300 && response.status < 400; hops++) {
      const location = response.headers.get('location');
      if (!location || hops > 5) throw new Error(`${url}: bad redirect (HTTP ${response.status})`);
      const next = new URL(location, url);
      const sameHost = next.host === new URL(this.endpoint).host;
      response = await this.send(next, { ...(sameHost ? this.headers() : {}), ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) });
      linkedEtag ??= response.headers.get('x-linked-etag') ?? undefined;
    }
    if (response.status === 416 && expectedSize !== undefined && offset === expectedSize) {
      // The .part is already whole.
    } else if (response.status === 200 && offset > 0) {
      // The server ignored Range: start over from byte 0.
      offset = 0;
      hash = createHash('sha256');
      fs.truncateSync(partPath, 0);
    } else if (response.status !== 200 && response.status !== 206) {
      if (response.status === 404) throw new ModelInputError(`${this.repoId}@${this.revision}: ${name} not found (HTTP 404)`);
      if (response.status === 401 || response.status === 403) throw new ModelInputError(`${this.repoId}: access to ${name} denied (HTTP ${response.status}); set HF_TOKEN`);
      throw new Error(`${url}: HTTP ${response.status}`);
    }
    const total = expectedSize ?? (Number(response.headers.get('content-length') ?? 0) + offset);
    const stage = `download ${name}`;
    this.options.onProgress?.(stage, offset, total);
    if (response.body && response.status !== 416) {
      const out = fs.openSync(partPath, offset > 0 ? 'a' : 'w');
      try {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          fs.writeSync(out, value);
          hash.update(value);
          offset += value.length;
          this.options.onProgress?.(stage, offset, total);
        }
      } catch (error) {
        throw new Error(`${name}: download interrupted at byte ${offset} (${(error as Error).message}); run again to resume`);
      } finally {
        fs.closeSync(out);
      }
    }
    if (expectedSize !== undefined && offset !== expectedSize) {
      throw new Error(`${name}: download interrupted at byte ${offset} of ${expectedSize}; run again to resume`);
    }
    const digest = hash.digest('hex');
    const expected = expectedSha ?? normalizeEtag(linkedEtag);
    if (expected && digest !== expected) {
      fs.rmSync(partPath, { force: true });
      throw new ModelInputError(`${name}: sha256 ${digest} does not match the hub's ${expected}; the partial download was removed`);
    }
    fs.renameSync(partPath, finalPath);
  }

}

/** An LFS etag is the file's sha256 (64 hex chars), sometimes quoted or weak; git etags (sha1) are not checked. */
function normalizeEtag(etag: string | undefined): string | undefined {
  const value = etag?.replace(/^W\//, '').replaceAll('"', '');
  return value && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

async function hashFileInto(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await hashFileInto(file, hash);
  return hash.digest('hex');
}
