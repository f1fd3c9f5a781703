import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer, type ChatMessage } from '@app/engine';
import type { ModelManifest } from '@app/model';
import { TokenCounter, countsByWord } from './token-counter';
import { servedNames } from '@app/requests';

// The model the workers serve, as the api needs it: its name, context length and tokenizer (to count prompt tokens
// and render chat messages). The api never loads the model's weights.

export interface ServedModel {
  id: string;
  /** Every name a request's `model` may use: the id, the checkpoint's id, its last path part, and `falcon`. */
  names: readonly string[];
  contextLength: number;
  vocabSize: number;
  createdAt: number; // epoch seconds
  /** Exactly encode(text).length, faster (model/token-counter.ts). */
  countTokens(text: string): number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
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
  const tokenizerJson = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  const counter = new TokenCounter((text) => tokenizer.encode(text), countsByWord(tokenizerJson));
  const id = nameOverride ?? manifest.source?.id ?? 'falconq';
  return {
    id,
    names: servedNames(id, manifest.source?.id),
    contextLength: manifest.shape.contextLength,
    vocabSize: manifest.shape.vocabSize,
    createdAt: Math.floor(Date.parse(manifest.createdAt) / 1000) || 0,
    countTokens: (text) => counter.count(text),
    encode: (text) => tokenizer.encode(text),
    decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: false }),
    renderChat: (messages) => tokenizer.applyChatTemplate(messages),
  };
}

export const SERVED_MODEL = Symbol('SERVED_MODEL');
