// jest gives each test file its own realm with its own typed-array constructors; onnxruntime-node checks tensors
// with `instanceof Float32Array` against the host's constructors, so the sandbox must share them.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = ['ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray',
  'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array',
  'BigUint64Array'];

class NodeEnvironmentWithHostTypedArrays extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = NodeEnvironmentWithHostTypedArrays;
