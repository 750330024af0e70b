/**
 * ListKeys pages are bounded in bytes as well as in count
 * (MAX_LIST_RESPONSE_BYTES): the largest page a caller can ask for (10000
 * keys of 1024 bytes, each with 7 KiB of metadata, with include_info) stops
 * early with a next_page_token, stays within the bound, and the pages
 * together hold every key once, in order.
 */
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ListKeysRequestSchema,
  ListKeysResponseSchema,
  StoreRequestSchema,
  type ListKeysResponse,
} from "../../gen/filestorage/v1/file_storage_pb.js";
import { statusName, wireClient, type WireClient } from "../kit/wire-client.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";

const enc = <S extends DescMessage>(schema: S, init: MessageInitShape<S>) => Buffer.from(toBinary(schema, create(schema, init)));
const MiB = 1024 * 1024;

/** Lists every page; returns the pages and the size of each response on the wire. */
async function listAll(wire: WireClient, req: MessageInitShape<typeof ListKeysRequestSchema>) {
  const pages: { page: ListKeysResponse; bytes: number }[] = [];
  let pageToken = "";
  do {
    const r = await wire.unary("ListKeys", enc(ListKeysRequestSchema, { ...req, pageToken }), { timeoutMs: 120_000 });
    expect({ status: statusName(r.code), details: r.details }).toEqual({ status: "OK", details: "" });
    const page = fromBinary(ListKeysResponseSchema, r.responses[0]!);
    pages.push({ page, bytes: r.responses[0]!.length });
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && pages.length < 1000);
  return pages;
}

async function storeAll(wire: WireClient, count: number, make: (i: number) => MessageInitShape<typeof StoreRequestSchema>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) {
        const r = await wire.unary("Store", enc(StoreRequestSchema, make(next++)));
        expect(statusName(r.code)).toBe("OK");
      }
    }),
  );
}

describe("the largest ListKeys page a caller can ask for", () => {
  let daemon: TestDaemon;
  let wire: WireClient;
  // 10000 keys of exactly 1024 bytes; the index keeps them in order.
  const keyOf = (i: number) => `bulk/${String(i).padStart(5, "0")}/`.padEnd(1024, "k");
  const metadata = { notes: "m".repeat(7 * 1024 - 20) };

  beforeAll(async () => {
    daemon = await startDaemon({ ENABLE_CACHE: "false" });
    wire = wireClient(daemon.address);
    await storeAll(wire, 10_000, (i) => ({ key: keyOf(i), data: Buffer.from([i & 0xff]), metadata }));
  }, 600_000);

  afterAll(async () => {
    wire?.close();
    await daemon?.stop();
  });

  test("with include_info, pages stop within 4 MiB and together hold every key once, in order", async () => {
    expect(JSON.stringify(metadata).length).toBeLessThanOrEqual(7168);
    const pages = await listAll(wire, { prefix: "bulk/", limit: 10_000, includeInfo: true });
    // ~9.3 KiB per entry (the key, then an ObjectInfo with the key again and 7 KiB of metadata):
    // about 440 entries per page, 23 pages.
    expect(pages.length).toBeGreaterThanOrEqual(20);
    for (const { page, bytes } of pages) {
      expect(bytes).toBeLessThanOrEqual(4 * MiB);
      expect(page.objects.map((o) => o.key)).toEqual(page.keys);
    }
    // Pages are filled: each but the last is within one entry of the bound.
    for (const { bytes } of pages.slice(0, -1)) expect(bytes).toBeGreaterThan(4 * MiB - 64 * 1024);
    const keys = pages.flatMap((p) => p.page.keys);
    expect(keys).toEqual(Array.from({ length: 10_000 }, (_, i) => keyOf(i)));
    expect(pages[0]!.page.objects[0]!.metadata).toEqual(metadata);
  }, 300_000);

  test("without include_info, 10000 keys of 1024 bytes take three pages", async () => {
    const pages = await listAll(wire, { prefix: "bulk/", limit: 10_000 });
    expect(pages.length).toBe(3);
    for (const { bytes } of pages) expect(bytes).toBeLessThanOrEqual(4 * MiB);
    expect(pages.flatMap((p) => p.page.keys)).toEqual(Array.from({ length: 10_000 }, (_, i) => keyOf(i)));
  }, 300_000);
});

describe("a small MAX_LIST_RESPONSE_BYTES", () => {
  let daemon: TestDaemon;
  let wire: WireClient;

  beforeAll(async () => {
    daemon = await startDaemon({ MAX_LIST_RESPONSE_BYTES: "64KiB" });
    wire = wireClient(daemon.address);
  });

  afterAll(async () => {
    wire?.close();
    await daemon?.stop();
  });

  test("prefixes rolled up at the delimiter count too, and a page continues after the last one", async () => {
    // 40 folders of 3 keys with 2 KiB names: about 30 entries fill 64 KiB.
    const folder = (f: number) => `tree/${String(f).padStart(2, "0")}${"d".repeat(2000)}/`;
    await storeAll(wire, 120, (i) => ({ key: `${folder(Math.floor(i / 3)).slice(0, 1000)}/${i % 3}` }));
    await storeAll(wire, 20, (i) => ({ key: `tree/~file-${String(i).padStart(2, "0")}`.padEnd(1000, "f") }));
    const pages = await listAll(wire, { prefix: "tree/", delimiter: "/", limit: 10_000 });
    expect(pages.length).toBeGreaterThan(1);
    for (const { bytes } of pages) expect(bytes).toBeLessThanOrEqual(64 * 1024);
    const prefixes = pages.flatMap((p) => p.page.prefixes);
    expect(prefixes).toEqual(Array.from({ length: 40 }, (_, f) => `${folder(f).slice(0, 1000)}/`));
    expect(pages.flatMap((p) => p.page.keys)).toEqual(Array.from({ length: 20 }, (_, i) => `tree/~file-${String(i).padStart(2, "0")}`.padEnd(1000, "f")));
  }, 120_000);

  test("a listing by the key prefix itself continues after an object whose key ends with the delimiter", async () => {
    await storeAll(wire, 1, () => ({ key: "edge/" }));
    await storeAll(wire, 40, (i) => ({ key: `edge/${String(i).padStart(2, "0")}`.padEnd(1000, "e") }));
    // One entry per page: "edge/" is an object here (nothing follows the prefix), not a rolled-up prefix.
    const pages = await listAll(wire, { prefix: "edge/", delimiter: "/", limit: 1 });
    expect(pages.flatMap((p) => p.page.keys)).toEqual(["edge/", ...Array.from({ length: 40 }, (_, i) => `edge/${String(i).padStart(2, "0")}`.padEnd(1000, "e"))]);
  }, 120_000);
});
