import { Body, Controller, HttpCode, HttpStatus, Inject, Post, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import type { ItemResult } from '@app/contracts';
import { completionBody, finishReasonOf, type BatchEndpoint, type StreamMessage } from '@app/store';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { ApiError } from '../http/api-error';
import { RequestParamError } from '../generation/generation-params';
import { prepareOpenAiRequest, type PreparedRequest } from '../generation/prompt-builder';
import { SERVED_MODEL, type ServedModel } from '../model/served-model';
import { MetricsService } from '../ops/metrics.service';
import { InFlightRequests } from '../http/in-flight-requests';
import { OnlineService } from './online.service';

function resultError(result: ItemResult): ApiError {
  const error = result.error ?? { code: 'generation_failed', message: 'generation failed' };
  if (error.code === 'invalid_prompt' || error.code === 'invalid_params') return ApiError.badRequest(error.message, { code: error.code });
  if (result.status === 'cancelled' || result.status === 'expired') return new ApiError(HttpStatus.GATEWAY_TIMEOUT, 'server_error', error.message, { code: error.code });
  return new ApiError(HttpStatus.BAD_GATEWAY, 'server_error', `Generation failed: ${error.message}`, { code: error.code });
}

/** OpenAI online endpoints, carried by the queue at PRIORITY.online; `stream: true` answers with SSE chunks. */
@ApiTags('online (OpenAI compatible)')
@ApiBearerAuth()
@Controller('v1')
export class OnlineController {
  constructor(
    private readonly online: OnlineService,
    @Inject(SERVED_MODEL) private readonly model: ServedModel,
    private readonly metrics: MetricsService,
    private readonly inFlight: InFlightRequests,
  ) {}

  @Post('completions')
  @HttpCode(200)
  @ApiBody({ schema: { type: 'object', required: ['prompt'], properties: { model: { type: 'string' }, prompt: { type: 'string' }, max_tokens: { type: 'integer' }, temperature: { type: 'number' }, stream: { type: 'boolean' } } } })
  completions(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @Res() response: Response) {
    return this.handle('/v1/completions', principal, body, response);
  }

  @Post('chat/completions')
  @HttpCode(200)
  @ApiBody({ schema: { type: 'object', required: ['messages'], properties: { model: { type: 'string' }, messages: { type: 'array', items: { type: 'object' } }, max_tokens: { type: 'integer' }, stream: { type: 'boolean' } } } })
  chat(@CurrentPrincipal() principal: Principal, @Body() body: unknown, @Res() response: Response) {
    return this.handle('/v1/chat/completions', principal, body, response);
  }

  private prepare(endpoint: BatchEndpoint, body: unknown): PreparedRequest {
    try {
      return prepareOpenAiRequest(endpoint, body, this.model);
    } catch (error) {
      if (error instanceof RequestParamError) throw ApiError.badRequest(`${error.field}: ${error.reason}`, { param: error.field, code: 'invalid_parameter' });
      throw error;
    }
  }

  private async handle(endpoint: BatchEndpoint, principal: Principal, body: unknown, response: Response): Promise<void> {
    const prepared = this.prepare(endpoint, body);
    const stopTimer = this.metrics.onlineDuration.startTimer({ endpoint });
    try {
      await this.inFlight.track(() => this.run(endpoint, principal, prepared, response));
      stopTimer({ outcome: 'ok' });
    } catch (error) {
      stopTimer({ outcome: 'error' });
      throw error;
    }
  }

  private async run(endpoint: BatchEndpoint, principal: Principal, prepared: PreparedRequest, response: Response): Promise<void> {
    if (!prepared.stream) {
      const run = await this.online.start(principal, endpoint, prepared);
      // The response closing before it finished means the client went away.
      response.on('close', () => void (response.writableFinished ? undefined : run.abandon()));
      const result = await run.result;
      if (result.status !== 'succeeded' || !result.output) throw resultError(result);
      response.status(200).json(completionBody(endpoint, this.model.id, run.requestId, result));
      return;
    }
    await this.stream(endpoint, principal, prepared, response);
  }

  /**
   * Streams the worker's text deltas as OpenAI chunks. Whatever the deltas did not carry (a worker that does not
   * stream, or a missed message) is sent from the final result before the finishing chunk, so the text is complete.
   */
  private async stream(endpoint: BatchEndpoint, principal: Principal, prepared: PreparedRequest, response: Response): Promise<void> {
    const chat = endpoint === '/v1/chat/completions';
    const created = Math.floor(Date.now() / 1000);
    const streamed = new Map<number, string>();
    let started = false;
    let requestId = '';
    const write = (chunk: unknown) => response.write(`data: ${JSON.stringify(chunk)}\n\n`);
    const chunk = (sequence: number, text: string | null, finish: string | null) => chat
      ? { id: `chatcmpl-${requestId}`, object: 'chat.completion.chunk', created, model: this.model.id,
        choices: [{ index: sequence, delta: text === null ? {} : { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }] }
      : { id: `cmpl-${requestId}`, object: 'text_completion', created, model: this.model.id,
        choices: [{ index: sequence, text: text ?? '', logprobs: null, finish_reason: finish }] };
    const begin = () => {
      if (started) return;
      started = true;
      response.status(200);
      response.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      response.setHeader('Cache-Control', 'no-cache, no-transform');
      response.setHeader('X-Accel-Buffering', 'no');
      response.flushHeaders();
    };
    const onDelta = (message: StreamMessage) => {
      if (message.type !== 'delta' || !message.text) return;
      begin();
      streamed.set(message.sequence, (streamed.get(message.sequence) ?? '') + message.text);
      write(chunk(message.sequence, message.text, null));
    };
    const run = await this.online.start(principal, endpoint, prepared, onDelta);
    requestId = run.requestId;
    response.on('close', () => void (response.writableFinished ? undefined : run.abandon()));
    let result: ItemResult;
    try {
      result = await run.result;
    } catch (error) {
      if (!started) throw error;
      write({ error: { message: (error as Error).message, type: 'server_error' } });
      response.end();
      return;
    }
    if (result.status !== 'succeeded' || !result.output) {
      if (!started) throw resultError(result);
      write({ error: resultError(result).getResponse() });
      response.end();
      return;
    }
    begin();
    result.output.sequences.forEach((sequence, index) => {
      const sent = streamed.get(index) ?? '';
      const rest = sequence.text.startsWith(sent) ? sequence.text.slice(sent.length) : '';
      if (rest) write(chunk(index, rest, null));
      write(chunk(index, null, finishReasonOf(sequence)));
    });
    response.write('data: [DONE]\n\n');
    response.end();
  }
}
