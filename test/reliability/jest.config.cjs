// `npm run test:reliability`: fault tests and the soak (minutes, several processes): kept out of `npm test`.
const path = require('node:path');
const base = require('../../jest.config.cjs');

module.exports = {
  ...base,
  rootDir: path.join(__dirname, '..', '..'),
  roots: ['<rootDir>/test/reliability'],
  testMatch: ['**/*.reliability.ts'],
  testTimeout: 600_000,
};
