import { FINAL_BATCH_STATUSES } from '@app/contracts';

// The batch page's HTML: a shell with no data (the browser code fetches everything with the user's key), so it is
// served without a key. Light on purpose: one HTML answer, one script (/ui/page.js), no build step for the user.

const escapeAttribute = (value: string) => value.replace(/&/g, '&amp;').replace(/'/g, '&#39;').replace(/</g, '&lt;');

const STYLE = `
  :root { font-family: system-ui, sans-serif; color: #1d2430; background: #f6f7f9; }
  body { margin: 0; }
  header { display: flex; align-items: center; gap: 1rem; padding: .75rem 1.5rem; background: #1d2430; color: white; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header a { color: #b9c4d6; margin-left: auto; }
  main { padding: 1rem 1.5rem; display: grid; gap: 1rem; }
  section { background: white; border: 1px solid #dde1e7; border-radius: 6px; padding: 1rem; }
  h2 { font-size: 1rem; margin: 0 0 .75rem; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eef0f3; vertical-align: top; }
  tr.selected { background: #eef4ff; }
  td.output { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .8rem; max-width: 50rem; overflow-wrap: anywhere; }
  .bar { position: relative; width: 12rem; height: 1.1rem; background: #e6e9ee; border-radius: 3px; overflow: hidden; }
  .bar div { height: 100%; background: #3b82f6; transition: width .3s; }
  .bar div.with-failures { background: #f59e0b; }
  .bar span { position: absolute; inset: 0; text-align: center; font-size: .75rem; line-height: 1.1rem; }
  #detail .bar { width: 100%; height: 1.4rem; }
  #detail .bar span { line-height: 1.4rem; }
  .status { font-weight: 600; }
  .status.completed { color: #15803d; } .status.failed, .status.expired { color: #b91c1c; } .status.cancelled, .status.cancelling { color: #6b7280; }
  .facts { display: flex; gap: 1.5rem; margin: .75rem 0; flex-wrap: wrap; }
  .actions { display: flex; gap: .5rem; flex-wrap: wrap; margin-bottom: .75rem; }
  button { font: inherit; padding: .3rem .8rem; border: 1px solid #b9c4d6; border-radius: 4px; background: white; cursor: pointer; }
  button:disabled { opacity: .4; cursor: default; }
  #cancel { border-color: #b91c1c; color: #b91c1c; }
  input { font: inherit; padding: .3rem .5rem; border: 1px solid #b9c4d6; border-radius: 4px; }
  form#key-form { display: flex; gap: .5rem; align-items: center; }
`;

export function batchPageHtml(): string {
  const finalStatuses = escapeAttribute(JSON.stringify(FINAL_BATCH_STATUSES));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>falconq batches</title>
<style>${STYLE}</style>
</head>
<body data-final-statuses='${finalStatuses}'>
<header><h1>falconq batches</h1><a href="/docs">API docs</a><a href="/dashboard">queue dashboard</a></header>
<main>
  <section id="key-section" hidden>
    <form id="key-form">
      <span id="key-message"></span>
      <input id="key" type="password" placeholder="API key" autocomplete="off" aria-label="API key">
      <button type="submit">Use key</button>
    </form>
  </section>
  <section>
    <h2>Batches</h2>
    <table id="batches">
      <thead><tr><th>id</th><th>status</th><th>progress</th><th>requests</th><th>created</th><th id="tenant-column" hidden>tenant</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="empty" hidden>No batches yet. Submit one with <code>POST /batches</code>, <code>POST /v1/batches</code> or <code>falconq batch submit</code>.</p>
  </section>
  <section id="detail" hidden>
    <h2>Batch <span id="detail-id"></span> <span id="detail-status" class="status"></span></h2>
    <div id="detail-bar"></div>
    <div class="facts"><span id="detail-counts"></span><span id="detail-rate"></span><span id="detail-eta"></span></div>
    <div class="actions"><button id="cancel" hidden>Cancel batch</button><button id="retry" hidden>Retry failed</button><span id="downloads"></span></div>
    <h2>Results</h2>
    <div class="actions">
      <input id="search" type="search" placeholder="custom_id starts with..." aria-label="search by custom_id">
      <button id="prev">Previous</button><button id="next">Next</button>
    </div>
    <table id="results"><thead><tr><th>#</th><th>custom_id</th><th>status</th><th>output</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script src="/ui/page.js"></script>
</body>
</html>
`;
}
