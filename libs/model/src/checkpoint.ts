import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelInputError } from './errors';
import { SafetensorsFile, type TensorInfo } from './safetensors';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** The safetensors of a local checkpoint directory, single file or sharded; tensors are read on demand. */
export class Checkpoint {
  private constructor(
    readonly dir: string,
    private readonly files: Map<string, SafetensorsFile>,
    private readonly owner: Map<string, SafetensorsFile>,
  ) {}

  static open(dir: string): Checkpoint {
    const indexPath = path.join(dir, INDEX_FILE);
    const singlePath = path.join(dir, SINGLE_FILE);
    const files = new Map<string, SafetensorsFile>();
    const owner = new Map<string, SafetensorsFile>();
    try {
      if (fs.existsSync(indexPath)) {
        for (const shard of readShardNames(indexPath)) {
          const file = SafetensorsFile.open(path.join(dir, shard));
          files.set(shard, file);
          for (const name of file.tensors.keys()) owner.set(name, file);
        }
      } else if (fs.existsSync(singlePath)) {
        const file = SafetensorsFile.open(singlePath);
        files.set(SINGLE_FILE, file);
        for (const name of file.tensors.keys()) owner.set(name, file);
      } else {
        const hasBin = fs.readdirSync(dir).some((name) => name.endsWith('.bin'));
        throw new ModelInputError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}${hasBin ? ' (only PyTorch .bin files; falconq reads safetensors only)' : ''}`);
      }
    } catch (error) {
      for (const file of files.values()) file.close();
      throw error;
    }
    return new Checkpoint(dir, files, owner);
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): { file: string; tensor: TensorInfo } {
    const file = this.owner.get(name);
    if (!file) throw new ModelInputError(`${this.dir}: tensor ${name} is missing from the checkpoint`);
    return { file: file.path, tensor: file.info(name) };
  }

  /** Rows of a tensor after checking its full shape against `expectedShape`. */
  readRows(name: string, expectedShape: number[], start: number, count: number): Float32Array {
    const { file, tensor } = this.info(name);
    if (tensor.shape.length !== expectedShape.length || tensor.shape.some((d, i) => d !== expectedShape[i])) {
      throw new ModelInputError(`${file}: tensor ${name} has shape [${tensor.shape}], expected [${expectedShape}]`);
    }
    return this.owner.get(name)!.readRows(name, start, count);
  }

  close(): void {
    for (const file of this.files.values()) file.close();
  }
}

function readShardNames(indexPath: string): string[] {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexPath, 'utf8')) as typeof index;
  } catch (error) {
    throw new ModelInputError(`${indexPath}: not valid JSON (${(error as Error).message})`);
  }
  if (!index.weight_map || typeof index.weight_map !== 'object') throw new ModelInputError(`${indexPath}: missing weight_map`);
  const shards = [...new Set(Object.values(index.weight_map))];
  for (const shard of shards) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || shard.startsWith('.')) {
      throw new ModelInputError(`${indexPath}: invalid shard file name ${JSON.stringify(shard)}`);
    }
  }
  return shards;
}
