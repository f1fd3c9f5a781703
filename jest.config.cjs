// @swc/jest in CommonJS mode: Nest 12 and a few of its dependencies ship ESM only, so they are transformed too.
const esmOnly = ['@nestjs', 'file-type', 'load-esm', 'strtok3', 'token-types', 'uint8array-extras', '@tokenizer', '@huggingface/jinja'];
const swc = ['@swc/jest', {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
  },
  module: { type: 'commonjs' },
}];

module.exports = {
  testEnvironment: '<rootDir>/test/support/node-environment.cjs',
  roots: ['<rootDir>/apps', '<rootDir>/libs', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  transform: { '^.+\\.(t|j|mj)s$': swc },
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnly.join('|')})/)`],
  moduleNameMapper: {
    '^@app/(contracts|redis|queue|store|model|engine|requests)$': '<rootDir>/libs/$1/src',
    '^onnxruntime-node$': '<rootDir>/test/support/onnxruntime-node.cjs',
  },
  testTimeout: 60_000,
};
