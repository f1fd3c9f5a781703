import * as os from 'node:os';
import * as path from 'node:path';

export interface HubConfig {
  /** HF_TOKEN: bearer token for gated or private repos. */
  token?: string;
  /** HF_ENDPOINT: a hub mirror with the same URL layout. */
  endpoint?: string;
  /** FALCONQ_HUB_CACHE: where downloaded checkpoints are kept (default ~/.cache/falconq/hub). */
  cacheDir: string;
}

/** The one place the CLI reads the hub's environment variables. */
export function readHubConfig(env: NodeJS.ProcessEnv = process.env): HubConfig {
  const endpoint = env.HF_ENDPOINT?.trim() || undefined;
  if (endpoint && !/^https?:\/\//.test(endpoint)) throw new Error(`HF_ENDPOINT must be an http(s) URL, got "${endpoint}"`);
  return {
    token: env.HF_TOKEN?.trim() || undefined,
    endpoint,
    cacheDir: env.FALCONQ_HUB_CACHE?.trim() || path.join(os.homedir(), '.cache', 'falconq', 'hub'),
  };
}
