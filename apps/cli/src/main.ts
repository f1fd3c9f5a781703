import { Command } from 'commander';
import { falconqVersion } from './version';
import { registerModelCommands } from './commands/model';
import { registerTokenizeCommand } from './commands/tokenize';
import { registerGenerateCommand } from './commands/generate';
import { registerBenchCommand } from './commands/bench';
import { registerServiceCommands } from './commands/service';
import { registerSetupCommands } from './commands/setup';
import { registerRunBatchCommand } from './commands/run-batch';
import { registerBatchCommands } from './commands/batch';

export function buildProgram(): Command {
  const program = new Command('falconq')
    .description('Batch text generation with a 4-bit Falcon on GPUs you own')
    .version(falconqVersion(), '-V, --version', 'print the falconq version')
    .showHelpAfterError();
  registerModelCommands(program);
  registerTokenizeCommand(program);
  registerGenerateCommand(program);
  registerBenchCommand(program);
  registerRunBatchCommand(program);
  registerBatchCommands(program);
  registerServiceCommands(program);
  registerSetupCommands(program);
  return program;
}

export async function runCli(argv: string[] = process.argv): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error: unknown) {
    process.stderr.write(`falconq: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void runCli();
