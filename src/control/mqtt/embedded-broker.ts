/**
 * The control plane's embedded MQTT broker: aedes on a TCP port of its own, with
 * in-memory persistence (retained messages, QoS 1 sessions, last wills).
 *
 * Every connection authenticates (username + password, checked by `auth`), and the
 * ACL of acl.ts applies to every PUBLISH and SUBSCRIBE:
 * - a refused SUBSCRIBE is answered with the failure return code 128 in SUBACK;
 * - a refused PUBLISH is dropped and logged, and the client is disconnected. MQTT
 *   3.1.1 has no negative PUBACK: a server must either acknowledge as if accepted
 *   or close the connection [MQTT-3.3.5-2]. aedes closes it, and we keep that: an
 *   agent that writes on another node's topics is broken or hostile, and being
 *   disconnected (its last will fires, the control plane sees it go down, it comes
 *   back with backoff) is the visible signal, where a silent PUBACK would hide it.
 *   (Mosquitto, when used as an external broker, acknowledges and drops instead.)
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { Readable } from 'node:stream';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { TernError } from '../../protocol/errors.js';
import { agentClientId, isValidNodeId, mayPublish, maySubscribe, type Principal } from './acl.js';

export type { Principal } from './acl.js';

export interface BrokerAuth {
  /** The identity behind these credentials, or undefined to refuse the connection. */
  authenticate(username: string, password: Buffer | undefined): Principal | undefined | Promise<Principal | undefined>;
}

/** The username the control plane's own MQTT client (FleetHub) connects with. */
export const CONTROL_USERNAME = 'tern-control';

/**
 * The usual BrokerAuth: `CONTROL_USERNAME` with the control plane's secret (a
 * random one per start is enough for the embedded broker), or a node id as the
 * username with that node's token as the password.
 */
export function fleetBrokerAuth(options: {
  controlPassword: string;
  verifyNodeToken(node: string, token: string): boolean;
}): BrokerAuth {
  const secret = Buffer.from(options.controlPassword);
  return {
    authenticate(username, password) {
      if (!password) return undefined;
      if (username === CONTROL_USERNAME) {
        return password.length === secret.length && timingSafeEqual(password, secret) ? { kind: 'control' } : undefined;
      }
      if (!isValidNodeId(username)) return undefined;
      return options.verifyNodeToken(username, password.toString('utf8')) ? { kind: 'node', node: username } : undefined;
    },
  };
}

/** A refused PUBLISH or SUBSCRIBE, for the control plane's audit trail. */
export interface AccessDenial {
  action: 'publish' | 'subscribe';
  principal: Principal;
  clientId: string;
  topic: string;
}

export interface EmbeddedBrokerOptions {
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  auth: BrokerAuth;
  log: Logger;
  /** Called for every refused PUBLISH or SUBSCRIBE (after it is logged). */
  onAccessDenied?: (denial: AccessDenial) => void;
}

export interface EmbeddedBroker {
  /** `mqtt://host:port`, what FleetHub and agents connect to. */
  url: string;
  host: string;
  port: number;
  /** Number of connected clients. */
  readonly connectedClients: number;
  close(): Promise<void>;
}

/** CONNACK return codes of MQTT 3.1.1 (aedes passes 2..5 through). */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

