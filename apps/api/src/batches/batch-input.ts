import { TEMPLATE_PLACEHOLDER, renderTemplate, templatePlaceholders, templateValue, usedFields, type TemplateRow } from '@app/contracts';
import type { BatchEndpoint, BatchItemInput } from '@app/store';
import { ApiError, lineError } from '../http/api-error';
import {
  LONE_SURROGATE_REASON, RequestParamError, SUPPORTED_ENDPOINTS, checkBatchLine, checkPromptBytes, checkPromptFits, describeZodIssue,
  lineProblem, loneSurrogateAt, nativeBatchSchema, paramsFromNative, type LineProblem, type NativeBatchRequest,
} from '@app/requests';
import type { ServedModel } from '../model/served-model';

// Turns a batch's input (an OpenAI JSONL file, or a native JSON body) into the items to enqueue, checking everything
// first: a rejected batch stores and enqueues nothing.

export function parseEndpoint(value: string): BatchEndpoint {
  if (!(SUPPORTED_ENDPOINTS as readonly string[]).includes(value)) {
    throw ApiError.badRequest(`endpoint "${value}" is not supported; use one of ${SUPPORTED_ENDPOINTS.join(', ')}`, { param: 'endpoint', code: 'invalid_endpoint' });
  }
  return value as BatchEndpoint;
}

export interface InputLimits {
  maxLines: number;
  /** The most bytes a template batch may render to, all prompts together. */
  maxRenderedBytes: number;
}

/** Every line of an input file, checked: the items of the good lines and the problem of each bad one. */
export interface CheckedJsonl {
  items: BatchItemInput[];
  problems: LineProblem[];
  /** Line number of each item (items[i] came from lines[i]). */
  lines: number[];
  promptTokens: number;
  /** The most tokens the good lines may generate (max_tokens x n each): the ceiling of the batch's work. */
  maxCompletionTokens: number;
}

/**
 * Parses and checks every line of an OpenAI batch input file, collecting the problem of each bad line (OpenAI fails
 * such a batch with all of them in errors.data). File-level problems (empty, too many lines) are thrown as 400s.
 */
export function checkJsonl(content: string, endpoint: BatchEndpoint, model: ServedModel, limits: InputLimits): CheckedJsonl {
  const lines = content.split('\n');
  const requests = lines.filter((l) => l.trim() !== '').length;
  if (requests === 0) throw ApiError.badRequest('input file has no requests (expected one JSON object per line)', { param: 'input_file_id', code: 'empty_file' });
  if (requests > limits.maxLines) {
    throw ApiError.badRequest(`input file has ${requests} requests; a batch may hold at most ${limits.maxLines} (FALCONQ_MAX_LINES)`, { param: 'input_file_id', code: 'too_many_requests' });
  }
  const checked: CheckedJsonl = { items: [], problems: [], lines: [], promptTokens: 0, maxCompletionTokens: 0 };
  const lineOfCustomId = new Map<string, number>();
  lines.forEach((raw, i) => {
    const text = raw.trim();
    if (text === '') return;
    const outcome = checkBatchLine(text, i + 1, endpoint, model, lineOfCustomId, checked.items.length);
    if ('code' in outcome) {
      checked.problems.push(outcome);
      return;
    }
    checked.items.push(outcome.item);
    checked.lines.push(i + 1);
    checked.promptTokens += outcome.promptTokens;
    checked.maxCompletionTokens += outcome.item.params.maxNewTokens * outcome.item.params.numReturnSequences;
  });
  return checked;
}

/** The items of a file whose every line is good; throws a 400 naming the first bad line otherwise. */
export function itemsFromJsonl(content: string, endpoint: BatchEndpoint, model: ServedModel, limits: InputLimits): BatchItemInput[] {
  const checked = checkJsonl(content, endpoint, model, limits);
  const [first] = checked.problems;
  if (first) throw lineError(first.line, first.param, first.message);
  return checked.items;
}

/** A prompt template split once into its literal text and the placeholders it uses (in order, repeats included). */
export class PromptTemplate {
  readonly placeholders: string[];
  private readonly literalBytes: number;

  constructor(readonly text: string) {
    this.placeholders = templatePlaceholders(text);
    this.literalBytes = Buffer.byteLength(text.replace(TEMPLATE_PLACEHOLDER, ''), 'utf8');
  }

  /** The value of a placeholder in a row: own fields only, so `{constructor}` never reaches Object.prototype. */
  private value(row: TemplateRow, name: string, rowIndex: number): string {
    const value = templateValue(row, name);
    if (value === null) throw new RequestParamError(`rows[${rowIndex}].${name}`, `is missing: the template uses {${name}}`);
    return value;
  }

