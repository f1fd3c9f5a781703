// The seed recipe through LangChain, pointed at falconq by base URL and otherwise unchanged: a PromptTemplate piped
// into LangChain's OpenAI classes. A real worker process generates with the tiny model.
import { PromptTemplate } from '@langchain/core/prompts';
import { ChatOpenAI, OpenAI } from '@langchain/openai';
import type { ApiProcess } from '../support/api-process';
import { startServiceStack, type ServiceStack } from '../support/service-stack';

const KEY = 'langchain-key-1';
const TEMPLATE = "Question: {question}\nAnswer: Let's think step by step.";
let stack: ServiceStack;
let api: ApiProcess;

beforeAll(async () => {
  stack = await startServiceStack(KEY);
  api = stack.api;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

/** The same prompt straight through falconq's completions endpoint, greedy. */
async function directCompletion(prompt: string, maxTokens: number): Promise<string> {
  const response = await fetch(`${api.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'falcon', prompt, max_tokens: maxTokens, temperature: 0 }),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { choices: { text: string }[] }).choices[0].text;
}

describe('LangChain pointed at falconq', () => {
  const configuration = () => ({ baseURL: `${api.url}/v1` });

  it('runs the seed chain (PromptTemplate | OpenAI) and gets what falconq generates for that prompt', async () => {
    const prompt = PromptTemplate.fromTemplate(TEMPLATE);
    const llm = new OpenAI({ apiKey: KEY, configuration: configuration(), model: 'falcon', maxTokens: 8, temperature: 0, maxRetries: 0 });
    const answer = await prompt.pipe(llm).invoke({ question: 'What is 7*6?' });
    const expected = await directCompletion(await prompt.format({ question: 'What is 7*6?' }), 8);
    expect(answer).toBe(expected);
  });

  it('batches several questions through one chain', async () => {
    const prompt = PromptTemplate.fromTemplate(TEMPLATE);
    const llm = new OpenAI({ apiKey: KEY, configuration: configuration(), model: 'falcon', maxTokens: 6, temperature: 0, maxRetries: 0 });
    const questions = ['Name a prime.', 'What is a falcon?', 'Why is the sky blue?'];
    const answers = await prompt.pipe(llm).batch(questions.map((question) => ({ question })));
    const expected = await Promise.all(questions.map(async (question) => directCompletion(await prompt.format({ question }), 6)));
    expect(answers).toEqual(expected);
    expect(answers.some((answer) => answer.length > 0)).toBe(true);
  });

  it('chats through ChatOpenAI, streamed and not', async () => {
    const chat = new ChatOpenAI({ apiKey: KEY, configuration: configuration(), model: 'falcon', maxTokens: 6, temperature: 0, maxRetries: 0 });
    const reply = await chat.invoke([['human', 'Say something.']]);
    let streamed = '';
    for await (const chunk of await chat.stream([['human', 'Say something.']])) streamed += String(chunk.content);
    expect(typeof reply.content).toBe('string');
    expect(streamed).toBe(reply.content);
  });
});
