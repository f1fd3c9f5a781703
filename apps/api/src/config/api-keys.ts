import { createHash } from 'node:crypto';

// API keys are kept only as sha256 hashes; the plain keys are read once from the environment and dropped.

export interface KeyPrincipal {
  /** Tenant that owns the batches and files created with the key. */
  tenant: string;
  admin: boolean;
  /** Short, non-reversible id of the key (for rate limits and logs). */
  keyId: string;
}

export type KeyTable = ReadonlyMap<string, KeyPrincipal>;

export const hashKey = (key: string): string => createHash('sha256').update(key, 'utf8').digest('hex');

const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * FALCONQ_API_KEYS: comma-separated `key[:tenant[:admin]]` (tenant defaults to a name derived from the key hash).
 * FALCONQ_ADMIN_KEYS: comma-separated `key[:tenant]`, all admins. Throws naming the variable and the entry position
 * (never the key itself).
 */
export function parseKeyTable(apiKeys: string | undefined, adminKeys: string | undefined): KeyTable {
  const table = new Map<string, KeyPrincipal>();
  const add = (variable: string, list: string | undefined, forceAdmin: boolean) => {
    const entries = (list ?? '').split(',').map((e) => e.trim()).filter(Boolean);
    entries.forEach((entry, position) => {
      const [key, tenantPart, flag, ...rest] = entry.split(':');
      const where = `${variable} entry ${position + 1}`;
      if (rest.length > 0 || !key) throw new Error(`${where}: expected key[:tenant[:admin]]`);
      if (key.length < 8) throw new Error(`${where}: keys must be at least 8 characters long`);
      if (flag !== undefined && flag !== 'admin') throw new Error(`${where}: the third part may only be "admin"`);
      const hash = hashKey(key);
      const tenant = tenantPart || `key-${hash.slice(0, 12)}`;
      if (!TENANT.test(tenant)) throw new Error(`${where}: tenant must match ${TENANT}`);
      if (table.has(hash)) throw new Error(`${where}: this key is listed twice`);
      table.set(hash, { tenant, admin: forceAdmin || flag === 'admin', keyId: hash.slice(0, 16) });
    });
  };
  add('FALCONQ_API_KEYS', apiKeys, false);
  add('FALCONQ_ADMIN_KEYS', adminKeys, true);
  return table;
}