function refusal(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function describe(principal: Principal): string {
  return principal.kind === 'control' ? 'control' : `node ${principal.node}`;
}

interface RetainedPacket { topic: string; payload: Buffer }
interface RetainedStore {
  storeRetained(packet: RetainedPacket, cb?: (err: Error | null) => void): unknown;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

/**
 * aedes' in-memory persistence answers a SUBSCRIBE's retained messages by
 * testing every retained topic against each filter: O(retained topics) per
 * subscription. Every node has a retained presence and desired state, so a
 * fleet of N agents (re)connecting costs O(N^2): ~4.5 s of CPU at 1000 nodes,
 * minutes at 10,000. Agents subscribe to exact topics only; those are answered
 * from an index by topic, and wildcard filters (the control's) as before.
 */
export function indexRetainedByTopic(persistence: RetainedStore): void {
  const byTopic = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const combi = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    if (packet.payload.length === 0) byTopic.delete(packet.topic);
    else byTopic.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  persistence.createRetainedStreamCombi = (patterns) => {
    if (patterns.some((p) => p.includes('+') || p.includes('#'))) return combi(patterns);
    return Readable.from(patterns.flatMap((p) => byTopic.get(p) ?? []));
  };
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log;
  const principals = new WeakMap<Client, Principal>();
  const aedes = await Aedes.createBroker();
  // aedes sets `persistence` (its default in-memory one) on the instance; its type declarations omit it.
  indexRetainedByTopic((aedes as unknown as { persistence: RetainedStore }).persistence);

  const denied = (denial: AccessDenial): void => {
    log.warn({ client: denial.clientId, principal: describe(denial.principal), topic: denial.topic },
      `MQTT ${denial.action} refused: ${describe(denial.principal)} may not ${denial.action} on ${denial.topic}`);
    try {
      options.onAccessDenied?.(denial);
    } catch (err) {
      log.error({ err }, 'onAccessDenied handler failed');
    }
  };

  aedes.authenticate = (client, username, password, done) => {
    if (username === undefined || username === '') {
      log.warn({ client: client.id }, 'MQTT connection refused: no username');
      done(refusal(BAD_USERNAME_OR_PASSWORD, 'bad username or password'), false);
      return;
    }
    Promise.resolve()
      .then(() => options.auth.authenticate(username, password))
      .then((principal) => {
        if (!principal) {
          log.warn({ client: client.id, username }, 'MQTT connection refused: bad username or password');
          return done(refusal(BAD_USERNAME_OR_PASSWORD, 'bad username or password'), false);
        }
        if (principal.kind === 'node') {
          if (!isValidNodeId(principal.node)) {
            log.error({ client: client.id, node: principal.node }, 'MQTT connection refused: node id is not a valid topic level');
            return done(refusal(NOT_AUTHORIZED, 'not authorized'), false);
          }
          if (client.id !== agentClientId(principal.node)) {
            log.warn({ client: client.id, node: principal.node },
              `MQTT connection refused: node ${principal.node} must connect with client id ${agentClientId(principal.node)}`);
            return done(refusal(IDENTIFIER_REJECTED, 'identifier rejected'), false);
          }
        }
        principals.set(client, principal);
        log.debug({ client: client.id, principal: describe(principal) }, 'MQTT client authenticated');
        done(null, true);
      })
      .catch((err: unknown) => {
        log.error({ err, client: client.id }, 'MQTT authentication failed');
        done(refusal(SERVER_UNAVAILABLE, 'server unavailable'), false);
      });
  };

  aedes.authorizePublish = (client, packet, done) => {
    // A null client is aedes publishing a will left by a broker instance that went away.
    if (client === null) return done(null);
    const principal = principals.get(client);
    if (principal && mayPublish(principal, packet.topic)) return done(null);
    if (principal) denied({ action: 'publish', principal, clientId: client.id, topic: packet.topic });
    done(new Error(`not authorized to publish on ${packet.topic}`));
  };

  aedes.authorizeSubscribe = (client, subscription, done) => {
    const principal = principals.get(client);
    if (principal && maySubscribe(principal, subscription.topic)) return done(null, subscription);
    if (principal) denied({ action: 'subscribe', principal, clientId: client.id, topic: subscription.topic });
    done(null, null); // SUBACK return code 128 for this topic; the connection stays
  };

  aedes.on('clientError', (client, err) => log.debug({ client: client.id, err: err.message }, 'MQTT client error'));
  aedes.on('connectionError', (client, err) => log.debug({ client: client.id, err: err.message }, 'MQTT connection error'));
  aedes.on('clientDisconnect', (client) => log.debug({ client: client.id }, 'MQTT client disconnected'));

  const server: Server = createServer((socket) => aedes.handle(socket));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw new TernError('INTERNAL', `the embedded MQTT broker cannot listen on ${host}:${options.port ?? 0}: ${(err as Error).message}`);
  }
  server.on('error', (err) => log.error({ err }, 'MQTT listener error'));
  const port = (server.address() as AddressInfo).port;
  const url = `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ url }, 'embedded MQTT broker listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port,
    get connectedClients() { return aedes.connectedClients; },
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
}
