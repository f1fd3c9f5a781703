import { Controller, Delete, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiTags, ApiOkResponse } from '@nestjs/swagger';
import { FILE_SCHEMA } from '../http/openapi';
import type { Request, Response } from 'express';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { discardRestOfBody } from '../http/request-guards';
import { FilesService, toOpenAiFile } from './files.service';
import { UploadBudget } from './upload-budget';

/** The body's Content-Length; null when it is sent chunked (its length is not known before it has arrived). */
function announcedLength(request: Request): number | null {
  const length = request.headers['content-length'];
  if (length !== undefined && /^\d+$/.test(length)) return Number(length);
  return request.headers['transfer-encoding'] !== undefined ? null : 0;
}

/** OpenAI Files API, for batch input (purpose "batch") and batch output files. */
@ApiTags('files (OpenAI compatible)')
@ApiBearerAuth()
@Controller('v1/files')
export class FilesController {
  constructor(private readonly files: FilesService, private readonly budget: UploadBudget) {}

  /**
   * The body is streamed into Redis as it arrives (upload-stream.ts), never held whole. Before any of it is read, the
   * upload's Content-Length is reserved against the tenant's FALCONQ_UPLOAD_INFLIGHT_BYTES_PER_TENANT (413 if it alone
   * is over, 429 while other uploads of the tenant fill it); the reservation ends with the request, however it ends.
   */
  @Post()
  @HttpCode(200)
  @ApiConsumes('multipart/form-data')
  @ApiOkResponse({ schema: FILE_SCHEMA })
  @ApiBody({ schema: { type: 'object', required: ['file', 'purpose'], properties: { file: { type: 'string', format: 'binary' }, purpose: { type: 'string', enum: ['batch'] } } } })
  async upload(@CurrentPrincipal() principal: Principal, @Req() request: Request, @Res({ passthrough: true }) response: Response) {
    let release: () => void;
    try {
      release = this.budget.reserve(principal.tenant, announcedLength(request));
    } catch (error) {
      discardRestOfBody(request, response);
      throw error;
    }
    try {
      return toOpenAiFile(await this.files.receive(principal, request, response));
    } finally {
      release();
    }
  }

  @Get()
  async list(@CurrentPrincipal() principal: Principal, @Query('limit') limit?: string, @Query('purpose') purpose?: string) {
    const n = Math.min(Math.max(Number(limit ?? 100) || 100, 1), 10_000);
    const data = (await this.files.list(principal, n, purpose)).map(toOpenAiFile);
    return { object: 'list', data, has_more: false, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null };
  }

  @Get(':id')
  @ApiOkResponse({ schema: FILE_SCHEMA })
  async get(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return toOpenAiFile(await this.files.describe(principal, id));
  }

  @Get(':id/content')
  async content(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Res() response: Response) {
    const chunks = await this.files.content(principal, id);
    response.status(200).setHeader('Content-Type', 'application/jsonl; charset=utf-8');
    for await (const chunk of chunks) {
      if (!response.write(chunk)) await new Promise((resolve) => response.once('drain', resolve));
    }
    response.end();
  }

  @Delete(':id')
  @HttpCode(200)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    await this.files.remove(principal, id);
    return { id, object: 'file', deleted: true };
  }
}
