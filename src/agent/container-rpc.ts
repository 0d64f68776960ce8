/**
 * The container operations an operator runs on this node through the control
 * plane (`/api/v1/nodes/:id/containers/...`): the handlers behind the
 * `containers.*` methods of protocol/rpc.ts, on the engine of the agent's
 * container runtime. Only containers tern made (they carry `tern.kind`) are
 * reachable: the node's other containers are none of the fleet's business.
 */
import { TernError } from '../protocol/errors.js';
import { ContainerMethods, parseContainerParams as parse, type ContainerMethod } from '../protocol/rpc.js';
import type { Engine } from '../containers/engine.js';
import { LABELS } from '../containers/labels.js';
import type { RpcCall, RpcHandler } from './rpc-server.js';

/** The node's engine, or undefined when the agent runs no container runtime. */
export type EngineSource = () => Promise<Engine> | undefined;

export function containerHandlers(engineOf: EngineSource, node: () => string | undefined): Record<string, RpcHandler> {
  const engine = async (): Promise<Engine> => {
    const e = engineOf();
    if (!e) throw new TernError('CONFLICT', `node ${node() ?? '?'} runs no container runtime (start its agent with --container-engine)`);
    return e;
  };
  const ops = () => import('../containers/container-ops.js');
  /** The container's engine and description, refused unless tern made it. */
  const ternContainer = async (name: string) => {
    const e = await engine();
    const { info } = await (await ops()).container(e, name);
    if (!info.Config.Labels?.[LABELS.kind]) throw new TernError('NOT_FOUND', `no tern container '${name}' on node ${node() ?? '?'} (see: tern containers ls --node)`);
    return { engine: e, info };
  };
  const sendChunk = (call: RpcCall) => (c: { stream: 'stdout' | 'stderr'; data: Buffer }) => call.send(c.data, c.stream);

  const handlers: { [M in ContainerMethod]: (params: unknown, call: RpcCall) => Promise<unknown> } = {
    list: async () => ({ containers: await (await ops()).listContainers(await engine()) }),
    inspect: async (params) => {
      return (await ternContainer(parse('inspect', params).name)).info;
    },
    lifecycle: async (params) => {
      const p = parse('lifecycle', params);
      await (await ops()).lifecycle((await ternContainer(p.name)).engine, p.name, p.op, p.grace_s);
      return { name: p.name, op: p.op };
    },
    logs: async (params, call) => {
      const p = parse('logs', params);
      await (await ops()).streamLogs((await ternContainer(p.name)).engine, p.name, { ...p, signal: call.signal }, sendChunk(call));
      return { name: p.name };
    },
    exec: async (params, call) => {
      const p = parse('exec', params);
      return { exit_code: await (await ops()).exec((await ternContainer(p.name)).engine, p.name, p.cmd, sendChunk(call)) };
    },
    copyIn: async (params, call) => {
      const p = parse('copyIn', params);
      await (await ops()).copyInStream((await ternContainer(p.name)).engine, p.name, call.input, { dest: p.path, size: p.size, mode: p.mode });
      return { path: p.path, size: p.size };
    },
    copyOut: async (params, call) => {
      const p = parse('copyOut', params);
      const { Writable } = await import('node:stream');
      const toCaller = () => new Writable({ write: (chunk: Buffer, _e, cb) => { call.send(chunk).then(() => cb(), cb); } });
      return { path: p.path, size: await (await ops()).copyOutStream((await ternContainer(p.name)).engine, p.name, p.path, toCaller) };
    },
  };
  return Object.fromEntries(Object.entries(handlers).map(([m, h]) => [ContainerMethods[m as ContainerMethod].name, h]));
}
