/**
 * The floor the serving bench measures tern against: an HTTP server that does
 * no work. It reads each request body to the end and answers with bytes it
 * was given at start (tern's own answer to the same request, captured by the
 * bench), so clients send and receive exactly what they do with tern. What a
 * model server costs above this floor is its own; the floor itself is what
 * the machine charges for one HTTP exchange with these payloads (syscalls,
 * loopback copies, waking the other process), and no Node server can go below
 * it. Plain node:http rather than fastify: the floor must be the least a Node
 * server can do. Run as a child process:
 *
 *   node dist/bench/floor-server.js --answer-file a.bin --header-length 120 --port 8200
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    'answer-file': { type: 'string' },
    'header-length': { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8200' },
  },
});

const answerFile = values['answer-file'];
const headerLength = Number(values['header-length']);
if (!answerFile || !Number.isInteger(headerLength) || headerLength < 0) {
  process.stderr.write('usage: floor-server --answer-file <bytes> --header-length <n> [--host H] [--port P]\n');
  process.exit(2);
}

const answer = readFileSync(answerFile);
const answerHeaders = {
  'content-type': 'application/octet-stream',
  'inference-header-content-length': String(headerLength),
  'content-length': String(answer.length),
};

const server = http.createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ready":true}');
    return;
  }
  req.on('data', () => { /* read the body, keep nothing */ });
  req.on('end', () => res.writeHead(200, answerHeaders).end(answer));
});

const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

server.listen(Number(values.port), values.host);
