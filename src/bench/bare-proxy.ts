/**
 * The reference bench:gateway measures the gateway against: the least a
 * reverse proxy in Node can do for a REST request. It buffers the request
 * body (as the gateway must, to retry on another replica), sends it to one
 * fixed upstream over a keep-alive undici Pool, buffers the answer and writes
 * it back: no routing table, no replica choice, no retries, deadlines,
 * metrics or logs. What it adds over a direct request is the price of the hop
 * itself on this machine (one more HTTP exchange and two more process
 * wake-ups); what the gateway adds beyond it is the gateway's own. Run as a
 * child process:
 *
 *   node dist/bench/bare-proxy.js --upstream http://127.0.0.1:8000 --port 8300
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    upstream: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8300' },
  },
});

if (!values.upstream) {
  process.stderr.write('usage: bare-proxy --upstream <http://host:port> [--host H] [--port P]\n');
  process.exit(2);
}

const upstream = new Pool(values.upstream, { connections: 64 });
/** The headers an OIP request or answer needs to be read, both ways; the rest stay behind. */
const OIP_HEADERS = ['content-type', 'inference-header-content-length'] as const;

function oipHeaders(from: http.IncomingHttpHeaders, into: Record<string, string>): Record<string, string> {
  for (const name of OIP_HEADERS) {
    const v = from[name];
    if (typeof v === 'string') into[name] = v;
  }
  return into;
}

async function forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): Promise<void> {
  const answer = await upstream.request({
    path: req.url ?? '/', method: req.method as 'GET' | 'POST', headers: oipHeaders(req.headers, {}), body: req.method === 'GET' ? undefined : body,
  });
  const out = Buffer.from(await answer.body.arrayBuffer());
  res.writeHead(answer.statusCode, oipHeaders(answer.headers, { 'content-length': String(out.length) })).end(out);
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    forward(req, res, Buffer.concat(chunks)).catch((err: unknown) => {
      res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `upstream failed: ${(err as Error).message}` }));
    });
  });
});

const stop = () => server.close(() => void upstream.close().finally(() => process.exit(0)));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

server.listen(Number(values.port), values.host);
