/**
 * Upgrades of the local index (server/backends/fs/index-schema.ts): a folder
 * whose index.sqlite was made before write origins existed (user_version 0,
 * no written_at / writer columns) opens, is migrated in place, and serves
 * its objects and outbox entries with the origin the migration gives them
 * (their update / creation time, an unknown writer). A second open finds
 * nothing to do. A version-1 index (no tier totals, no triggers) gets its
 * totals counted once at open, and kept by every write after.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import Database from "better-sqlite3";
import { crc32c } from "@node-rs/crc32";
import { createFsBackend } from "../../../server/backends/fs/fs-backend.js";
import { chunked, readBody } from "../../support/backend-io.js";
import { makeTempDir, type TempDir } from "../../kit/temp-dir.js";

/** The index layout before write origins (version 0). */
const VERSION_0 = `
  CREATE TABLE objects (
    key TEXT PRIMARY KEY, generation INTEGER NOT NULL, kind TEXT NOT NULL, content_type TEXT NOT NULL,
    metadata TEXT NOT NULL, size INTEGER NOT NULL, crc32c INTEGER NOT NULL, stored_size INTEGER NOT NULL,
    stored_crc32c INTEGER NOT NULL, encoding TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    expires_at INTEGER, blob TEXT, data BLOB
  ) WITHOUT ROWID;
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, op TEXT NOT NULL,
    generation INTEGER NOT NULL, created_at INTEGER NOT NULL
  );
  CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
`;

let dir: TempDir;
beforeEach(async () => {
  dir = await makeTempDir("fs-migrate-");
});
afterEach(async () => {
  await dir.cleanup();
});

test("an index from before write origins is migrated at open and serves its objects and outbox", async () => {
  const data = Buffer.from("written by an older version");
  const old = new Database(path.join(dir.path, "index.sqlite"));
  old.exec(VERSION_0);
  old
    .prepare(`INSERT INTO objects VALUES ('old/key', 7, 'TEXT', 'text/plain', '{"n":1}', ?, ?, ?, ?, '{}', 1000, 2000, NULL, NULL, ?)`)
    .run(data.length, crc32c(data), data.length, crc32c(data), data);
  old.prepare(`INSERT INTO outbox (key, op, generation, created_at) VALUES ('old/key', 'put', 7, 3000)`).run();
  old.prepare(`INSERT INTO counters VALUES ('generation', 7)`).run();
  old.close();

  const backend = await createFsBackend({ root: dir.path, fsync: false });
  try {
    const got = (await backend.get("old/key"))!;
    expect(got.record).toMatchObject({ key: "old/key", generation: 7n, kind: "TEXT", metadata: { n: 1 }, pendingReplication: true });
    expect(got.record.origin).toEqual({ writtenAt: 2000 * 1000, writer: "" });
    expect((await readBody(got.body)).equals(data)).toBe(true);
    expect(backend.outbox.list(10)).toMatchObject([{ key: "old/key", op: "put", origin: { writtenAt: 3000 * 1000, writer: "" } }]);
    // New writes carry this daemon's writer id and continue the generations.
    const next = await backend.put("new/key", chunked(Buffer.from("new")), { kind: "BYTES", contentType: "application/octet-stream", metadata: {} });
    expect(next.generation).toBeGreaterThan(7n);
    expect(next.origin.writer).not.toBe("");
  } finally {
    await backend.close();
  }

  const check = new Database(path.join(dir.path, "index.sqlite"), { readonly: true });
  // Every step ran: origins (1), then the tier totals (2), counted from the migrated rows.
  expect(check.pragma("user_version", { simple: true })).toBe(2);
  expect(check.pragma("integrity_check", { simple: true })).toBe("ok");
  check.close();
  // Opening again finds the index current.
  const again = await createFsBackend({ root: dir.path, fsync: false });
  expect((await again.head("old/key"))?.origin).toEqual({ writtenAt: 2000 * 1000, writer: "" });
  expect(again.holdings().objects).toBe(2);
  await again.close();
  expect(fs.existsSync(path.join(dir.path, "index.sqlite"))).toBe(true);
});

const BYTES_META = { kind: "BYTES" as const, contentType: "application/octet-stream", metadata: {} };

test("a version-1 index gets its totals counted at open, then kept by every write", async () => {
  const tmp = await makeTempDir("fs-migrate-");
  try {
    let fsb = await createFsBackend({ root: tmp.path, minFreeBytes: 0 });
    await fsb.put("a", chunked(Buffer.alloc(100)), BYTES_META);
    await fsb.put("b", chunked(Buffer.alloc(300_000)), BYTES_META); // a blob file
    await fsb.close();
    // Make it what version 1 left: no totals table, no triggers.
    const file = path.join(tmp.path, "index.sqlite");
    const db = new Database(file);
    for (const t of ["tier_totals_insert", "tier_totals_update", "tier_totals_delete"]) db.exec(`DROP TRIGGER ${t}`);
    db.exec("DROP TABLE tier_totals");
    db.pragma("user_version = 1");
    db.close();

    fsb = await createFsBackend({ root: tmp.path, minFreeBytes: 0 });
    expect(fsb.holdings()).toMatchObject({ objects: 2, bytes: 300_100, storedBytes: 300_100 });
    await fsb.put("a", chunked(Buffer.alloc(50)), BYTES_META);
    await fsb.delete("b");
    await fsb.put("c", chunked(Buffer.alloc(7)), BYTES_META);
    expect(fsb.holdings()).toMatchObject({ objects: 2, bytes: 57, storedBytes: 57 });
    await fsb.close();
  } finally {
    await tmp.cleanup();
  }
});
