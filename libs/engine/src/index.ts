// Public entry of libs/engine. Keep it light: onnxruntime-node is loaded only inside the engine's worker thread
// (and the CLI's bench), so the api can import the tokenizer and parameter rules without loading ORT.
export * from './api';
export * from './tokenizer';
