import type { Command } from 'commander';

// Placeholder: filled in by the work on this command.
export function registerGenerateCommand(program: Command): void {
  void program;
}
