// How the api process is started (npm start, the local benchmarks; the Dockerfile's CMD says the same): V8's young
// generation capped at 2 MiB a semi-space instead of Node 20's 16. The api's garbage is short-lived request data,
// so a small young generation costs it no throughput that stands out from noise, and it keeps about 25 MiB less
// resident at rest and 35-50 MiB less under load (docs/deploy.md, "The api's memory"; scripts/bench-api.js).
const path = require('node:path');

const API_V8_FLAGS = ['--max-semi-space-size=2'];

/** node's arguments for the api; a flag already set through `env.NODE_OPTIONS` (an experiment) is left to it. */
function apiArgs(root, env = process.env) {
  const given = env.NODE_OPTIONS ?? '';
  const flags = API_V8_FLAGS.filter((flag) => !given.includes(flag.split('=')[0]));
  return [...flags, path.join(root, 'dist', 'apps', 'api', 'src', 'main.js')];
}

module.exports = { apiArgs };
