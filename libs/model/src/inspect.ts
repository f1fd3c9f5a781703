import * as fs from 'node:fs';
import * as path from 'node:path';
import { readManifest } from './convert';
import type { ModelManifest } from './manifest';
import { readProtoFields } from './onnx/protobuf';

export interface ModelInspection {
  manifest: ModelManifest;
  files: { name: string; bytes: number }[];
  /** Node count per `domain::op_type` (domain omitted for the default ONNX domain). */
  ops: Record<string, number>;
  nodeCount: number;
  initializerCount: number;
  irVersion: number;
  opsets: Record<string, number>;
}

/** Reads falconq.json and counts the graph's nodes per op type straight from the model.onnx protobuf. */
export function inspectModel(dir: string): ModelInspection {
  const manifest = readManifest(dir);
  const files = fs.readdirSync(dir).sort().map((name) => ({ name, bytes: fs.statSync(path.join(dir, name)).size }));
  const model = readProtoFields(fs.readFileSync(path.join(dir, manifest.files.model)));
  const graph = model.find((f) => f.field === 7)?.bytes;
  if (!graph) throw new Error(`${path.join(dir, manifest.files.model)}: no graph`);
  const ops: Record<string, number> = {};
  let nodeCount = 0;
  let initializerCount = 0;
  const text = (bytes: Buffer | undefined) => bytes?.toString('utf8') ?? '';
  for (const field of readProtoFields(graph)) {
    if (field.field === 5) initializerCount++;
    if (field.field !== 1 || !field.bytes) continue;
    const node = readProtoFields(field.bytes);
    const opType = text(node.find((f) => f.field === 4)?.bytes);
    const domain = text(node.find((f) => f.field === 7)?.bytes);
    const key = domain ? `${domain}::${opType}` : opType;
    ops[key] = (ops[key] ?? 0) + 1;
    nodeCount++;
  }
  const opsets: Record<string, number> = {};
  for (const field of model.filter((f) => f.field === 8)) {
    const entry = readProtoFields(field.bytes!);
    opsets[text(entry.find((f) => f.field === 1)?.bytes) || 'ai.onnx'] = Number(entry.find((f) => f.field === 2)?.varint ?? 0n);
  }
  return { manifest, files, ops, nodeCount, initializerCount, irVersion: Number(model.find((f) => f.field === 1)?.varint ?? 0n), opsets };
}
