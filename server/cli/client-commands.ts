/**
 * The `filestorage` commands that talk to a running daemon through the client
 * package: put, get, ls, rm, stat, stats, flush, usage, verify. Output goes to
 * stdout (data, JSON, listings, summaries, verify's findings); progress bars
 * and errors go to stderr, bars only on a terminal.
 *
 * Errors are one line `filestorage: <CODE_NAME>: <message>`; exit codes: 0
 * done, 2 for INVALID_ARGUMENT (usage, bad flags and keys) and NOT_FOUND (a
 * missing key or local file; rm when any key was missing), 3 when verify
 * found a corrupt copy (repaired or not), 1 for any other failure
 * (cli-errors.ts has the table, local file errors included). `put` uploads
 * resumably and first prints one line `filestorage: upload id <id> ...` on
 * stderr, so an interrupted put can be continued by another run
 * (`--resume-id <id>`).
 */
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { InvalidArgumentError, Option, type Command } from "commander";
import { FileStorageClient, FileStorageError, newUploadId, status, type DataKindName, type TlsOptions, type Usage, type VerifySummaryEvent } from "../../client/src/index.js";
import { EXIT_USAGE, localFileError, reportFailure, usageError } from "./cli-errors.js";
import { longHeader, longObjectRow, longPrefixRow } from "./list-format.js";
import { byteBar, countBar, flushBar, verifyBar } from "./progress-bars.js";
import { findingLine, flushSummary, usageSummary, verifySummary } from "./summaries.js";
import { terminalGuard } from "./terminal-guard.js";

const EXIT_CORRUPT = 3;

