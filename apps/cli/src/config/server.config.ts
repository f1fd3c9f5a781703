// Where `falconq batch ...` finds a running falconq: flags first, then FALCONQ_URL and FALCONQ_KEY. The one place the
// batch commands read the environment.

export interface ServerConfig {
  url: string;
  key?: string;
}

export function readServerConfig(flags: { url?: string; key?: string }, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const url = (flags.url ?? env.FALCONQ_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(url)) throw new Error(`--url must be an http(s) URL, got "${url}"`);
  const key = flags.key ?? (env.FALCONQ_KEY?.trim() || undefined);
  return { url, key };
}
