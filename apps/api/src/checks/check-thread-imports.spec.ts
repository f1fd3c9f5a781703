import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

// Each request-check thread loads its own copy of what check-thread.js imports. Nest, rxjs and express added about
// 10 MiB to every thread; nothing a check does needs them (ApiError is a plain Error for this reason).
const CHECK_THREAD = join(__dirname, '..', '..', '..', '..', 'dist', 'apps', 'api', 'src', 'checks', 'check-thread.js');
const FRAMEWORK = /node_modules\/(@nestjs\/(core|common\/index)|rxjs|express|bullmq|ioredis)\b/;

describe('the request-check thread', () => {
  it('loads no web framework, queue or Redis client', () => {
    if (!existsSync(CHECK_THREAD)) throw new Error(`${CHECK_THREAD} is missing: run "npm run build" first (npm test does it)`);
    // What check-thread.js requires, without starting it as a thread (it needs workerData): its imports, loaded alone.
    const script = `
      const Module = require('node:module');
      const loaded = [];
      const load = Module._load;
      Module._load = function (request, parent, isMain) {
        const exported = load.apply(this, arguments);
        if (parent && parent.filename === ${JSON.stringify(CHECK_THREAD)}) loaded.push(request);
        return exported;
      };
      const threads = require('node:worker_threads');
      Object.defineProperty(threads, 'parentPort', { value: null });
      try { require(${JSON.stringify(CHECK_THREAD)}); } catch {}
      console.log(JSON.stringify({ direct: loaded, all: Object.keys(require.cache) }));`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    const { direct, all } = JSON.parse(run.stdout) as { direct: string[]; all: string[] };
    expect(direct).toEqual(expect.arrayContaining(['../model/served-model', './request-checks']));
    expect(all.filter((file) => FRAMEWORK.test(file))).toEqual([]);
  });
});