interface GlobalOptions {
  address: string;
  token?: string;
  tls?: boolean;
  tlsCa?: string;
  /** The older name of --tls-ca. */
  caCert?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

/**
 * Adds the daemon client commands and their connection options (--address,
 * --token, --tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name) to
 * `program`. Any --tls-* option turns TLS on; --tls-cert and --tls-key go
 * together (mutual TLS). Options the program already has are left alone.
 * Actions are async: run the program with parseAsync().
 */
export function registerClientCommands(program: Command): void {
  const has = (flag: string): boolean => program.options.some((o) => o.long === flag);
  if (!has("--address")) {
    program.addOption(
      new Option("--address <host:port>", "address of the daemon for client commands")
        .env("FILESTORAGE_ADDRESS")
        .default("127.0.0.1:50051"),
    );
  }
  if (!has("--token")) {
    program.addOption(new Option("--token <token>", "bearer token for client commands").env("FILESTORAGE_TOKEN"));
  }
  if (!has("--tls")) program.option("--tls", "connect to the daemon with TLS");
  if (!has("--tls-ca")) program.option("--tls-ca <file>", "PEM roots to trust for TLS (default: system roots)");
  if (!has("--ca-cert")) program.addOption(new Option("--ca-cert <file>", "older name of --tls-ca").hideHelp());
  if (!has("--tls-cert")) program.option("--tls-cert <file>", "PEM client certificate for mutual TLS (with --tls-key)");
  if (!has("--tls-key")) program.option("--tls-key <file>", "PEM private key of --tls-cert");
  if (!has("--tls-server-name")) {
    program.option("--tls-server-name <name>", "name expected in the daemon's certificate, when it differs from --address");
  }

  program
    .command("put")
    .description(
      "store a file, or stdin, under KEY as a resumable upload: it continues by itself after a dropped connection or a daemon restart, " +
        "and prints its upload id on stderr so another run can continue it (--resume-id)",
    )
    .argument("<key>", "object key")
    .argument("[file]", "file to upload; - or absent reads stdin")
    .addOption(new Option("--kind <kind>", "how readers decode it").choices(["bytes", "text", "json"]).default("bytes"))
    .option("--content-type <type>", "content type to record")
    .option("--metadata <json>", "metadata as a JSON object")
    .option("--if-generation-match <n>", "write only if the key has this generation (0: only if absent)")
    .option("--resume-id <id>", "continue the upload with this id (printed by an earlier put of the same KEY and FILE) from what the daemon holds")
    .action((key: string, file: string | undefined, opts: PutOptions, cmd: Command) =>
      withClient(cmd, async (client) => {
        const fromStdin = file === undefined || file === "-";
        // Arguments first: a bad one starts no upload (and prints no id).
        const metadata = opts.metadata === undefined ? undefined : parseMetadata(opts.metadata);
        const ifGenerationMatch = opts.ifGenerationMatch === undefined ? undefined : parseGeneration(opts.ifGenerationMatch);
        if (!fromStdin) await checkReadableFile(file);
        const uploadId = opts.resumeId ?? newUploadId();
        if (opts.resumeId !== undefined) {
          const held = await client.queryUpload(uploadId);
          const where = held === null ? "unknown to the daemon: starting it from byte 0" : held.complete ? "complete already" : `continuing from byte ${held.committedSize}`;
          process.stderr.write(`filestorage: upload id ${uploadId}: ${where}\n`);
        } else {
          const input = fromStdin ? "- (the same input)" : JSON.stringify(file);
          process.stderr.write(`filestorage: upload id ${uploadId} (if interrupted, continue it with: put ${JSON.stringify(key)} ${input} --resume-id ${uploadId})\n`);
        }
        const bar = fromStdin ? undefined : byteBar("put");
        try {
          const info = await client
            .upload(key, fromStdin ? process.stdin : file, {
              kind: opts.kind,
              contentType: opts.contentType,
              metadata,
              ifGenerationMatch,
              onProgress: bar?.update,
              // Given an id, the client asks the daemon where that upload stands first (a new one: nowhere).
              uploadId,
            })
            .catch((err: unknown) => Promise.reject(fromStdin ? err : localFileError(err, file, "read")));
          bar?.stop();
          printJson(info);
        } finally {
          bar?.stop();
        }
      }),
    );

  program
    .command("get")
    .description("write the object under KEY to a file, or stdout")
    .argument("<key>", "object key")
    .argument("[file]", "file to write; - or absent writes stdout")
    .option("--resume", "continue an interrupted download into FILE of the same generation (a damaged partial file starts over)")
    .option("--force", "write a bytes object to stdout even when stdout is a terminal")
    .action((key: string, file: string | undefined, opts: { resume?: boolean; force?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        if (file === undefined || file === "-") {
          const { info, stream } = await client.download(key);
          // Binary on a terminal can leave it unusable: refuse, unless told (terminal-guard.ts).
          const guarded = process.stdout.isTTY && !opts.force && info.kind === "bytes";
          await (guarded ? pipeline(stream, terminalGuard(key, info.size), process.stdout) : pipeline(stream, process.stdout)).catch(ignoreClosedStdout);
          return;
        }
        const existing = await fsp.stat(file).catch(() => undefined);
        if (existing?.isDirectory()) {
          throw usageError(`${file} is a folder: name the file to write, e.g. ${path.join(file, path.posix.basename(key))}`);
        }
        const bar = byteBar("get");
        try {
          await client
            .downloadToFile(key, file, { resume: opts.resume, onProgress: bar?.update })
            .catch((err: unknown) => Promise.reject(localFileError(err, file, "write")));
        } finally {
          bar?.stop();
        }
      }),
    );

  program
    .command("ls")
    .description("list keys under PREFIX, in order")
    .argument("[prefix]", "key prefix", "")
    .option("-l, --long", "a table: size, generation, tier, pending replication, update time (UTC), key")
    .option("--bytes", "with --long: sizes in exact bytes instead of KiB/MiB/GiB")
    .option("-d, --delimiter <delimiter>", "roll keys up at this separator (usually /)")
    .option("--page-size <n>", "keys per request (default: the daemon's, 1000)", parsePageSize)
    .action((prefix: string, opts: { long?: boolean; bytes?: boolean; delimiter?: string; pageSize?: number }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const format = { bytes: opts.bytes === true };
        let pageToken: string | undefined;
        let first = true;
        do {
          const page = await client.listKeys({
            prefix,
            delimiter: opts.delimiter,
            includeInfo: opts.long,
            limit: opts.pageSize,
            pageToken,
          });
          const lines = page.keys.map((key, i) => {
            const info = page.objects[i];
            return { name: key, line: opts.long && info ? longObjectRow(info, format) : key };
          });
          for (const p of page.prefixes) lines.push({ name: p, line: opts.long ? longPrefixRow(p, format) : p });
          lines.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
          if (opts.long && first) lines.unshift({ name: "", line: longHeader(format) });
          first = false;
          if (lines.length > 0) await write(lines.map((l) => l.line + "\n").join(""));
          pageToken = page.nextPageToken;
        } while (pageToken);
      }),
    );

  program
    .command("rm")
    .description("delete keys")
    .argument("<keys...>", "object keys")
    .action((keys: string[], _opts: unknown, cmd: Command) =>
      withClient(cmd, async (client) => {
        let missing = false;
        for (const key of keys) {
          if (!(await client.delete(key))) {
            missing = true;
            reportFailure(new FileStorageError(status.NOT_FOUND, `no object under key "${key}"`), "");
          }
        }
        return missing ? EXIT_USAGE : 0;
      }),
    );

  program
    .command("stat")
    .description("print the ObjectInfo of KEY as JSON")
    .argument("<key>", "object key")
    .action((key: string, _opts: unknown, cmd: Command) =>
      withClient(cmd, async (client) => {
        const info = await client.stat(key);
        if (!info) throw new FileStorageError(status.NOT_FOUND, `no object under key "${key}"`);
        printJson(info);
      }),
    );

  program
    .command("stats")
    .description("print the daemon's state and counters as JSON")
    .action((_opts: unknown, cmd: Command) =>
      withClient(cmd, async (client) => {
        printJson(await client.getStats());
      }),
    );

