// Public entry of libs/engine. Keep it light: onnxruntime-node is loaded only inside the engine's worker thread
// (or, in in-process mode, on start), so the api can import the tokenizer and parameter rules without loading ORT.
export * from './api';
export * from './errors';
export * from './params';
export { GenerationEngine, ENGINE_THREAD_FILE } from './engine';
export { needsFullLogits } from './sampling/sampler';
export { MAX_TOP_LOGPROBS, logSumExp, tokenLogprob } from './sampling/logprobs';
export * from './tokenizer';
export {
  CUDA_13_PROVIDER_PACKAGE,
  CUDA_PROVIDER_ORT_VERSION,
  CudaSetupError,
  cudaReadiness,
  detectCudaMajor,
  hostLibraryFacts,
  installCuda12Provider,
  installCuda13Provider,
  type CudaReadiness,
  type LibraryFacts,
} from './runtime/cuda-setup';
