/** Until the dashboard lands (its own issue), `/` shows what is running and where the API is. */
export function placeholderPage(summary: { nodes: number; deployments: number; models: number }): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>tern</title></head><body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>tern control plane</h1>
<p>${summary.nodes} node(s), ${summary.models} model(s), ${summary.deployments} deployment(s).</p>
<p>The dashboard is not built yet. The REST API is at <a href="/healthz">/api/v1</a>, described by <a href="/openapi.json">/openapi.json</a>; the <code>tern</code> CLI drives it.</p>
</body></html>`;
}
