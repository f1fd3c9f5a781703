// jest gives each test file its own realm with its own typed-array constructors; onnxruntime-node checks tensors
// with `instanceof Float32Array` against the host's constructors, so the sandbox must share them.
// It also gives each test file its own module registry, so every file would load onnxruntime-node's binding anew;
// onnxruntime-node 1.29's native init registers a Node cleanup hook each time and aborts the process on the second
// (node::CleanupQueue::Add assertion). So the binding is loaded once, in the host realm, and handed to every test file
// (test/support/onnxruntime-node.cjs, mapped in jest.config.cjs).
const { TestEnvironment } = require('jest-environment-node');

const SHARED = ['ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray',
  'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array',
  'BigUint64Array'];

class NodeEnvironmentWithHostTypedArrays extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
    this.global.__falconqHostOnnxruntime = require('onnxruntime-node');
  }
}

module.exports = NodeEnvironmentWithHostTypedArrays;
