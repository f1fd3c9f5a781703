import * as fs from 'node:fs';
import { convertCheckpoint, type ConvertOptions, type ConvertResult } from './convert';
import { ModelInputError } from './errors';
import { HubDownloader, type HubDownloadOptions, isHubRepoId } from './hub';

export interface ConvertSourceOptions extends ConvertOptions {
  /** Used when `source` is a hub repo id rather than a local directory. */
  hub: Omit<HubDownloadOptions, 'onProgress'>;
}

/** Converts a local checkpoint directory, or a hub repo id after downloading the files it needs. */
export async function convertModel(source: string, options: ConvertSourceOptions): Promise<ConvertResult> {
  if (fs.existsSync(source)) {
    if (!fs.statSync(source).isDirectory()) throw new ModelInputError(`${source} is not a directory`);
    return convertCheckpoint(source, options);
  }
  if (!isHubRepoId(source)) throw new ModelInputError(`${source}: no such directory, and not a hub repo id (owner/name)`);
  const downloader = new HubDownloader(source, { ...options.hub, onProgress: options.onProgress, signal: options.signal });
  const dir = await downloader.download();
  return convertCheckpoint(dir, { ...options, source: { kind: 'hub', id: source, revision: options.hub.revision ?? 'main' } });
}
