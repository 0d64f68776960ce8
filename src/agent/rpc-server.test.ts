import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RPC_CHUNK_BYTES, type RpcFromAgentFrame, type RpcToAgentFrame } from '../protocol/rpc.js';
import { containerHandlers } from './container-rpc.js';
import { RpcServer, type RpcHandler } from './rpc-server.js';

const log = pino({ level: 'silent' });
const tick = () => new Promise((r) => setTimeout(r, 10));

function server(handlers: Record<string, RpcHandler>) {
  const sent: RpcFromAgentFrame[] = [];
  const s = new RpcServer(handlers, (f) => sent.push(f), log);
  const req = (id: string, method: string, params: unknown = {}, window = 4) => s.onFrame({ t: 'req', id, method, params, window } as RpcToAgentFrame);
  const of = (id: string, t: RpcFromAgentFrame['t']) => sent.filter((f) => f.id === id && f.t === t);
  return { s, sent, req, of };
}

describe('RpcServer', () => {
  it('sends no more data frames than the caller gave credit for', async () => {
    const { s, req, of } = server({ blast: async (_p, call) => { for (let i = 0; i < 10; i++) await call.send(Buffer.alloc(RPC_CHUNK_BYTES, i)); return 'done'; } });
    req('a', 'blast');
    await tick();
    expect(of('a', 'ack')).toHaveLength(1);
    expect(of('a', 'data')).toHaveLength(4); // the window, and no further without credit
    s.onFrame({ t: 'credit', id: 'a', n: 2 });
    await tick();
    expect(of('a', 'data')).toHaveLength(6);
    s.onFrame({ t: 'credit', id: 'a', n: 100 });
    await tick();
    const data = of('a', 'data') as Extract<RpcFromAgentFrame, { t: 'data' }>[];
    expect(data.map((f) => f.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Buffer.from(data[7].data, 'base64').equals(Buffer.alloc(RPC_CHUNK_BYTES, 7))).toBe(true);
    expect(of('a', 'result')).toEqual([{ t: 'result', id: 'a', value: 'done' }]);
    expect(s.running).toBe(0);
  });

  it('feeds an upload to the handler, returns credit as it is read, and aborts on a lost frame', async () => {
    const { s, req, of, sent } = server({
      sum: async (_p, call) => {
        let n = 0;
        for await (const c of call.input) n += (c as Buffer).length;
        return n;
      },
    });
    req('u', 'sum');
    for (let seq = 0; seq < 3; seq++) s.onFrame({ t: 'data', id: 'u', seq, data: Buffer.alloc(1000).toString('base64') });
    s.onFrame({ t: 'end', id: 'u' });
    await tick();
    expect(of('u', 'credit').reduce((n, f) => n + (f as { n: number }).n, 0)).toBe(3);
    expect(of('u', 'result')).toEqual([{ t: 'result', id: 'u', value: 3000 }]);

    req('g', 'sum');
    s.onFrame({ t: 'data', id: 'g', seq: 0, data: 'AA==' });
    s.onFrame({ t: 'data', id: 'g', seq: 2, data: 'AA==' });
    await tick();
    expect(sent.find((f) => f.id === 'g' && f.t === 'error')).toMatchObject({ code: 'NODE_UNAVAILABLE', message: expect.stringMatching(/data frame 2 arrived where 1 was expected/) });
  });

  it('answers an unknown method, too many calls and a cancel with clear errors', async () => {
    const { s, req, of } = server({ wait: (_p, call) => new Promise((_r, reject) => call.signal.addEventListener('abort', () => reject(new Error('aborted')))) });
    req('x', 'no.such.method');
    expect(of('x', 'error')[0]).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/no method no\.such\.method/) });
    for (let i = 0; i < 16; i++) req(`w${i}`, 'wait');
    req('over', 'wait');
    expect(of('over', 'error')[0]).toMatchObject({ code: 'TOO_MANY_CALLS' });
    s.onFrame({ t: 'cancel', id: 'w3', reason: 'the caller went away' });
    await tick();
    expect(of('w3', 'error')[0]).toMatchObject({ code: 'NODE_UNAVAILABLE', message: 'cancelled by the control plane: the caller went away' });
    s.abortAll('the agent lost its MQTT session');
    await tick();
    expect(s.running).toBe(0);
    expect(of('w9', 'error')[0]).toMatchObject({ message: 'the agent lost its MQTT session' });
  });

  it('container calls on a node without a container runtime say so, and bad params are refused before any engine is asked', async () => {
    const { req, of } = server(containerHandlers(() => undefined, () => 'pi-1'));
    req('l', 'containers.list');
    req('b', 'containers.copy-out', { name: 'x', path: '../etc/passwd' });
    for (let i = 0; i < 200 && of('l', 'error').length + of('b', 'error').length < 2; i++) await tick();
    expect(of('l', 'error')[0]).toMatchObject({ code: 'CONFLICT', message: 'node pi-1 runs no container runtime (start its agent with --container-engine)' });
    expect(of('b', 'error')[0]).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/containers\.copy-out: path: paths inside a container are absolute/) });
  });
});
