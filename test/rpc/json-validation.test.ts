/**
 * JSON through the real server: JSON larger than the old MAX_JSON_BYTES is
 * stored, bad JSON is refused with its position, and nesting past
 * MAX_JSON_DEPTH is refused naming the setting. The streaming check itself,
 * case by case: test/unit/codec/json-check.test.ts.
 */
import { FileStorageClient } from "../../client/src/index.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";
import { failure } from "../support/expect-failure.js";
import { jsonDocument } from "../../bench/support/json-documents.js";

describe("through the server", () => {
  let daemon: TestDaemon;
  let client: FileStorageClient;

  beforeAll(async () => {
    // The old MAX_JSON_BYTES at its smallest: it no longer limits anything.
    daemon = await startDaemon({ MAX_JSON_BYTES: "1KiB" });
    client = new FileStorageClient(daemon.address);
  });

  afterAll(async () => {
    client?.close();
    await daemon?.stop();
  });

  test("a JSON object of 8 MiB is stored although MAX_JSON_BYTES=1KiB, and reads back as the same value", async () => {
    const bytes = Buffer.concat([...jsonDocument("records", 8 * 1024 * 1024)]);
    const info = await client.upload("json/big.json", [bytes], { kind: "json" });
    expect(Number(info.size)).toBe(bytes.length);
    const { stream } = await client.download("json/big.json");
    const parts: Buffer[] = [];
    for await (const c of stream as AsyncIterable<Buffer>) parts.push(c);
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  });

  test("bad JSON is INVALID_ARGUMENT with its position, and nothing is stored", async () => {
    const err = await failure(client.upload("json/bad.json", [Buffer.from('{"a": [1, 2,\n  3,, 4]}')], { kind: "json" }));
    expect(err.message).toContain("data is not valid JSON");
    expect(err.message).toContain("line 2, column 5");
    expect(await client.exists("json/bad.json")).toBe(false);
  });

  test("JSON nested deeper than MAX_JSON_DEPTH is INVALID_ARGUMENT naming the setting", async () => {
    const err = await failure(client.upload("json/deep.json", [Buffer.from("[".repeat(10_001) + "]".repeat(10_001))], { kind: "json" }));
    expect(err.message).toContain("MAX_JSON_DEPTH");
    expect(err.message).toContain("10000 levels");
  });
});
