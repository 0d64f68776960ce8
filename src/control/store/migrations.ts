/**
 * The control plane's schema as numbered migrations. Each runs once, in its own
 * transaction, and is recorded in `schema_migrations`; never edit a migration
 * that has shipped — add the next number instead.
 */
import type Database from 'better-sqlite3';

export interface Migration { version: number; name: string; sql: string }

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'users, tokens, nodes, models, deployments, replicas, events',
    sql: `
      CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
        created_at INTEGER NOT NULL
      );
      CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
        username TEXT REFERENCES users(username) ON DELETE CASCADE,
        created_by TEXT,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        expires_at INTEGER,
        revoked_at INTEGER
      );
      CREATE TABLE join_tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_by TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER,
        uses INTEGER NOT NULL DEFAULT 0,
        last_used_at INTEGER
      );
      CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        facts TEXT NOT NULL,
        label_overrides TEXT NOT NULL DEFAULT '{}',
        cordoned INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'down', 'draining')),
        last_heartbeat_ms INTEGER,
        node_token_hash TEXT NOT NULL UNIQUE,
        stats TEXT,
        desired_revision INTEGER NOT NULL DEFAULT 0,
        joined_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE models (
        name TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE model_versions (
        model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
        version INTEGER NOT NULL CHECK (version > 0),
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('onnx', 'tar')),
        config TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (model, version)
      );
      CREATE INDEX model_versions_sha256 ON model_versions(sha256);
      CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version INTEGER,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        format TEXT NOT NULL,
        config TEXT,
        created_by TEXT,
        created_at INTEGER NOT NULL
      );
      -- The foreign key to model_versions is a safety net: the API refuses such
      -- deletes with a clear 409 before SQLite would.
      CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        generation INTEGER NOT NULL DEFAULT 1,
        deleting INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
      );
      CREATE INDEX deployments_model ON deployments(model, version);
      CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        node TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        desired TEXT NOT NULL DEFAULT 'run' CHECK (desired IN ('run', 'stop')),
        state TEXT NOT NULL DEFAULT 'pending',
        port INTEGER,
        message TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX replicas_deployment ON replicas(deployment);
      CREATE INDEX replicas_node ON replicas(node);
      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
      );
      CREATE INDEX events_subject ON events(subject, id);
      CREATE INDEX events_kind ON events(kind, id);
    `,
  },
  {
    version: 2,
    // A replica being retired first leaves the gateways' routing table ('drain') and is
    // stopped only once they stopped sending it requests. SQLite cannot alter a CHECK
    // constraint, so the table is rebuilt (nothing references replicas by foreign key).
    name: "replicas.desired may be 'drain'",
    sql: `
      CREATE TABLE replicas_v2 (
        id TEXT PRIMARY KEY,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        node TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        desired TEXT NOT NULL DEFAULT 'run' CHECK (desired IN ('run', 'drain', 'stop')),
        state TEXT NOT NULL DEFAULT 'pending',
        port INTEGER,
        message TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      INSERT INTO replicas_v2 SELECT id, deployment, node, version, generation, desired, state, port, message, created_at, updated_at FROM replicas;
      DROP TABLE replicas;
      ALTER TABLE replicas_v2 RENAME TO replicas;
      CREATE INDEX replicas_deployment ON replicas(deployment);
      CREATE INDEX replicas_node ON replicas(node);
    `,
  },
  {
    version: 3,
    name: 'replicas.grpc_port, as the replica reports it',
    sql: 'ALTER TABLE replicas ADD COLUMN grpc_port INTEGER;',
  },
  {
    version: 4,
    name: 'images: container image archives the control plane hands to nodes without a registry',
    sql: `CREATE TABLE images (
      ref TEXT PRIMARY KEY,
      platform TEXT NOT NULL,
      sha256 TEXT NOT NULL,
      size INTEGER NOT NULL,
      created_by TEXT,
      created_at INTEGER NOT NULL
    );`,
  },
  {
    version: 5,
    // Deployments of kind 'container' run an image, not a model version: model and version become
    // nullable (the foreign key to model_versions skips rows whose columns are NULL), required for
    // kind 'model' by a CHECK. Dropping deployments would cascade-delete every replica (foreign keys
    // are on, and cannot be switched off inside the migration's transaction), so replicas are set
    // aside first and put back after; their version is the deployment's revision for containers.
    name: "deployments.kind: 'container' deployments without a model",
    sql: `
      CREATE TEMP TABLE replicas_kept AS SELECT * FROM replicas;
      DROP TABLE replicas;
      CREATE TABLE deployments_v5 (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'model' CHECK (kind IN ('model', 'container')),
        spec TEXT NOT NULL,
        model TEXT,
        version INTEGER,
        generation INTEGER NOT NULL DEFAULT 1,
        deleting INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK (kind <> 'model' OR (model IS NOT NULL AND version IS NOT NULL)),
        FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
      );
      INSERT INTO deployments_v5 (name, kind, spec, model, version, generation, deleting, created_at, updated_at)
        SELECT name, 'model', spec, model, version, generation, deleting, created_at, updated_at FROM deployments;
      DROP TABLE deployments;
      ALTER TABLE deployments_v5 RENAME TO deployments;
      CREATE INDEX deployments_model ON deployments(model, version);
      CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        deployment TEXT NOT NULL REFERENCES deployments(name) ON DELETE CASCADE,
        node TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        desired TEXT NOT NULL DEFAULT 'run' CHECK (desired IN ('run', 'drain', 'stop')),
        state TEXT NOT NULL DEFAULT 'pending',
        port INTEGER,
        message TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        grpc_port INTEGER
      );
      INSERT INTO replicas SELECT id, deployment, node, version, generation, desired, state, port, message, created_at, updated_at, grpc_port FROM replicas_kept;
      DROP TABLE replicas_kept;
      CREATE INDEX replicas_deployment ON replicas(deployment);
      CREATE INDEX replicas_node ON replicas(node);
    `,
  },
];

/** Applies the migrations the database has not seen; returns the resulting schema version. */
export function migrate(db: Database.Database, migrations: Migration[] = MIGRATIONS): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const current = schemaVersion(db);
  const newest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  if (current > newest) {
    throw new Error(`database schema version ${current} is newer than this tern understands (${newest}); upgrade tern`);
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    })();
  }
  return schemaVersion(db);
}

export function schemaVersion(db: Database.Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
  return row.v ?? 0;
}
