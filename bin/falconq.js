#!/usr/bin/env node
// The `falconq` command: runs the built CLI (npm run build writes dist/).
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'apps', 'cli', 'src', 'main.js');
if (!fs.existsSync(entry)) {
  console.error(`falconq is not built yet: run "npm run build" in ${path.join(__dirname, '..')}`);
  process.exit(1);
}
require(entry).runCli(process.argv);
