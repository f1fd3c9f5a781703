// onnxruntime-node as loaded once per jest process by test/support/node-environment.cjs (why: see there).
module.exports = globalThis.__falconqHostOnnxruntime;
