import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer, type ChatMessage } from '@app/engine';
import type { ModelManifest } from '@app/model';

// The model the workers serve, as the api needs it: its name, context length and tokenizer (to count prompt tokens
// and render chat messages). The api never loads the model's weights.

export interface ServedModel {
  id: string;
  contextLength: number;
  createdAt: number; // epoch seconds
  countTokens(text: string): number;
  encode(text: string): number[];
  renderChat(messages: ChatMessage[]): string;
}

export function loadServedModel(modelDir: string, nameOverride?: string): ServedModel {
  const manifestPath = join(modelDir, 'falconq.json');
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as ModelManifest;
  } catch (error) {
    throw new Error(`MODEL_DIR: cannot read ${manifestPath} (${(error as Error).message}); point MODEL_DIR at a converted model directory`);
  }
  const tokenizer = Tokenizer.fromModelDir(modelDir);
  return {
    id: nameOverride ?? manifest.source?.id ?? 'falconq',
    contextLength: manifest.shape.contextLength,
    createdAt: Math.floor(Date.parse(manifest.createdAt) / 1000) || 0,
    countTokens: (text) => tokenizer.encode(text).length,
    encode: (text) => tokenizer.encode(text),
    renderChat: (messages) => tokenizer.applyChatTemplate(messages),
  };
}

export const SERVED_MODEL = Symbol('SERVED_MODEL');
