// The batch page's browser code (a plain script, compiled by its own tsconfig with the DOM types; the api serves it
// at /ui/page.js). The server puts what the page must not hard-code on <body>: data-final-statuses, the statuses
// after which a batch no longer changes.

(() => {
  const $ = <T extends HTMLElement>(selector: string) => document.querySelector(selector) as T;
  const final = new Set(JSON.parse(document.body.dataset.finalStatuses ?? '[]') as string[]);
  const state: { key: string; selected: string | null; stream: AbortController | null; resultsOffset: number; tokensPerSecond: number } = {
    key: localStorage.getItem('falconq.key') ?? '', selected: null, stream: null, resultsOffset: 0, tokensPerSecond: 0,
  };
  const PAGE = 50;

  interface Counts { total: number; completed: number; failed: number }
  interface Batch { id: string; status: string; created_at: number; request_counts: Counts; output_file_id: string | null; error_file_id: string | null; metadata: Record<string, string> | null; tenant?: string }
  interface Progress { counts: Counts; tokensPerSecond: number; etaSeconds: number | null }
  interface Result { index: number; custom_id: string; status: string; text?: string; error?: { code: string; message: string } }

  function headers(): Record<string, string> {
    return state.key ? { Authorization: `Bearer ${state.key}` } : {};
  }

  async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
    const keyUsed = state.key;
    const response = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers as Record<string, string> | undefined) } });
    if (response.status === 401) {
      // A request sent before a new key was entered does not ask again.
      if (keyUsed === state.key) showKeyForm(keyUsed ? 'This key was refused; enter another.' : 'This falconq needs an API key.');
      throw new Error('unauthorized');
    }
    const body = (await response.json()) as T & { error?: { message: string } };
    if (!response.ok) throw new Error(body.error?.message ?? `${response.status}`);
    return body;
  }

  function text(tag: string, content: string, className?: string): HTMLElement {
    const element = document.createElement(tag);
    element.textContent = content;
    if (className) element.className = className;
    return element;
  }

  function bar(counts: Counts): HTMLElement {
    const done = counts.completed + counts.failed;
    const percent = counts.total > 0 ? Math.floor((100 * done) / counts.total) : 0;
    const outer = document.createElement('div');
    outer.className = 'bar';
    outer.setAttribute('role', 'progressbar');
    outer.setAttribute('aria-valuenow', String(percent));
    const inner = document.createElement('div');
    inner.style.width = `${percent}%`;
    if (counts.failed > 0) inner.className = 'with-failures';
    outer.append(inner, text('span', `${percent}%`));
    return outer;
  }

  function duration(seconds: number | null): string {
    if (seconds === null || !Number.isFinite(seconds)) return '-';
    if (seconds < 60) return `${Math.ceil(seconds)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
  }

  function showKeyForm(message: string): void {
    $('#key-message').textContent = message;
    $('#key-section').hidden = false;
  }

  async function loadList(): Promise<void> {
    const list = await api<{ data: Batch[] }>('/batches?limit=100');
    const rows = list.data.map((batch) => {
      const row = document.createElement('tr');
      row.dataset.id = batch.id;
      if (batch.id === state.selected) row.className = 'selected';
      const counts = batch.request_counts;
      const link = text('a', batch.id);
      (link as HTMLAnchorElement).href = `#${batch.id}`;
      const cells = [
        link, text('span', batch.status, `status ${batch.status}`), bar(counts),
        text('span', `${counts.completed} ok, ${counts.failed} failed / ${counts.total}`),
        text('span', new Date(batch.created_at * 1000).toLocaleString()),
        text('span', batch.tenant ?? ''),
      ];
      for (const cell of cells) {
        const td = document.createElement('td');
        td.append(cell);
        row.append(td);
      }
      return row;
    });
    $('#batches tbody').replaceChildren(...rows);
    $('#tenant-column').hidden = !list.data.some((batch) => batch.tenant !== undefined);
    $('#empty').hidden = rows.length > 0;
  }

  function renderProgress(progress: Progress, status: string): void {
    const { counts } = progress;
    $('#detail-bar').replaceChildren(bar(counts));
    $('#detail-status').textContent = status;
    $('#detail-status').className = `status ${status}`;
    $('#detail-counts').textContent = `${counts.completed} succeeded, ${counts.failed} failed, ${counts.total - counts.completed - counts.failed} to go, of ${counts.total}`;
    $('#detail-rate').textContent = `${progress.tokensPerSecond.toFixed(1)} tokens/s`;
    $('#detail-eta').textContent = final.has(status) ? 'done' : `ETA ${duration(progress.etaSeconds)}`;
  }

  function renderActions(batch: Batch): void {
    const isFinal = final.has(batch.status);
    ($('#cancel') as HTMLButtonElement).hidden = isFinal || batch.status === 'cancelling';
    ($('#retry') as HTMLButtonElement).hidden = !isFinal || batch.request_counts.failed === 0;
    const links: HTMLElement[] = [];
    for (const [label, id] of [['output file', batch.output_file_id], ['error file', batch.error_file_id]] as const) {
      if (!id) continue;
      const button = text('button', `Download ${label}`);
      button.addEventListener('click', () => void download(id, `${batch.id}-${label.replace(' ', '-')}.jsonl`));
      links.push(button);
    }
    $('#downloads').replaceChildren(...links);
  }

  async function download(fileId: string, name: string): Promise<void> {
    const response = await fetch(`/v1/files/${fileId}/content`, { headers: headers() });
    const url = URL.createObjectURL(await response.blob());
    const link = Object.assign(document.createElement('a'), { href: url, download: name });
    link.click();
    URL.revokeObjectURL(url);
  }

  async function loadResults(): Promise<void> {
    if (!state.selected) return;
    const search = ($('#search') as HTMLInputElement).value.trim();
    const query = search ? `custom_id_prefix=${encodeURIComponent(search)}&limit=${PAGE}` : `offset=${state.resultsOffset}&limit=${PAGE}`;
    const page = await api<{ data: Result[]; has_more: boolean }>(`/batches/${state.selected}/results?${query}`);
    const rows = page.data.map((result) => {
      const row = document.createElement('tr');
      const output = result.text ?? (result.error ? `${result.error.code}: ${result.error.message}` : '');
      for (const cell of [String(result.index), result.custom_id, result.status, output]) row.append(text('td', cell));
      row.lastElementChild!.className = 'output';
      return row;
    });
    $('#results tbody').replaceChildren(...rows);
    ($('#prev') as HTMLButtonElement).disabled = search !== '' || state.resultsOffset === 0;
    ($('#next') as HTMLButtonElement).disabled = search !== '' || !page.has_more;
  }

  /** Shows a batch's state from its record (no rates in it: the last ones seen stay). */
  function renderBatch(batch: Batch): void {
    renderProgress({ counts: batch.request_counts, tokensPerSecond: state.tokensPerSecond, etaSeconds: null }, batch.status);
    renderActions(batch);
  }

  /** Reads one server-sent event stream of the batch until it ends (final status, or the connection is cut). */
  async function readEvents(id: string, abort: AbortController, current: () => boolean): Promise<void> {
    const response = await fetch(`/batches/${id}/events`, { headers: headers(), signal: abort.signal });
    if (!response.ok || !response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let status = '';
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done || !current()) return;
      buffer += value;
      const events = buffer.split('\n\n');
      buffer = events.pop() ?? '';
      for (const raw of events) {
        const data = raw.split('\n').find((line) => line.startsWith('data: '));
        if (!data) continue;
        const event = JSON.parse(data.slice(6)) as { type: string; status?: string } & Progress;
        if (event.type === 'progress') {
          state.tokensPerSecond = event.tokensPerSecond;
          renderProgress(event, status || ($('#detail-status').textContent ?? ''));
        }
        if (event.type === 'status' && event.status) {
          status = event.status;
          renderBatch(await api<Batch>(`/batches/${id}`));
        }
        if (event.type === 'item' || event.type === 'status') void loadResults();
      }
    }
  }

  /**
   * Follows the batch (fetch, so the key goes in a header) until its final status, reconnecting when a stream ends
   * early; stops when another batch is chosen.
   */
  async function follow(id: string): Promise<void> {
    state.stream?.abort();
    const abort = new AbortController();
    state.stream = abort;
    const current = () => state.stream === abort && state.selected === id;
    while (current()) {
      const batch = await api<Batch>(`/batches/${id}`).catch(() => null);
      if (!current()) return;
      if (batch) {
        renderBatch(batch);
        if (final.has(batch.status)) {
          void loadResults();
          void loadList();
          return;
        }
      }
      await readEvents(id, abort, current).catch(() => undefined);
      if (current()) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function select(id: string): Promise<void> {
    state.stream?.abort();
    state.selected = id;
    state.resultsOffset = 0;
    const batch = await api<Batch>(`/batches/${id}`);
    if (state.selected !== id) return; // another batch was chosen meanwhile
    $('#detail').hidden = false;
    $('#detail-id').textContent = id;
    $('#results tbody').replaceChildren();
    state.tokensPerSecond = 0;
    renderBatch(batch);
    void loadList();
    await loadResults();
    if (state.selected === id) void follow(id);
  }

  async function act(action: 'cancel' | 'retry-failed'): Promise<void> {
    if (!state.selected) return;
    const batch = await api<Batch>(`/batches/${state.selected}/${action}`, { method: 'POST' });
    renderActions(batch);
    void select(batch.id);
  }

  function route(): void {
    const id = location.hash.slice(1);
    if (id) void select(id).catch((error: Error) => ($('#detail-counts').textContent = error.message));
  }

  $('#key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.key = ($('#key') as HTMLInputElement).value.trim();
    localStorage.setItem('falconq.key', state.key);
    $('#key-section').hidden = true;
    void loadList();
    route();
  });
  $('#cancel').addEventListener('click', () => void act('cancel'));
  $('#retry').addEventListener('click', () => void act('retry-failed'));
  $('#search').addEventListener('input', () => void loadResults());
  $('#prev').addEventListener('click', () => { state.resultsOffset = Math.max(0, state.resultsOffset - PAGE); void loadResults(); });
  $('#next').addEventListener('click', () => { state.resultsOffset += PAGE; void loadResults(); });
  window.addEventListener('hashchange', route);
  window.setInterval(() => void loadList().catch(() => undefined), 5000);
  void loadList().then(route, () => undefined);
})();
