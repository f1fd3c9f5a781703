#!/usr/bin/env node
// Runs before `npm test` and `npm start` on a fresh clone: installs dependencies when missing (onnxruntime-node's
// CUDA download skipped) and builds when dist/ is missing or older than the sources.
const { execSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });

function newestMtime(dir) {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(full));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

function ensureReady() {
  if (!fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
    console.log('falconq: installing dependencies (npm ci)...');
    run('npm ci --no-audit --no-fund');
  }

  const stamp = path.join(root, 'dist', '.build-stamp');
  const sourcesNewest = Math.max(newestMtime(path.join(root, 'apps')), newestMtime(path.join(root, 'libs')));
  if (!fs.existsSync(stamp) || fs.statSync(stamp).mtimeMs < sourcesNewest) {
    console.log('falconq: building (npm run build)...');
    run('npm run build');
    fs.writeFileSync(stamp, new Date().toISOString());
  }
}

module.exports = { ensureReady };

if (require.main === module) ensureReady();
