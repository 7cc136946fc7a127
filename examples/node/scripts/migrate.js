#!/usr/bin/env node
// Applies migrations/<name>/migration.sql in name order, each once, and records each in
// _prisma_migrations as `prisma migrate deploy` does, so strongroom's snapshots name the
// schema version. A stand-in for Prisma that needs only the sqlite3 command: `npm run
// db:migrate` takes a pre-migration backup first and runs this only when the backup succeeded.
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const db = (process.env.DATABASE_URL || 'file:prisma/dev.db').replace(/^file:/, '');
const sqlite = (sql) =>
  execFileSync('sqlite3', ['-bail', db], { input: sql, encoding: 'utf8' });
const quote = (s) => `'${String(s).replace(/'/g, "''")}'`;

sqlite(`CREATE TABLE IF NOT EXISTS _prisma_migrations (
  id TEXT PRIMARY KEY, checksum TEXT NOT NULL, finished_at TEXT, migration_name TEXT NOT NULL,
  logs TEXT, rolled_back_at TEXT, started_at TEXT NOT NULL,
  applied_steps_count INTEGER NOT NULL DEFAULT 0);`);
const applied = new Set(
  sqlite('SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL;')
    .split('\n')
    .filter(Boolean),
);

const dir = path.join(__dirname, '..', 'migrations');
let count = 0;
for (const name of fs.readdirSync(dir).sort()) {
  if (applied.has(name)) continue;
  const sql = fs.readFileSync(path.join(dir, name, 'migration.sql'), 'utf8');
  const checksum = crypto.createHash('sha256').update(sql).digest('hex');
  // One transaction: the migration and its record, or neither (-bail stops at the first error).
  sqlite(`BEGIN;
${sql}
INSERT INTO _prisma_migrations
  (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
  VALUES (${quote(crypto.randomUUID())}, ${quote(checksum)}, datetime('now'), ${quote(name)},
          datetime('now'), 1);
COMMIT;`);
  console.log(`applied ${name}`);
  count += 1;
}
console.log(count ? `${count} migration(s) applied to ${db}` : `${db} is up to date`);
