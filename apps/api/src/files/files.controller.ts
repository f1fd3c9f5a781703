import { Controller, Delete, Get, HttpCode, Param, Post, Query, Res, UploadedFile, UseInterceptors, Body, Inject } from '@nestjs/common';
import { FileInterceptor } from '@nestjs/platform-express';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiTags, ApiOkResponse } from '@nestjs/swagger';
import { FILE_SCHEMA } from '../http/openapi';
import type { Response } from 'express';
import { ApiError } from '../http/api-error';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { FilesService, toOpenAiFile } from './files.service';

interface UploadedBatchFile {
  originalname: string;
  buffer: Buffer;
  size: number;
}

/** ignoreBOM keeps a leading BOM in the text, so the stored file stays byte-identical to the upload. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** OpenAI Files API, for batch input (purpose "batch") and batch output files. */
@ApiTags('files (OpenAI compatible)')
@ApiBearerAuth()
@Controller('v1/files')
export class FilesController {
  constructor(private readonly files: FilesService, @Inject(API_CONFIG) private readonly config: ApiConfig) {}

  @Post()
  @HttpCode(200)
  @ApiConsumes('multipart/form-data')
  @ApiOkResponse({ schema: FILE_SCHEMA })
  @ApiBody({ schema: { type: 'object', required: ['file', 'purpose'], properties: { file: { type: 'string', format: 'binary' }, purpose: { type: 'string', enum: ['batch'] } } } })
  @UseInterceptors(FileInterceptor('file'))
  async upload(@CurrentPrincipal() principal: Principal, @UploadedFile() file: UploadedBatchFile | undefined, @Body() body: { purpose?: string }) {
    if (!file) throw ApiError.badRequest('file: missing; send the JSONL file as the multipart field "file"', { param: 'file' });
    if (body?.purpose !== 'batch') {
      throw ApiError.badRequest(`purpose: must be "batch", got ${body?.purpose === undefined ? 'nothing' : `"${body.purpose}"`}`, { param: 'purpose' });
    }
    if (file.size > this.config.limits.maxFileBytes) {
      throw ApiError.tooLarge(`file: ${file.size} bytes is more than FALCONQ_MAX_FILE_BYTES (${this.config.limits.maxFileBytes})`, 'file');
    }
    let content: string;
    try {
      // Strict decoding: invalid bytes are refused, while a U+FFFD the file really holds (model output does) is kept.
      content = STRICT_UTF8.decode(file.buffer);
    } catch {
      throw ApiError.badRequest('file: is not valid UTF-8 text', { param: 'file' });
    }
    return toOpenAiFile(await this.files.upload(principal, file.originalname || 'upload.jsonl', body.purpose, content));
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
