import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Renders a tokenizer_config chat_template (Jinja) with the generation prompt appended. */
export function renderJinjaChatTemplate(template: string, messages: ChatMessage[], specialTokens: Record<string, string | undefined>): string {
  return new Template(template).render({ messages, add_generation_prompt: true, ...specialTokens });
}

/** Falcon-instruct has no chat template; this is the prompt form it was tuned on: `User: ...\nAssistant:`. */
export function renderFalconInstructPrompt(messages: ChatMessage[]): string {
  const lines = messages.map((message) => {
    if (message.role === 'system') return message.content;
    return `${message.role === 'user' ? 'User' : 'Assistant'}: ${message.content}`;
  });
  return `${lines.join('\n')}\nAssistant:`;
}
