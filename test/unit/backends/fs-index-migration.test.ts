/**
 * An index made by an older version opens and is brought up to this schema:
 * version 1 without the tier totals (and their triggers) gets them counted
 * once from its objects, and kept by the triggers from then on.
 */
import * as path from "node:path";
import Database from "better-sqlite3";
import type { PutMeta } from "../../../server/backends/backend.js";
import { createFsBackend } from "../../../server/backends/fs/fs-backend.js";
import { chunked } from "../../support/backend-io.js";
import { makeTempDir } from "../../kit/temp-dir.js";

const meta: PutMeta = { kind: "BYTES", contentType: "application/octet-stream", metadata: {} };

test("a version-1 index gets its totals counted at open, then kept by every write", async () => {
  const tmp = await makeTempDir("fs-migrate-");
  try {
    let fsb = await createFsBackend({ root: tmp.path, minFreeBytes: 0 });
    await fsb.put("a", chunked(Buffer.alloc(100)), meta);
    await fsb.put("b", chunked(Buffer.alloc(300_000)), meta); // a blob file
    await fsb.close();
    // Make it what version 1 left: no totals table, no triggers.
    const file = path.join(tmp.path, "index.sqlite");
    const db = new Database(file);
    for (const t of ["tier_totals_insert", "tier_totals_update", "tier_totals_delete"]) db.exec(`DROP TRIGGER ${t}`);
    db.exec("DROP TABLE tier_totals");
    db.pragma("user_version = 1");
    db.close();

    fsb = await createFsBackend({ root: tmp.path, minFreeBytes: 0 });
    expect(await fsb.holdings()).toMatchObject({ objects: 2, bytes: 300_100, storedBytes: 300_100 });
    await fsb.put("a", chunked(Buffer.alloc(50)), meta);
    await fsb.delete("b");
    await fsb.put("c", chunked(Buffer.alloc(7)), meta);
    expect(await fsb.holdings()).toMatchObject({ objects: 2, bytes: 57, storedBytes: 57 });
    await fsb.close();
  } finally {
    await tmp.cleanup();
  }
});
