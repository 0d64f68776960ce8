/**
 * The control plane's end of calls to node agents (protocol/rpc.ts): sends a
 * request over the fleet hub, waits for the agent's ack and result, hands
 * downloaded data to the caller frame by frame and returns credit as the
 * caller consumes it, and streams an upload to the agent within the agent's
 * credit. A call fails with NODE_UNAVAILABLE the moment it can no longer
 * complete: the node goes down, its agent starts a new session (its calls
 * died with the old one), or the hub loses the broker.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { TernError } from '../../protocol/errors.js';
import { RPC_ACK_TIMEOUT_MS, RPC_WINDOW, type RpcFromAgentFrame, type RpcStream } from '../../protocol/rpc.js';
import type { FleetHub } from './fleet-hub.js';
import { checkSequence, StreamSender } from './rpc-stream.js';

export interface CallOptions {
  /** Takes each downloaded chunk in order; the agent gets its credit back when the returned promise settles. */
  onData?: (data: Buffer, stream: RpcStream | undefined) => void | Promise<void>;
  /** Bytes to upload as the call's data stream (ended by an `end` frame). */
  input?: AsyncIterable<Buffer | Uint8Array>;
  /** Aborting cancels the call on the agent (a log follower hung up). */
  signal?: AbortSignal;
  /** Time allowed after the ack until the result (default 120 s; 0: none, for log follows). */
  timeoutMs?: number;
}

interface PendingCall {
  node: string;
  method: string;
  expectedSeq: number;
  /** Data frames are handed over one after the other: each waits for the previous one's consumer. */
  delivered: Promise<void>;
  upload?: StreamSender;
  options: CallOptions;
  timer?: NodeJS.Timeout;
  settle: (err: Error | undefined, value?: unknown) => void;
}

const DEFAULT_TIMEOUT_MS = 120_000;

export class NodeRpc {
  private readonly calls = new Map<string, PendingCall>();

  constructor(private readonly hub: FleetHub, private readonly log: Logger) {
    hub.on('rpc', (node, frame) => this.onFrame(node, frame));
    hub.on('nodeDown', (node, info) => this.failNode(node, `node ${node} went down (${info.reason}) during the call`));
    hub.on('agentSession', (node) => this.failNode(node, `the agent of node ${node} reconnected; the call was cut off`));
    hub.on('connection', (up) => {
      if (!up) this.failAll('the control plane lost its MQTT broker during the call');
    });
  }

  /** Calls `method` on `node`'s agent; resolves with its result. */
  call(node: string, method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    if (!this.hub.connected) return Promise.reject(new TernError('BROKER_UNAVAILABLE', 'the control plane is not connected to its MQTT broker'));
    if (options.signal?.aborted) return Promise.reject(new TernError('NODE_UNAVAILABLE', 'the call was cancelled before it started'));
    const id = randomBytes(9).toString('base64url');
    return new Promise((resolve, reject) => {
      const call: PendingCall = {
        node, method, expectedSeq: 0, delivered: Promise.resolve(), options,
        settle: (err, value) => {
          if (!this.calls.delete(id)) return;
          clearTimeout(call.timer);
          call.upload?.gate.fail(err ?? new Error('the call ended'));
          options.signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve(value);
        },
      };
      const onAbort = () => {
        this.hub.publishRpc(node, { t: 'cancel', id, reason: 'the caller went away' });
        call.settle(new TernError('NODE_UNAVAILABLE', 'the call was cancelled'));
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      call.timer = setTimeout(() => call.settle(new TernError('NODE_UNAVAILABLE',
        `node ${node} did not answer ${method} within ${RPC_ACK_TIMEOUT_MS / 1000} s (is its agent connected, and as new as the control plane?)`)), RPC_ACK_TIMEOUT_MS);
      this.calls.set(id, call);
      this.hub.publishRpc(node, { t: 'req', id, method, params, window: RPC_WINDOW });
    });
  }

  /** Calls in flight (for tests and metrics). */
  get inFlight(): number {
    return this.calls.size;
  }

  private onFrame(node: string, frame: RpcFromAgentFrame): void {
    const call = this.calls.get(frame.id);
    if (!call || call.node !== node) return; // a late frame of a finished call, or a node answering for another's call
    switch (frame.t) {
      case 'ack': return this.onAck(frame.id, call);
      case 'data': return this.onData(frame.id, call, frame.seq, Buffer.from(frame.data, 'base64'), frame.stream);
      case 'credit': return call.upload?.gate.grant(frame.n);
      case 'result':
        // Data frames still being consumed come first.
        void call.delivered.then(() => call.settle(undefined, frame.value), (err: Error) => call.settle(err));
        return;
      case 'error':
        call.settle(new TernError(frame.code as TernError['code'], frame.message));
    }
  }

  private onAck(id: string, call: PendingCall): void {
    clearTimeout(call.timer);
    const timeout = call.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (timeout > 0) {
      call.timer = setTimeout(() => {
        this.hub.publishRpc(call.node, { t: 'cancel', id, reason: 'timed out' });
        call.settle(new TernError('DEADLINE_EXCEEDED', `${call.method} on node ${call.node} took longer than ${timeout / 1000} s`));
      }, timeout);
    }
    if (call.options.input) void this.upload(id, call, call.options.input);
  }

  private onData(id: string, call: PendingCall, seq: number, data: Buffer, stream: RpcStream | undefined): void {
    const gap = checkSequence(call.expectedSeq, seq);
    if (gap) {
      this.hub.publishRpc(call.node, { t: 'cancel', id, reason: gap });
      call.settle(new TernError('NODE_UNAVAILABLE', gap));
      return;
    }
    call.expectedSeq++;
    const consumer = call.options.onData;
    call.delivered = call.delivered.then(async () => {
      if (consumer) await consumer(data, stream);
      if (this.calls.has(id)) this.hub.publishRpc(call.node, { t: 'credit', id, n: 1 });
    });
    call.delivered.catch((err: Error) => {
      // Every later frame's link of the chain rejects too: cancel once.
      if (!this.calls.has(id)) return;
      this.hub.publishRpc(call.node, { t: 'cancel', id, reason: `the receiver failed: ${err.message}` });
      call.settle(err);
    });
  }

  private async upload(id: string, call: PendingCall, input: AsyncIterable<Buffer | Uint8Array>): Promise<void> {
    const sender = new StreamSender(id, RPC_WINDOW, (frame) => this.hub.publishRpc(call.node, frame));
    call.upload = sender;
    try {
      for await (const chunk of input) await sender.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      if (this.calls.has(id)) this.hub.publishRpc(call.node, { t: 'end', id });
    } catch (err) {
      if (!this.calls.has(id)) return; // the call ended first (its error is the one that counts)
      this.log.debug({ err, node: call.node, method: call.method }, 'upload stream failed');
      this.hub.publishRpc(call.node, { t: 'cancel', id, reason: 'the upload stream failed' });
      call.settle(new TernError('BAD_REQUEST', `the upload stopped: ${(err as Error).message}`));
    }
  }

  private failNode(node: string, why: string): void {
    for (const call of [...this.calls.values()]) if (call.node === node) call.settle(new TernError('NODE_UNAVAILABLE', why));
  }

  private failAll(why: string): void {
    for (const call of [...this.calls.values()]) call.settle(new TernError('NODE_UNAVAILABLE', why));
  }
}
