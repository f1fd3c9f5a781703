import { randomBytes } from 'node:crypto';
import { Body, Controller, HttpCode, HttpStatus, Inject, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { CHAT_COMPLETION_SCHEMA, COMPLETION_SCHEMA, EXAMPLES } from '../http/openapi';
import type { Response } from 'express';
import { chatLogprobs, completionBody, completionLogprobs, finishReasonOf, type BatchEndpoint, type StreamMessage } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { ApiError } from '../http/api-error';
import type { PreparedRequest } from '@app/requests';
import { RequestChecker } from '../checks/request-checker';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { MetricsService } from '../ops/metrics.service';
import { InFlightRequests } from '../http/in-flight-requests';
import { ClientGoneError, OnlineService, type OnlineRun } from './online.service';
import { StreamedText } from './streamed-text';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { resultError } from './result-error';

/** OpenAI online endpoints, carried by the queue at PRIORITY.online; `stream: true` answers with SSE chunks. */
const STREAM_DIVERGED = 'The worker generating this completion stopped after part of it was streamed, and the retry generated different '
  + 'text, so the stream ends here rather than mix two answers. Retry the request; with a seed (or temperature 0) a retry resumes exactly.';

@ApiTags('online (OpenAI compatible)')
@ApiBearerAuth()
@Controller('v1')
export class OnlineController {
  constructor(
    private readonly online: OnlineService,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly metrics: MetricsService,
    private readonly inFlight: InFlightRequests,
    private readonly checker: RequestChecker,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
  ) {}

  @Post('completions')
  @HttpCode(200)
  @ApiBody({ schema: { type: 'object', required: ['model', 'prompt'], properties: { model: { type: 'string' }, prompt: { type: 'string' }, max_tokens: { type: 'integer', minimum: 0, description: '0 only with echo (with logprobs: the prompt is scored)' }, temperature: { type: 'number' }, stream: { type: 'boolean' }, echo: { type: 'boolean' }, logprobs: { type: 'integer', minimum: 0, maximum: 20 } } },
    examples: { prompt: EXAMPLES.completion } })
  @ApiOkResponse({ description: 'the completion (stream: true: server-sent chunks)', schema: COMPLETION_SCHEMA })
  completions(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @Res() response: Response) {
    return this.handle('/v1/completions', principal, body, response);
  }

  @Post('chat/completions')
  @HttpCode(200)
  @ApiBody({ schema: { type: 'object', required: ['model', 'messages'], properties: { model: { type: 'string' }, messages: { type: 'array', items: { type: 'object' } }, max_tokens: { type: 'integer', minimum: 1 }, stream: { type: 'boolean' } } },
    examples: { chat: EXAMPLES.chat } })
  @ApiOkResponse({ description: 'the chat completion (stream: true: server-sent chunks)', schema: CHAT_COMPLETION_SCHEMA })
  chat(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @Res() response: Response) {
    return this.handle('/v1/chat/completions', principal, body, response);
  }

  private async handle(endpoint: BatchEndpoint, principal: Principal, body: unknown, response: Response): Promise<void> {
    const prepared = await this.checker.check({ kind: 'online', endpoint, body });
    if (prepared.echoOnly) {
      this.answerEchoOnly(prepared, response);
      return;
    }
    const stopTimer = this.metrics.onlineDuration.startTimer({ endpoint });
    try {
      await this.inFlight.track(() => (prepared.stream ? this.stream(endpoint, principal, prepared, response) : this.answer(endpoint, principal, prepared, response)));
      stopTimer({ outcome: 'ok' });
    } catch (error) {
      // A client that hung up is routine (its job was taken back or cancelled): no answer to send, no error to log.
      if (error instanceof ClientGoneError) {
        stopTimer({ outcome: 'abandoned' });
        return;
      }
      stopTimer({ outcome: 'error' });
      throw error;
    }
  }

  /** One online run per prompt; if queueing one fails, the ones already queued are taken back. */
  private async startRuns(endpoint: BatchEndpoint, principal: Principal, prepared: PreparedRequest, response: Response, onDelta?: (prompt: number, message: StreamMessage) => void): Promise<OnlineRun[]> {
    const runs: OnlineRun[] = [];
    try {
      for (const [i, prompt] of prepared.prompts.entries()) {
        runs.push(await this.online.start(principal, endpoint, prompt, prepared.params, onDelta && ((message) => onDelta(i, message))));
      }
    } catch (error) {
      await Promise.all(runs.map((run) => run.abandon()));
      throw error;
    }
    // The response closing before it finished means the client went away.
    response.on('close', () => void (response.writableFinished ? undefined : Promise.all(runs.map((run) => run.abandon()))));
    return runs;
  }

  private async answer(endpoint: BatchEndpoint, principal: Principal, prepared: PreparedRequest, response: Response): Promise<void> {
    const runs = await this.startRuns(endpoint, principal, prepared, response);
    const results = await Promise.all(runs.map((run) => run.result));
    const failed = results.find((result) => result.status !== 'succeeded' || !result.output);
    if (failed) throw resultError(failed);
    response.status(200).json(mergedBody(results.map((result, i) => completionBody(endpoint, this.model.id, runs[i].requestId, result))));
  }

  /** max_tokens 0 with echo: the prompts come back as they are (n copies each), nothing is generated. */
  private answerEchoOnly(prepared: PreparedRequest, response: Response): void {
    const id = `cmpl-echo_${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    const n = prepared.params.numReturnSequences;
    const choices = prepared.prompts.flatMap((prompt, i) => Array.from({ length: n }, (_, j) => ({ text: prompt.prompt, index: i * n + j, logprobs: null, finish_reason: 'length' })));
    const promptTokens = prepared.prompts.reduce((sum, prompt) => sum + prompt.promptTokens, 0);
    const usage = { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens };
    if (!prepared.stream) {
      response.status(200).json({ id, object: 'text_completion', created, model: this.model.id, choices, usage });
      return;
    }
    const stream = startEventStream(response, this.config.sseKeepaliveMs);
    for (const choice of choices) stream.send({ id, object: 'text_completion', created, model: this.model.id, choices: [choice], ...(prepared.includeUsage ? { usage: null } : {}) });
    if (prepared.includeUsage) stream.send({ id, object: 'text_completion', created, model: this.model.id, choices: [], usage });
    stream.done();
  }

  /**
   * Streams the workers' text deltas as OpenAI chunks (chat: the role in each choice's first chunk only), all or
   * error: headers go out once the prompts are queued and keep-alive comments flow while they wait. When a worker dies
   * mid-stream and the retry generates the same text (greedy, or seeded), the stream resumes exactly where the client
   * is; when it generates other text, the client gets an error event and [DONE], never two answers spliced together.
   * Whatever the deltas did not carry is sent from the stored result before the finishing chunk; log-probabilities,
   * when asked for, ride on the finishing chunk of each choice. With stream_options.include_usage, a last chunk
   * without choices carries the usage.
   */
  private async stream(endpoint: BatchEndpoint, principal: Principal, prepared: PreparedRequest, response: Response): Promise<void> {
    const chat = endpoint === '/v1/chat/completions';
    const created = Math.floor(Date.now() / 1000);
    const n = prepared.params.numReturnSequences;
    // echo: the answer's text starts with the prompt; the workers stream only what they generate.
    const text = new StreamedText(prepared.params.returnFullText ? (choice) => prepared.prompts[Math.floor(choice / n)].prompt : undefined);
    const roleSent = new Set<number>();
    let requestId = '';
    let failure: ApiError | null = null;
    const usageField = prepared.includeUsage ? { usage: null } : {};
    // Deltas may come while the runs are still being queued; they wait for the stream.
    const early: [number, StreamMessage][] = [];
    const opened: { stream?: EventStream } = {};
    const write = (choice: number, delta: string | null, finish: string | null, logprobs: Record<string, unknown> | null = null) => {
      if (chat) {
        const content: Record<string, unknown> = {};
        if (!roleSent.has(choice)) {
          roleSent.add(choice);
          content.role = 'assistant';
          content.content = delta ?? '';
        } else if (delta !== null) {
          content.content = delta;
        }
        opened.stream!.send({ id: `chatcmpl-${requestId}`, object: 'chat.completion.chunk', created, model: this.model.id,
          choices: [{ index: choice, delta: content, logprobs, finish_reason: finish }], ...usageField });
      } else {
        opened.stream!.send({ id: `cmpl-${requestId}`, object: 'text_completion', created, model: this.model.id,
          choices: [{ index: choice, text: delta ?? '', logprobs, finish_reason: finish }], ...usageField });
      }
    };
    let runs: OnlineRun[] = [];
    const diverged = () => {
      failure ??= new ApiError(HttpStatus.BAD_GATEWAY, 'server_error', STREAM_DIVERGED, { code: 'stream_interrupted' });
      void Promise.all(runs.map((run) => run.abandon()));
    };
    const onDelta = (prompt: number, message: StreamMessage) => {
      if (message.type !== 'delta' || !message.text || failure) return;
      if (!opened.stream) return void early.push([prompt, message]);
      const choice = prompt * n + message.sequence;
      const step = text.delta(message.attempt, choice, message.text);
      if ('diverged' in step) return diverged();
      if (step.send) write(choice, step.send, null);
    };
    runs = await this.startRuns(endpoint, principal, prepared, response, onDelta);
    requestId = runs[0].requestId;
    const stream = (opened.stream = startEventStream(response, this.config.sseKeepaliveMs));
    for (const [prompt, message] of early.splice(0)) onDelta(prompt, message);
    const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
    const finishRun = async (run: OnlineRun, prompt: number): Promise<void> => {
      const result = await run.result;
      if (failure) throw failure;
      if (result.status !== 'succeeded' || !result.output) throw resultError(result);
      usage.prompt_tokens += result.output.promptTokens;
      usage.completion_tokens += result.output.completionTokens;
      const rests = result.output.sequences.map((sequence, index) => text.final(prompt * n + index, sequence.text));
      if (rests.some((step) => 'diverged' in step)) {
        diverged();
        throw failure!;
      }
      result.output.sequences.forEach((sequence, index) => {
        const choice = prompt * n + index;
        const rest = rests[index] as { send: string };
        if (rest.send) write(choice, rest.send, null);
        write(choice, null, finishReasonOf(sequence), chat ? chatLogprobs(sequence.logprobs) : completionLogprobs(sequence.logprobs, sequence.promptLogprobs));
      });
    };
    try {
      await Promise.all(runs.map((run, i) => finishRun(run, i)));
      if (failure) throw failure;
    } catch (error) {
      await Promise.all(runs.map((run) => run.abandon()));
      // A diverged retry is abandoned (its result rejects as if the client had left): the divergence is the reason.
      const reason = failure ?? error;
      if (reason instanceof ClientGoneError) return;
      stream.send(reason instanceof ApiError ? reason.getResponse() : { error: { message: (reason as Error).message, type: 'server_error' } });
      stream.done();
      return;
    }
    if (prepared.includeUsage) {
      usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
      stream.send(chat
        ? { id: `chatcmpl-${requestId}`, object: 'chat.completion.chunk', created, model: this.model.id, choices: [], usage }
        : { id: `cmpl-${requestId}`, object: 'text_completion', created, model: this.model.id, choices: [], usage });
    }
    stream.done();
  }
}

interface EventStream {
  send(payload: unknown): void;
  /** `data: [DONE]` and the end. */
  done(): void;
}

/**
 * An SSE response: headers at once, a keep-alive comment every `keepaliveMs` while nothing else is sent (proxies and
 * clients drop a silent connection), and nothing written after the end.
 */
function startEventStream(response: Response, keepaliveMs: number): EventStream {
  response.status(200);
  response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  response.setHeader('Cache-Control', 'no-cache, no-transform');
  response.setHeader('X-Accel-Buffering', 'no');
  response.flushHeaders();
  let ended = false;
  const keepalive = setInterval(() => void response.write(': keep-alive\n\n'), keepaliveMs);
  const stop = () => {
    ended = true;
    clearInterval(keepalive);
  };
  response.on('close', stop);
  return {
    send: (payload) => void (ended || response.write(`data: ${JSON.stringify(payload)}\n\n`)),
    done: () => {
      if (ended) return;
      stop();
      response.write('data: [DONE]\n\n');
      response.end();
    },
  };
}

interface CompletionBody {
  choices: { index: number }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** One answer for several prompts: their choices in prompt order (index renumbered), their usage summed. */
export function mergedBody(bodies: Record<string, unknown>[]): Record<string, unknown> {
  if (bodies.length === 1) return bodies[0];
  const typed = bodies as unknown as CompletionBody[];
  const choices = typed.flatMap((body) => body.choices).map((choice, index) => ({ ...choice, index }));
  const usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  for (const body of typed) {
    usage.prompt_tokens += body.usage.prompt_tokens;
    usage.completion_tokens += body.usage.completion_tokens;
    usage.total_tokens += body.usage.total_tokens;
  }
  return { ...bodies[0], choices, usage };
}
