/**
 * The agent's end of the control plane's calls (protocol/rpc.ts): acks each
 * request, runs its handler, streams what the handler sends within the
 * caller's credit, feeds an upload to the handler as a Readable (returning
 * credit as the handler consumes it), and answers with the result or the
 * error. Calls die with the MQTT session: the control plane fails them on its
 * side when it sees the agent reconnect.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { asTernError, TernError } from '../protocol/errors.js';
import type { RpcFromAgentFrame, RpcStream, RpcToAgentFrame } from '../protocol/rpc.js';
import { checkSequence, StreamSender, writeThenCredit } from '../control/mqtt/rpc-stream.js';

export interface RpcCall {
  /** Aborted when the caller cancels or the session drops. */
  readonly signal: AbortSignal;
  /** Sends data to the caller; resolves once the caller's credit allowed it. */
  send(data: Buffer, stream?: RpcStream): Promise<void>;
  /** The caller's upload, ended by its `end` frame. */
  readonly input: Readable;
}

export type RpcHandler = (params: unknown, call: RpcCall) => Promise<unknown>;

interface RunningCall {
  abort: AbortController;
  sender: StreamSender;
  input: PassThrough;
  expectedSeq: number;
}

/** Calls one agent runs at once; more are refused (a Pi's agent must not be swamped by an operator's loop). */
const MAX_CALLS = 16;

export class RpcServer {
  private readonly calls = new Map<string, RunningCall>();

  constructor(
    private readonly handlers: Record<string, RpcHandler>,
    private readonly publish: (frame: RpcFromAgentFrame) => void,
    private readonly log: Logger,
  ) {}

  onFrame(frame: RpcToAgentFrame): void {
    if (frame.t === 'req') return this.start(frame.id, frame.method, frame.params, frame.window);
    const call = this.calls.get(frame.id);
    if (!call) return; // a late frame of a finished call
    if (frame.t === 'credit') call.sender.gate.grant(frame.n);
    else if (frame.t === 'end') call.input.end();
    else if (frame.t === 'cancel') call.abort.abort(new TernError('NODE_UNAVAILABLE', `cancelled by the control plane: ${frame.reason ?? 'no reason given'}`));
    else this.onData(frame.id, call, frame.seq, Buffer.from(frame.data, 'base64'));
  }

  /** Aborts every running call (the MQTT session dropped: nobody is left to answer). */
  abortAll(why: string): void {
    for (const call of this.calls.values()) call.abort.abort(new TernError('NODE_UNAVAILABLE', why));
  }

  get running(): number {
    return this.calls.size;
  }

  private start(id: string, method: string, params: unknown, window: number): void {
    if (this.calls.has(id)) return;
    const handler = Object.hasOwn(this.handlers, method) ? this.handlers[method] : undefined;
    if (!handler) return this.fail(id, new TernError('NOT_FOUND', `this agent has no method ${method} (it may be older than the control plane)`));
    if (this.calls.size >= MAX_CALLS) return this.fail(id, new TernError('TOO_MANY_CALLS', `the agent is already running ${MAX_CALLS} calls; retry when some have finished`));
    const abort = new AbortController();
    const sender = new StreamSender(id, window, (frame) => this.publish(frame));
    const input = new PassThrough({ highWaterMark: 256 * 1024 });
    // A handler that reads the upload sees its failure through its own pipeline; unread, it must not crash the agent.
    input.on('error', () => undefined);
    const call: RunningCall = { abort, sender, input, expectedSeq: 0 };
    this.calls.set(id, call);
    abort.signal.addEventListener('abort', () => {
      sender.gate.fail(abort.signal.reason as Error);
      input.destroy(abort.signal.reason as Error);
    }, { once: true });
    this.publish({ t: 'ack', id });
    const context: RpcCall = { signal: abort.signal, send: (data, stream) => sender.write(data, stream), input };
    handler(params, context).then(
      (value) => this.finish(id, { t: 'result', id, value: value ?? null }),
      (err: unknown) => {
        const e = abort.signal.aborted ? asTernError(abort.signal.reason) : asTernError(err);
        if (e.code === 'INTERNAL') this.log.warn({ err, method }, 'call from the control plane failed');
        this.finish(id, { t: 'error', id, code: e.code, message: e.message });
      },
    );
  }

  private onData(id: string, call: RunningCall, seq: number, data: Buffer): void {
    const gap = checkSequence(call.expectedSeq, seq);
    if (gap) return call.abort.abort(new TernError('NODE_UNAVAILABLE', gap));
    call.expectedSeq++;
    writeThenCredit(call.input, data, () => {
      if (this.calls.has(id)) this.publish({ t: 'credit', id, n: 1 });
    });
  }

  private finish(id: string, frame: RpcFromAgentFrame): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.calls.delete(id);
    call.sender.gate.fail(new Error('the call ended'));
    call.input.destroy();
    this.publish(frame);
  }

  private fail(id: string, err: TernError): void {
    this.publish({ t: 'ack', id });
    this.publish({ t: 'error', id, code: err.code, message: err.message });
  }
}
