/**
 * Keeps an external Mosquitto's users and ACL in step with the fleet, through
 * Mosquitto's dynamic-security plugin (shipped with Mosquitto 2, Debian's
 * mosquitto package included): a node's broker account is created the moment
 * the control plane issues its token, and deleted when the node is removed.
 * Without this, node tokens would have to be copied into a password file by
 * hand (the static setup documented in fleet-hub.ts).
 *
 * The plugin is driven by JSON commands published on `$CONTROL/dynamic-security/v1`
 * and answered on `.../response`; the control plane's broker user needs the
 * plugin's `admin` role (what `mosquitto_ctrl dynsec init FILE USER` creates).
 * At start it (re)creates the account the control plane's fleet hub uses,
 * `tern-control` with role `tern-control` (every tern topic) and a password
 * fresh for each run — a separate account, because changing the roles of the
 * admin itself would make the plugin disconnect it. Each node gets a role of
 * its own holding exactly the topics of `nodeTopics(node)`, the rule set the
 * embedded broker enforces (acl.ts).
 *
 * No library speaks this API (mosquitto_ctrl is a CLI of the same commands), so
 * this is a small request/response client over mqtt.js.
 */
import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { agentClientId, nodeTopics } from './acl.js';

const COMMAND_TOPIC = '$CONTROL/dynamic-security/v1';
const RESPONSE_TOPIC = `${COMMAND_TOPIC}/response`;
export const CONTROL_ROLE = 'tern-control';
export const CONTROL_ACCOUNT = 'tern-control';
const TIMEOUT_MS = 5000;

type Acl = { acltype: string; topic: string; allow: boolean; priority?: number };
type Command = { command: string; [field: string]: unknown };
type Response = { command: string; error?: string; correlationData?: string; data?: unknown };

export interface DynsecOptions {
  url: string;
  username: string;
  password: string;
  log: Logger;
}

export const nodeRole = (node: string): string => `tern-node-${node}`;

/** The ACL of one node's role: its own topics, nothing else (acl.ts is the rule set). */
export function nodeAcls(node: string): Acl[] {
  const t = nodeTopics(node);
  return [
    ...t.publish.map((topic) => ({ acltype: 'publishClientSend', topic, allow: true })),
    ...t.subscribe.flatMap((topic) => [
      { acltype: 'subscribeLiteral', topic, allow: true },
      { acltype: 'publishClientReceive', topic, allow: true },
    ]),
  ];
}

export class MosquittoDynsec {
  private readonly pending = new Map<string, (r: Response) => void>();

  /** The account the fleet hub connects with (set up by `connect`). */
  readonly control = { username: CONTROL_ACCOUNT, password: randomBytes(24).toString('base64url') };

  private constructor(private readonly client: MqttClient, private readonly options: DynsecOptions) {
    client.on('message', (topic, payload) => {
      if (topic !== RESPONSE_TOPIC) return;
      let responses: Response[] = [];
      try {
        responses = (JSON.parse(payload.toString('utf8')) as { responses?: Response[] }).responses ?? [];
      } catch {
        return; // not ours to judge; a malformed answer times the request out
      }
      for (const r of responses) {
        const done = r.correlationData ? this.pending.get(r.correlationData) : undefined;
        if (done) { this.pending.delete(r.correlationData!); done(r); }
      }
    });
  }

  /** Connects as the plugin's admin and sets up the control plane's own account. */
  static async connect(options: DynsecOptions): Promise<MosquittoDynsec> {
    const client = connect(options.url, {
      username: options.username, password: options.password, clientId: `tern-dynsec-${randomBytes(4).toString('hex')}`,
      reconnectPeriod: 1000, connectTimeout: TIMEOUT_MS,
    });
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string) => { client.end(true); reject(new Error(`dynamic security: cannot connect to ${options.url} as ${options.username}: ${why}`)); };
      const timer = setTimeout(() => fail(`no answer within ${TIMEOUT_MS} ms`), TIMEOUT_MS);
      client.once('connect', () => { clearTimeout(timer); resolve(); });
      client.once('error', (err) => { clearTimeout(timer); fail(err.message); });
    });
    await client.subscribeAsync(RESPONSE_TOPIC, { qos: 1 });
    const admin = new MosquittoDynsec(client, options);
    await admin.ensureControlAccount();
    return admin;
  }

  /** Creates the node's broker account (username = node id, password = its token), or resets its password. */
  async upsertNode(node: string, token: string): Promise<void> {
    await this.run({ command: 'createRole', rolename: nodeRole(node), acls: nodeAcls(node) }, ['already exists']);
    const created = await this.run({
      command: 'createClient', username: node, password: token, clientid: agentClientId(node), roles: [{ rolename: nodeRole(node) }],
    }, ['already exists']);
    if (created.error) await this.run({ command: 'setClientPassword', username: node, password: token });
    this.options.log.info({ node }, 'broker account of the node created in Mosquitto (dynamic security)');
  }

  /** Deletes the node's account and role; its open connection is closed by the broker. */
  async removeNode(node: string): Promise<void> {
    await this.run({ command: 'deleteClient', username: node }, ['not found']);
    await this.run({ command: 'deleteRole', rolename: nodeRole(node) }, ['not found']);
  }

  async close(): Promise<void> {
    for (const done of this.pending.values()) done({ command: 'close', error: 'closed' });
    this.pending.clear();
    await this.client.endAsync();
  }

  private async ensureControlAccount(): Promise<void> {
    const all = ['publishClientSend', 'publishClientReceive'].map((acltype) => ({ acltype, topic: 'tern/#', allow: true }));
    await this.run({ command: 'createRole', rolename: CONTROL_ROLE, acls: [...all, { acltype: 'subscribePattern', topic: 'tern/#', allow: true }] }, ['already exists']);
    const { username, password } = this.control;
    const created = await this.run({ command: 'createClient', username, password, roles: [{ rolename: CONTROL_ROLE }] }, ['already exists']);
    if (created.error) await this.run({ command: 'setClientPassword', username, password });
  }

  /** Sends one command; an error whose text contains one of `tolerated` is returned, any other thrown. */
  private async run(command: Command, tolerated: string[] = []): Promise<Response> {
    const correlationData = randomBytes(8).toString('hex');
    const answer = new Promise<Response>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationData);
        reject(new Error(`dynamic security: no answer to ${command.command} within ${TIMEOUT_MS} ms (is the plugin loaded and ${this.options.username} its admin?)`));
      }, TIMEOUT_MS);
      this.pending.set(correlationData, (r) => { clearTimeout(timer); resolve(r); });
    });
    await this.client.publishAsync(COMMAND_TOPIC, JSON.stringify({ commands: [{ ...command, correlationData }] }), { qos: 1 });
    const r = await answer;
    if (r.error && !tolerated.some((t) => r.error!.toLowerCase().includes(t))) {
      throw new Error(`dynamic security: ${command.command} failed: ${r.error}`);
    }
    return r;
  }
}
