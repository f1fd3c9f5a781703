import { parentPort, workerData } from 'node:worker_threads';
import { loadServedModel } from '../model/served-model';
import type { InputLimits } from '../batches/batch-input';
import { runCheck, type CheckTask } from './request-checks';

// One request-check thread: loads the tokenizer once, then answers tasks one at a time.

export interface CheckThreadData {
  modelDir: string;
  modelName?: string;
  limits: InputLimits;
}

export type CheckThreadMessage = { id: number; task: CheckTask };

const data = workerData as CheckThreadData;
const model = loadServedModel(data.modelDir, data.modelName);

parentPort!.on('message', ({ id, task }: CheckThreadMessage) => {
  try {
    parentPort!.postMessage({ id, outcome: runCheck(task, model, data.limits) });
  } catch (error) {
    parentPort!.postMessage({ id, crash: error instanceof Error ? error.stack ?? error.message : String(error) });
  }
});
