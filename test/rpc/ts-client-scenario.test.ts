/**
 * The shared client scenario (clients/SCENARIO.md) through the TypeScript
 * client, against a daemon in this process: the same steps the Python, Go and
 * grpcurl tests run (test/process/python-client, go-client). The packed and
 * installed client runs the same file as a program in
 * test/process/ts-client-package.
 */
import { FileStorageClient } from "@filestorage/client";
import { runScenario } from "../polyglot/scenario.js";
import { startDaemon, type TestDaemon } from "../support/daemon.js";

let daemon: TestDaemon;
let client: FileStorageClient;

beforeAll(async () => {
  daemon = await startDaemon();
  client = new FileStorageClient(daemon.address);
});

afterAll(async () => {
  client?.close();
  await daemon?.stop();
});

test("every step of the shared scenario holds", async () => {
  const lines: string[] = [];
  await runScenario(client, "ts/", (line) => lines.push(line));
  expect(lines).toHaveLength(10);
  expect(lines[9]).toBe("scenario: step 10 (stats) held");
});

test("a step that does not hold is named with what differed", async () => {
  // A key left under the prefix by someone else: step 5's listing has one key too many.
  await client.store("ts-dirty/zzz", "left over");
  await expect(runScenario(client, "ts-dirty/", () => {})).rejects.toThrow(
    /^step 5 \(list\): keys: got \[.*"ts-dirty\/zzz"\], want \[/,
  );
});
