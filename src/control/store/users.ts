/** Users who log in to the API; passwords are stored only as scrypt hashes (see auth/passwords.ts). */
import type Database from 'better-sqlite3';
import type { Role } from '../../protocol/fleet.js';

export interface UserRecord { username: string; role: Role; created_at: number }

interface UserRow extends UserRecord { password_hash: string }

export class UserTable {
  private readonly insertStmt: Database.Statement;
  private readonly getStmt: Database.Statement<[string], UserRow>;
  private readonly listStmt: Database.Statement<[], UserRecord>;
  private readonly countStmt: Database.Statement<[], { n: number }>;
  private readonly passwordStmt: Database.Statement;
  private readonly removeStmt: Database.Statement<[string]>;
  private readonly adminsStmt: Database.Statement<[], { n: number }>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare('INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)');
    this.getStmt = db.prepare('SELECT * FROM users WHERE username = ?');
    this.listStmt = db.prepare('SELECT username, role, created_at FROM users ORDER BY username');
    this.countStmt = db.prepare('SELECT COUNT(*) AS n FROM users');
    this.passwordStmt = db.prepare('UPDATE users SET password_hash = ? WHERE username = ?');
    // Their login sessions go with them (api_tokens.username cascades).
    this.removeStmt = db.prepare('DELETE FROM users WHERE username = ?');
    this.adminsStmt = db.prepare("SELECT COUNT(*) AS n FROM users WHERE role = 'admin'");
  }

  create(username: string, passwordHash: string, role: Role, now = Date.now()): UserRecord {
    this.insertStmt.run(username, passwordHash, role, now);
    return { username, role, created_at: now };
  }

  get(username: string): UserRecord | undefined {
    const row = this.getStmt.get(username);
    return row && { username: row.username, role: row.role, created_at: row.created_at };
  }

  /** The stored hash, for login only. */
  passwordHash(username: string): string | undefined {
    return this.getStmt.get(username)?.password_hash;
  }

  setPasswordHash(username: string, passwordHash: string): boolean {
    return this.passwordStmt.run(passwordHash, username).changes > 0;
  }

  list(): UserRecord[] {
    return this.listStmt.all();
  }

  count(): number {
    return this.countStmt.get()!.n;
  }

  admins(): number {
    return this.adminsStmt.get()!.n;
  }

  remove(username: string): boolean {
    return this.removeStmt.run(username).changes > 0;
  }
}
