export { Tokenizer, type DecodeOptions } from './tokenizer';
export { StreamingDecoder } from './streaming-decoder';
export { type ChatMessage, renderFalconInstructPrompt } from './chat-template';
export { applyRustCompatibility, splitByCharacter, type SplitBehavior } from './rust-compat';