  program
    .command("flush")
    .description(
      "replicate every write kept on the local tier (during a GCS outage) to GCS now and wait until none is pending, " +
        "e.g. before planned maintenance; fails UNAVAILABLE while GCS cannot be reached",
    )
    .option("--timeout <seconds>", "give up (DEADLINE_EXCEEDED) after this many seconds with writes still pending", parseSeconds)
    .action((opts: { timeout?: number }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const bar = flushBar();
        try {
          const last = await client.flush({ timeoutSeconds: opts.timeout, onProgress: bar?.update });
          bar?.stop();
          await write(flushSummary(last) + "\n");
        } finally {
          bar?.stop();
        }
      }),
    );

  program
    .command("usage")
    .description("count the objects under PREFIX (every key when absent) and their bytes (GetUsage; needs the admin right)")
    .argument("[prefix]", "key prefix", "")
    .option("--json", "print the counts as JSON")
    .option("--page-size <n>", "objects the daemon counts per call when it lists (default 10000)", parsePageSize)
    .action((prefix: string, opts: { json?: boolean; pageSize?: number }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const bar = countBar(prefix);
        let usage: Usage;
        try {
          usage = await client.getUsage(prefix, { pageSize: opts.pageSize, onProgress: bar?.update });
        } finally {
          bar?.stop();
        }
        if (opts.json) printJson({ prefix, ...usage });
        else await write(usageSummary(prefix, usage) + "\n");
      }),
    );

  program
    .command("verify")
    .description("re-read the daemon's stored copies under PREFIX and check their size and CRC32C (admin right); one line per bad or orphaned copy")
    .argument("[prefix]", "key prefix", "")
    .option("--gcs", "also download and check every GCS object under PREFIX")
    .option("--repair", "repair what a good copy elsewhere allows, and remove orphans")
    .action((prefix: string, opts: { gcs?: boolean; repair?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const bar = verifyBar(write);
        let summary: VerifySummaryEvent | undefined;
        try {
          for await (const event of client.verify({ prefix, includeGcs: opts.gcs, repair: opts.repair })) {
            if (event.type === "progress") bar.update?.(event.checkedBytes, event.totalBytes, event.tier);
            else if (event.type === "finding") await bar.print(findingLine(event));
            else summary = event;
          }
        } finally {
          bar.stop();
        }
        if (summary === undefined) throw new FileStorageError(status.UNKNOWN, "the daemon ended Verify without a summary");
        await write(verifySummary(summary));
        return summary.corrupt > 0 ? EXIT_CORRUPT : 0;
      }),
    );
}

interface PutOptions {
  kind: DataKindName;
  contentType?: string;
  metadata?: string;
  ifGenerationMatch?: string;
  resumeId?: string;
}

/**
 * Runs `fn` with a client built from the global options, closes it, and
 * turns the outcome into an exit code (process.exitCode, so output flushes).
 */
async function withClient(cmd: Command, fn: (client: FileStorageClient) => Promise<number | void>): Promise<void> {
  const opts = cmd.optsWithGlobals<GlobalOptions>();
  let client: FileStorageClient | undefined;
  try {
    client = new FileStorageClient(opts.address, { token: opts.token, tls: tlsOptions(opts) });
    const code = await fn(client);
    if (code) process.exitCode = code;
  } catch (err) {
    process.exitCode = reportFailure(err, opts.address);
  } finally {
    client?.close();
  }
}

/** The client's TLS settings from the global options; false (plaintext) when none is given. */
function tlsOptions(opts: GlobalOptions): TlsOptions | false {
  const ca = opts.tlsCa ?? opts.caCert;
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
    throw usageError("--tls-cert and --tls-key go together: give both (mutual TLS) or neither");
  }
  if (!opts.tls && ca === undefined && opts.tlsCert === undefined && opts.tlsServerName === undefined) return false;
  const read = (file: string | undefined, flag: string) => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw localFileError(err, `${file} (${flag})`, "read");
    }
  };
  return {
    rootCerts: read(ca, "--tls-ca"),
    certChain: read(opts.tlsCert, "--tls-cert"),
    privateKey: read(opts.tlsKey, "--tls-key"),
    serverNameOverride: opts.tlsServerName,
  };
}

/** NOT_FOUND, PERMISSION_DENIED or INVALID_ARGUMENT (a folder) before an upload of `file` starts. */
async function checkReadableFile(file: string): Promise<void> {
  let stat;
  try {
    stat = await fsp.stat(file);
    await fsp.access(file, fs.constants.R_OK);
  } catch (err) {
    throw localFileError(err, file, "read");
  }
  if (stat.isDirectory()) throw usageError(`${file} is a folder, not a file`);
}

function printJson(value: unknown): void {
  // Generations are int64: printed as strings so no reader rounds them.
  const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);
  process.stdout.write(text + "\n");
}

function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve())));
}

// `filestorage get KEY | head` closes the pipe early; that is not a failure.
function ignoreClosedStdout(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== "EPIPE") throw err;
}

function parseMetadata(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw usageError(`--metadata is not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw usageError("--metadata must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function parsePageSize(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 10_000) {
    throw new InvalidArgumentError("--page-size must be a whole number from 1 to 10000");
  }
  return n;
}

function parseSeconds(text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("--timeout must be a number of seconds above 0");
  return n;
}

function parseGeneration(text: string): bigint {
  if (!/^\d+$/.test(text)) {
    throw usageError(`--if-generation-match must be a whole number, got "${text}"`);
  }
  return BigInt(text);
}
