import type { Command } from 'commander';
import { Tokenizer } from '@app/engine';

export function registerTokenizeCommand(program: Command): void {
  program
    .command('tokenize')
    .description("Print the token ids of a text with a model's tokenizer")
    .requiredOption('--model <dir>', 'model directory (tokenizer.json, tokenizer_config.json)')
    .option('--json', 'print {"ids": [...], "tokens": [...]} as JSON', false)
    .argument('<text...>', 'text to tokenize (several arguments are joined with spaces)')
    .action((words: string[], options: { model: string; json: boolean }) => {
      const tokenizer = Tokenizer.fromModelDir(options.model);
      const text = words.join(' ');
      const ids = tokenizer.encode(text);
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ ids, tokens: ids.map((id) => tokenizer.decode([id])) })}\n`);
      } else {
        process.stdout.write(`${ids.join(' ')}\n`);
      }
    });
}
