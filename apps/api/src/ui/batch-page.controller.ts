import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Controller, Get, Header, Redirect } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Public } from '../auth/api-key.guard';
import { batchPageHtml } from './batch-page';

/** The page's browser code, compiled by apps/api/ui/tsconfig.json next to the api in dist/. */
const PAGE_SCRIPT_FILE = join(__dirname, '..', '..', 'ui', 'page.js');

/** The batch page for people: GET / sends them there. Its data comes from the api's own routes, with their key. */
@ApiExcludeController()
@Controller()
export class BatchPageController {
  private readonly html = batchPageHtml();
  private script: string | undefined;

  @Get()
  @Public()
  @Redirect('/ui', 302)
  root(): void {}

  @Get('ui')
  @Public()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-cache')
  page(): string {
    return this.html;
  }

  @Get('ui/page.js')
  @Public()
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-cache')
  pageScript(): string {
    this.script ??= readFileSync(PAGE_SCRIPT_FILE, 'utf8');
    return this.script;
  }
}
