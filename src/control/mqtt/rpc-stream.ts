/**
 * Flow control for the data streams of a call (protocol/rpc.ts), the same on
 * both ends: a sender publishes at most `window` data frames beyond the
 * credit its receiver has returned, and a receiver returns one credit per
 * frame once its consumer took it (an HTTP response drained, a tar entry
 * written). A slow operator's terminal thus slows the container's log stream
 * on the node instead of piling megabytes up in the broker or the control
 * plane. (MQTT itself has no per-stream flow control; its receive maximum
 * counts QoS 1/2 messages per session, not per call.)
 */
import type { Writable } from 'node:stream';
import { RPC_CHUNK_BYTES, type RpcDataFrame, type RpcStream } from '../../protocol/rpc.js';

/** Credits of one sending stream: `take` waits while none are left. */
export class CreditGate {
  private waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private failure: Error | undefined;

  constructor(private credits: number) {}

  take(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.credits > 0) {
      this.credits--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  grant(n: number): void {
    this.credits += n;
    while (this.credits > 0 && this.waiters.length) {
      this.credits--;
      this.waiters.shift()!.resolve();
    }
  }

  /** Fails every waiter and every later `take` (the call ended or was cut off). */
  fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }
}

/** Sends one call's data as frames of at most RPC_CHUNK_BYTES, each after taking a credit. */
export class StreamSender {
  private seq = 0;
  readonly gate: CreditGate;

  constructor(private readonly id: string, window: number, private readonly publish: (frame: RpcDataFrame) => void) {
    this.gate = new CreditGate(window);
  }

  async write(data: Buffer, stream?: RpcStream): Promise<void> {
    for (let at = 0; at < data.length; at += RPC_CHUNK_BYTES) {
      await this.gate.take();
      const chunk = data.subarray(at, at + RPC_CHUNK_BYTES);
      this.publish({ t: 'data', id: this.id, seq: this.seq++, data: chunk.toString('base64'), ...(stream ? { stream } : {}) });
    }
  }
}

/** Writes one received frame's bytes and returns its credit once `out` has taken them (at once, or on drain). */
export function writeThenCredit(out: Writable, bytes: Buffer | string, credit: () => void): void {
  if (out.write(bytes)) credit();
  else out.once('drain', credit);
}

/** Checks a data frame's sequence number: frames arrive in order on one MQTT session, so a gap means frames were lost. */
export function checkSequence(expected: number, seq: number): string | undefined {
  return seq === expected ? undefined : `data frame ${seq} arrived where ${expected} was expected (frames lost on the way)`;
}
