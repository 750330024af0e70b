/**
 * JSON validation streams: eight concurrent 60 MiB JSON uploads through
 * StoreStream (many records, one huge string, one huge number, deep nesting)
 * keep the daemon's peak RSS under 256 MiB, and each reads back exactly.
 * Before, each upload was buffered and JSON.parse'd whole (~1 GiB for one).
 * Runs the built daemon (`npm run build` first).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { FileStorageClient } from "../../client/src/index.js";
import { spawnDaemon, type DaemonProcess } from "../kit/daemon-process.js";
import { jsonDocument, type JsonShape } from "../../bench/support/json-documents.js";

const MiB = 1024 * 1024;
const SHAPES: JsonShape[] = ["records", "string", "number", "nested", "records", "string", "number", "nested"];

function sha256(pieces: Iterable<Buffer>): { hash: string; size: number } {
  const h = createHash("sha256");
  let size = 0;
  for (const p of pieces) {
    h.update(p);
    size += p.length;
  }
  return { hash: h.digest("hex"), size };
}

let storage: string;
let daemon: DaemonProcess | undefined;

beforeAll(async () => {
  storage = await fs.mkdtemp(path.join(os.tmpdir(), "fs-json-memory-"));
});

afterAll(async () => {
  await daemon?.kill();
  await fs.rm(storage, { recursive: true, force: true });
});

test("8 concurrent 60 MiB JSON uploads keep the daemon under 256 MiB RSS and read back exactly", async () => {
  // Default allocator settings, as the other memory test: the launcher's malloc
  // tuning (npm start) keeps up to 128 MiB of freed memory on purpose.
  daemon = await spawnDaemon({ LOCAL_STORAGE_PATH: storage, ENABLE_CACHE: "false" });
  const client = new FileStorageClient(daemon.address);
  try {
    const started = Date.now();
    const infos = await Promise.all(
      SHAPES.map((shape, i) => client.upload(`json/${i}-${shape}.json`, jsonDocument(shape, 60 * MiB), { kind: "json", contentType: "application/json" })),
    );
    const seconds = (Date.now() - started) / 1000;
    const peak = daemon.peakRss();
    const total = infos.reduce((n, info) => n + Number(info.size), 0);
    console.log(
      `8 concurrent JSON uploads, ${(total / MiB).toFixed(0)} MiB in ${seconds.toFixed(1)} s ` +
        `(${(total / MiB / seconds).toFixed(0)} MiB/s through validation); daemon peak RSS ${(peak / MiB).toFixed(0)} MiB`,
    );
    expect(peak).toBeLessThan(256 * MiB);

    for (const [i, shape] of SHAPES.entries()) {
      const expected = sha256(jsonDocument(shape, 60 * MiB));
      expect(Number(infos[i]!.size)).toBe(expected.size);
      expect(expected.size).toBeGreaterThanOrEqual(60 * MiB);
      const { info, stream } = await client.download(`json/${i}-${shape}.json`);
      expect(info.kind).toBe("json");
      const h = createHash("sha256");
      let size = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        h.update(chunk);
        size += chunk.length;
      }
      expect({ hash: h.digest("hex"), size }).toEqual(expected);
    }
  } finally {
    client.close();
  }
}, 600_000);