  /** UTF-8 bytes of the rendered prompt, computed without rendering it (a template can repeat a field many times). */
  renderedBytes(row: TemplateRow, rowIndex: number): number {
    let bytes = this.literalBytes;
    for (const name of this.placeholders) bytes += Buffer.byteLength(this.value(row, name, rowIndex), 'utf8');
    return bytes;
  }

  /** The prompt for a row whose fields were checked (renderedBytes). */
  render(row: TemplateRow): string {
    return renderTemplate(this.text, row);
  }
}

/**
 * Refuses, before rendering, a template whose rows would render to prompts over the per-prompt limit, or to more bytes
 * in all than a request body may hold: what a template batch stores stays within what a list of prompts could.
 */
function checkRenderedSize(template: PromptTemplate, rows: TemplateRow[], model: ServedModel, maxTotalBytes: number): void {
  checkPromptBytes(model, Buffer.byteLength(template.text, 'utf8'), 'template');
  let total = 0;
  rows.forEach((row, i) => {
    const bytes = template.renderedBytes(row, i);
    checkPromptBytes(model, bytes, `rows[${i}]`, 'renders to');
    total += bytes;
  });
  if (total > maxTotalBytes) {
    throw new RequestParamError('rows', `render to ${total} bytes of prompts in all; a batch may hold at most ${maxTotalBytes} (FALCONQ_MAX_BODY_BYTES)`);
  }
}

export interface NativeBatchInput {
  items: BatchItemInput[];
  request: NativeBatchRequest;
  /** Prompts that do not fit the context (line = the prompt's 1-based position); only a dry run gets here with any. */
  problems: LineProblem[];
  promptTokens: number;
  maxCompletionTokens: number;
}

/**
 * Checks a native POST /batches body: prompts, or a template with rows, plus the shared parameters. A bad body or
 * parameter is a 400; so is a prompt over the context, unless `collectPromptProblems` (a dry run) lists them.
 */
export function itemsFromNative(body: unknown, model: ServedModel, limits: InputLimits, collectPromptProblems = false): NativeBatchInput {
  const illFormed = loneSurrogateAt(body);
  if (illFormed !== null) throw ApiError.badRequest(`${illFormed}: ${LONE_SURROGATE_REASON}`, { param: illFormed, code: 'invalid_parameter' });
  const parsed = nativeBatchSchema.safeParse(body);
  if (!parsed.success) {
    const issue = describeZodIssue(parsed.error);
    throw ApiError.badRequest(`${issue.field}: ${issue.message}`, { param: issue.field, code: 'invalid_parameter' });
  }
  const request = parsed.data;
  if ((request.prompts === undefined) === (request.template === undefined)) {
    throw ApiError.badRequest('send either prompts, or template with rows', { param: 'prompts', code: 'invalid_parameter' });
  }
  if (request.template !== undefined && request.rows === undefined) {
    throw ApiError.badRequest('rows: required with template', { param: 'rows', code: 'invalid_parameter' });
  }
  const count = request.prompts?.length ?? request.rows!.length;
  if (count > limits.maxLines) {
    const field = request.prompts ? 'prompts' : 'rows';
    throw ApiError.badRequest(`${field}: has ${count} entries; a batch may hold at most ${limits.maxLines} (FALCONQ_MAX_LINES)`, { param: field, code: 'too_many_requests' });
  }
  try {
    const params = paramsFromNative(request, model.contextLength);
    let prompts = request.prompts;
    if (!prompts) {
      const template = new PromptTemplate(request.template!);
      checkRenderedSize(template, request.rows!, model, limits.maxRenderedBytes);
      prompts = request.rows!.map((row) => template.render(row));
    }
    const input: NativeBatchInput = { items: [], request, problems: [], promptTokens: 0, maxCompletionTokens: 0 };
    prompts.forEach((prompt, index) => {
      const field = request.prompts ? `prompts[${index}]` : `rows[${index}]`;
      try {
        input.promptTokens += checkPromptFits(model, prompt, params, field, 'max_new_tokens');
      } catch (error) {
        if (!collectPromptProblems || !(error instanceof RequestParamError)) throw error;
        input.problems.push(lineProblem(index + 1, error.field, error.reason, error.code));
        return;
      }
      // A template batch's items keep their row (the fields the template uses); the store keeps the template once.
      const row = request.template !== undefined ? { row: usedFields(request.template, request.rows![index]) } : {};
      input.items.push({ index: input.items.length, customId: `item-${index}`, prompt, params, ...row });
      input.maxCompletionTokens += params.maxNewTokens * params.numReturnSequences;
    });
    return input;
  } catch (error) {
    if (error instanceof RequestParamError) {
      throw ApiError.badRequest(`${error.field}: ${error.reason}`, { param: error.field, code: error.code });
    }
    throw error;
  }
}
