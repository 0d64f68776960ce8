/**
 * The control plane's state in one SQLite database (better-sqlite3).
 *
 * Durability: WAL journal with synchronous=NORMAL. A commit is complete once its
 * frames are written to the WAL file, i.e. handed to the kernel; SQLite fsyncs
 * at checkpoints. Killing the process (even with SIGKILL) therefore loses no
 * acknowledged write: the bytes are in the OS page cache, which outlives the
 * process, and the next open replays the WAL. Only an OS crash or power loss
 * can drop the last commits (the database stays consistent either way); pass
 * `synchronous: 'FULL'` to fsync the WAL on every commit when that matters more
 * than heartbeat throughput.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { migrate, schemaVersion } from './migrations.js';
import { UserTable } from './users.js';
import { ApiTokenTable } from './api-tokens.js';
import { JoinTokenTable } from './join-tokens.js';
import { NodeTable } from './nodes.js';
import { ModelTable } from './models.js';
import { UploadTable } from './uploads.js';
import { DeploymentTable } from './deployments.js';
import { ReplicaTable } from './replicas.js';
import { EventLog } from './events.js';
import { ImageTable } from './images.js';

export type { UserRecord } from './users.js';
export type { ApiTokenRecord, ApiTokenKind, NewApiToken } from './api-tokens.js';
export type { JoinTokenRecord, JoinTokenStatus } from './join-tokens.js';
export type { NodeRecord, NodeState, HeartbeatUpdate, LabelOverrides } from './nodes.js';
export type { ModelVersionRecord, ModelSummary, ModelFormat, NewModelVersion } from './models.js';
export type { UploadRecord, NewUpload } from './uploads.js';
export type { DeploymentRecord } from './deployments.js';
export type { ReplicaRecord, ReplicaDesired, NewReplica, ObservedReplica } from './replicas.js';
export type { EventRecord, NewEvent, EventQuery } from './events.js';
export type { ImageRecord } from './images.js';

export interface StoreOptions {
  /** NORMAL (default) survives process crashes; FULL also survives power loss, at a cost per commit. */
  synchronous?: 'NORMAL' | 'FULL';
}

export class Store {
  readonly db: Database.Database;
  readonly users: UserTable;
  readonly apiTokens: ApiTokenTable;
  readonly joinTokens: JoinTokenTable;
  readonly nodes: NodeTable;
  readonly models: ModelTable;
  readonly uploads: UploadTable;
  readonly deployments: DeploymentTable;
  readonly replicas: ReplicaTable;
  readonly events: EventLog;
  readonly images: ImageTable;

  /** Opens (creating and migrating as needed) the database at `file`, or an in-memory one for ':memory:'. */
  static open(file: string, options: StoreOptions = {}): Store {
    if (file !== ':memory:') mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const db = new Database(file);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.synchronous ?? 'NORMAL'}`);
      db.pragma('foreign_keys = ON');
      // Another process (a CLI reading state, a backup) may hold the lock briefly.
      db.pragma('busy_timeout = 5000');
      migrate(db);
      return new Store(db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  private constructor(db: Database.Database) {
    this.db = db;
    this.users = new UserTable(db);
    this.apiTokens = new ApiTokenTable(db);
    this.joinTokens = new JoinTokenTable(db);
    this.nodes = new NodeTable(db);
    this.models = new ModelTable(db);
    this.uploads = new UploadTable(db);
    this.deployments = new DeploymentTable(db);
    this.images = new ImageTable(db);
    this.replicas = new ReplicaTable(db);
    this.events = new EventLog(db);
  }

  /** Runs `fn` in one transaction (nested calls become savepoints). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  schemaVersion(): number {
    return schemaVersion(this.db);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
