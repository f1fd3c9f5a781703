// Entry of the engine's worker_thread: owns the onnxruntime session (whose run() blocks the thread that calls it)
// so the owner's event loop stays free. Started by GenerationEngine from the compiled dist/ file.

import { parentPort, workerData } from 'node:worker_threads';
import { dispatchToCore, reportBreakdown } from '../core/dispatch';
import { EngineCore, type EngineCoreOptions } from '../core/engine-core';
import { toSerializedError } from '../errors';
import type { FromEngine, ToEngine } from './messages';

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('engine-thread must run in a worker_thread');
  const post = (message: FromEngine) => {
    port.postMessage(message);
    if (message.type === 'closed') port.close();
  };
  let core: EngineCore;
  try {
    core = await EngineCore.open(workerData as EngineCoreOptions);
  } catch (error) {
    post({ type: 'start-failed', error: toSerializedError(error) });
    port.close();
    return;
  }
  reportBreakdown(core, post);
  port.on('message', (message: ToEngine) => dispatchToCore(core, message, post));
  post({ type: 'ready', info: core.info });
}

void main();
