// The batch page in a real headless Chromium (Debian's package, driven by playwright-core; nothing is downloaded):
// the page lists batches, follows one's progress bar to 100% while the tiny model works, shows results by
// custom_id, and cancels a batch. CI installs chromium and sets FALCONQ_REQUIRE_BROWSER=1, so a missing browser fails
// there; on a machine without it the suite is skipped with a message.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';

function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, 'chromium', 'chromium-browser'].filter((c): c is string => Boolean(c));
  for (const candidate of candidates) {
    try {
      return execFileSync('sh', ['-c', `command -v "${candidate}"`], { encoding: 'utf8' }).trim() || null;
    } catch {
      // not this one
    }
  }
  return null;
}

const executablePath = findChromium();
if (!executablePath && process.env.FALCONQ_REQUIRE_BROWSER) {
  throw new Error('FALCONQ_REQUIRE_BROWSER is set but no chromium was found: apt-get install -y chromium (or set CHROMIUM_PATH)');
}
if (!executablePath) console.warn('batch-page.e2e-spec: skipped, no chromium on this machine (apt-get install -y chromium, or set CHROMIUM_PATH)');
const describeWithBrowser = executablePath ? describe : describe.skip;

/** Screenshots go to FALCONQ_SCREENSHOT_DIR (docs/img for the docs), else to a temporary directory. */
const screenshotDir = process.env.FALCONQ_SCREENSHOT_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'falconq-page-'));
const KEY = 'sk-page-test';

describeWithBrowser('batch page (headless Chromium)', () => {
  let redis: TestRedis;
  let api: ApiProcess;
  let worker: WorkerProcess | undefined;
  let browser: Browser;
  let page: Page;
  let modelDir: string;

  const submit = async (count: number): Promise<string> => {
    const response = await fetch(`${api.url}/batches`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompts: Array.from({ length: count }, (_, i) => `Prompt ${i}`), max_new_tokens: 16, ignore_eos: true }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as { id: string }).id;
  };
  const percent = async () => Number(await page.locator('#detail-bar .bar').getAttribute('aria-valuenow'));
  const rows = (table: string) => page.locator(`${table} tbody tr`).count();
  /** Polls `check` until it holds (the page updates as events arrive). */
  const eventually = async (check: () => Promise<boolean>, what: string, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) {
        const shown = `${await textOf('#detail-status')} | ${await textOf('#detail-counts')} | ${await page.locator('#detail-bar .bar').getAttribute('aria-valuenow')}`;
        throw new Error(`the page never showed ${what}; it shows: ${shown}; worker output:\n${worker?.output().slice(-2000) ?? '(no worker)'}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const textOf = async (selector: string) => (await page.textContent(selector)) ?? '';

  beforeAll(async () => {
    modelDir = await tinyModelDir();
    redis = await startTestRedis();
    // No worker yet: the batches wait in the queue, so the page sees them at 0% whatever the machine's speed.
    api = await startApi({ redisUrl: redis.url, prefix: redis.prefix, modelDir, env: { FALCONQ_API_KEYS: `${KEY}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0' } });
    browser = await chromium.launch({ executablePath: executablePath!, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await worker?.stop();
    await api?.stop();
    await redis?.stop();
  });

  it('lists the batches, cancels one, follows another to 100% and shows its results by custom_id', async () => {
    const toRun = await submit(24);
    const toCancel = await submit(8);

    // GET / leads to the page, which asks for the key, then lists the caller's batches.
    await page.goto(`${api.url}/`);
    expect(page.url()).toBe(`${api.url}/ui`);
    await page.locator('#key-form').waitFor({ state: 'visible' });
    await page.fill('#key', KEY);
    await page.click('#key-form button');
    await page.locator(`#batches tr[data-id="${toRun}"]`).waitFor();
    await page.locator(`#batches tr[data-id="${toCancel}"]`).waitFor();
    expect(await page.locator('#key-section').isVisible()).toBe(false);

    // Cancel: the batch ends cancelled, its progress bar and the list say so.
    await page.click(`#batches a[href="#${toCancel}"]`);
    await page.locator('#cancel').waitFor({ state: 'visible' });
    await page.click('#cancel');
    await eventually(async () => (await textOf('#detail-status')) === 'cancelled', 'the batch cancelled');
    await page.locator(`#batches tr[data-id="${toCancel}"] .status.cancelled`).waitFor();
    expect(await page.locator('#cancel').isVisible()).toBe(false);

    // The other batch at 0% while no worker runs...
    await page.click(`#batches a[href="#${toRun}"]`);
    await eventually(async () => (await textOf('#detail-id')) === toRun, 'the second batch selected');
    expect(await percent()).toBe(0);
    expect(await page.textContent('#detail-counts')).toContain('24 to go, of 24');
    await page.screenshot({ path: path.join(screenshotDir, 'batch-page-waiting.png'), fullPage: true });

    // ...then a worker starts and the live stream carries the bar to 100%.
    worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4 });
    await eventually(async () => (await percent()) === 100, 'the bar at 100%', 120_000);
    await eventually(async () => (await textOf('#detail-status')) === 'completed', 'the batch completed');
    expect(await page.textContent('#detail-counts')).toContain('24 succeeded, 0 failed');
    expect(await page.textContent('#detail-rate')).toMatch(/tokens\/s/);

    // Results by custom_id, and the search by custom_id prefix.
    await eventually(async () => (await rows('#results')) === 24, '24 results');
    const customIds = await page.locator('#results tbody tr td:nth-child(2)').allTextContents();
    expect(customIds).toEqual(Array.from({ length: 24 }, (_, i) => `item-${i}`));
    await page.locator('#downloads button', { hasText: 'Download output file' }).waitFor();
    await page.screenshot({ path: path.join(screenshotDir, 'batch-page-completed.png'), fullPage: true });
    await page.fill('#search', 'item-2');
    await eventually(async () => (await rows('#results')) === 5, 'the 5 results of the search'); // item-2, item-20..23
    expect(await page.locator('#results tbody tr td:nth-child(2)').allTextContents()).toEqual(['item-2', 'item-20', 'item-21', 'item-22', 'item-23']);
  }, 400_000);
});
