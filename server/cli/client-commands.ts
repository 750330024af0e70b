/**
 * The `filestorage` commands that talk to a running daemon through the client
 * package: put, get, ls, rm, stat, stats, verify. Output goes to stdout
 * (data, JSON, listings, verify's findings); progress bars and errors go to
 * stderr, bars only on a terminal.
 *
 * Exit codes: 0 done; 1 any error, printed as one line
 * `filestorage: <CODE_NAME>: <message>`; 2 when the key was not found
 * (get, stat, and rm when any key was missing); 3 when verify found a
 * corrupt copy (repaired or not).
 */
import * as fs from "node:fs";
import { pipeline } from "node:stream/promises";
import { InvalidArgumentError, Option, type Command } from "commander";
import { MultiBar, Presets, SingleBar } from "cli-progress";
import { FileStorageClient, FileStorageError, status, type DataKindName, type TlsOptions, type VerifyFindingEvent, type VerifySummaryEvent } from "../../client/src/index.js";

const EXIT_FAILED = 1;
const EXIT_NOT_FOUND = 2;
const EXIT_CORRUPT = 3;
const MiB = 1024 * 1024;

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
    .description("store a file, or stdin, under KEY")
    .argument("<key>", "object key")
    .argument("[file]", "file to upload; - or absent reads stdin")
    .addOption(new Option("--kind <kind>", "how readers decode it").choices(["bytes", "text", "json"]).default("bytes"))
    .option("--content-type <type>", "content type to record")
    .option("--metadata <json>", "metadata as a JSON object")
    .option("--if-generation-match <n>", "write only if the key has this generation (0: only if absent)")
    .action((key: string, file: string | undefined, opts: PutOptions, cmd: Command) =>
      withClient(cmd, async (client) => {
        const fromStdin = file === undefined || file === "-";
        const bar = fromStdin ? undefined : progressBar("put");
        try {
          const info = await client.upload(key, fromStdin ? process.stdin : file, {
            kind: opts.kind,
            contentType: opts.contentType,
            metadata: opts.metadata === undefined ? undefined : parseMetadata(opts.metadata),
            ifGenerationMatch: opts.ifGenerationMatch === undefined ? undefined : parseGeneration(opts.ifGenerationMatch),
            onProgress: bar?.update,
          });
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
    .option("--resume", "continue an interrupted download into FILE of the same generation")
    .action((key: string, file: string | undefined, opts: { resume?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        if (file === undefined || file === "-") {
          const { stream } = await client.download(key);
          await pipeline(stream, process.stdout).catch(ignoreClosedStdout);
          return;
        }
        const bar = progressBar("get");
        try {
          await client.downloadToFile(key, file, { resume: opts.resume, onProgress: bar?.update });
        } finally {
          bar?.stop();
        }
      }),
    );

  program
    .command("ls")
    .description("list keys under PREFIX, in order")
    .argument("[prefix]", "key prefix", "")
    .option("-l, --long", "also print size, generation, backend and update time")
    .option("-d, --delimiter <delimiter>", "roll keys up at this separator (usually /)")
    .option("--page-size <n>", "keys per request (default: the daemon's, 1000)", parsePageSize)
    .action((prefix: string, opts: { long?: boolean; delimiter?: string; pageSize?: number }, cmd: Command) =>
      withClient(cmd, async (client) => {
        let pageToken: string | undefined;
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
            if (!opts.long || !info) return { name: key, line: key };
            const updated = info.updatedAt?.toISOString() ?? "-";
            return { name: key, line: `${info.size}\t${info.generation}\t${info.backend}\t${updated}\t${key}` };
          });
          for (const p of page.prefixes) lines.push({ name: p, line: opts.long ? `-\t-\t-\t-\t${p}` : p });
          lines.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
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
            printError(new FileStorageError(status.NOT_FOUND, `no object under key "${key}"`));
          }
        }
        return missing ? EXIT_NOT_FOUND : 0;
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
    .command("verify")
    .description("re-read the daemon's stored copies under PREFIX and check their size and CRC32C (admin right); one line per bad or orphaned copy")
    .argument("[prefix]", "key prefix", "")
    .option("--gcs", "also download and check every GCS object under PREFIX")
    .option("--repair", "repair what a good copy elsewhere allows, and remove orphans")
    .action((prefix: string, opts: { gcs?: boolean; repair?: boolean }, cmd: Command) =>
      withClient(cmd, async (client) => {
        const bar = verifyBar();
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
        await write(summaryLine(summary));
        return summary.corrupt > 0 ? EXIT_CORRUPT : 0;
      }),
    );
}

/** `corrupt disk-cache "models/a.bin" generation 17: block 3 of 8 fails its CRC32C (repaired: re-fetched from GCS)` */
function findingLine(f: VerifyFindingEvent): string {
  const what = f.key === "" ? `${f.problem} ${f.tier}` : `${f.problem} ${f.tier} ${JSON.stringify(f.key)} generation ${f.generation}`;
  const outcome = f.repaired ? ` (repaired: ${f.repair})` : f.repair ? ` (${f.repair})` : "";
  return `${what}: ${f.detail}${outcome}\n`;
}

function summaryLine(s: VerifySummaryEvent): string {
  return (
    `checked ${s.checkedCopies} copies (${(s.checkedBytes / MiB).toFixed(1)} MiB) in ${s.seconds.toFixed(1)} s: ` +
    `${s.corrupt} corrupt, ${s.orphans} orphaned, ${s.unchecked} unchecked, ${s.repaired} repaired\n`
  );
}

/**
 * Verify's progress bar on stderr when it is a terminal, and where findings
 * go meanwhile: stdout, or above the bar when both are the same terminal.
 */
function verifyBar(): { update?: (done: number, total: number, tier: string) => void; print(line: string): Promise<void>; stop(): void } {
  if (!process.stderr.isTTY) return { print: write, stop: () => undefined };
  const bars = new MultiBar(
    { stream: process.stderr, format: "verify {tier} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB", hideCursor: true, clearOnComplete: false },
    Presets.shades_classic,
  );
  const mib = (n: number): string => (n / MiB).toFixed(1);
  let bar: SingleBar | undefined;
  return {
    update(done, total, tier) {
      const payload = { doneMiB: mib(done), totalMiB: mib(total), tier };
      if (bar === undefined) bar = bars.create(total, done, payload);
      else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    async print(line) {
      if (process.stdout.isTTY) bars.log(line);
      else await write(line);
    },
    stop() {
      // Lines logged since the last redraw are written by a redraw only, not by stop().
      bars.update();
      bars.stop();
    },
  };
}

interface PutOptions {
  kind: DataKindName;
  contentType?: string;
  metadata?: string;
  ifGenerationMatch?: string;
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
    printError(err);
    process.exitCode = FileStorageError.is(err, status.NOT_FOUND) ? EXIT_NOT_FOUND : EXIT_FAILED;
  } finally {
    client?.close();
  }
}

/** The client's TLS settings from the global options; false (plaintext) when none is given. */
function tlsOptions(opts: GlobalOptions): TlsOptions | false {
  const ca = opts.tlsCa ?? opts.caCert;
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
    throw new FileStorageError(status.INVALID_ARGUMENT, "--tls-cert and --tls-key go together: give both (mutual TLS) or neither");
  }
  if (!opts.tls && ca === undefined && opts.tlsCert === undefined && opts.tlsServerName === undefined) return false;
  return {
    rootCerts: ca === undefined ? undefined : fs.readFileSync(ca),
    certChain: opts.tlsCert === undefined ? undefined : fs.readFileSync(opts.tlsCert),
    privateKey: opts.tlsKey === undefined ? undefined : fs.readFileSync(opts.tlsKey),
    serverNameOverride: opts.tlsServerName,
  };
}

/** One line on stderr: `filestorage: <CODE_NAME>: <message>`. */
function printError(err: unknown): void {
  let line: string;
  if (err instanceof FileStorageError) line = `${err.codeName}: ${err.details}`;
  // Node's system errors already read "ENOENT: no such file or directory, ...".
  else if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string") line = err.message;
  else line = `UNKNOWN: ${err instanceof Error ? err.message : String(err)}`;
  process.stderr.write(`filestorage: ${line}\n`);
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
    throw new FileStorageError(status.INVALID_ARGUMENT, `--metadata is not JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FileStorageError(status.INVALID_ARGUMENT, "--metadata must be a JSON object");
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

function parseGeneration(text: string): bigint {
  if (!/^\d+$/.test(text)) {
    throw new FileStorageError(status.INVALID_ARGUMENT, `--if-generation-match must be a whole number, got "${text}"`);
  }
  return BigInt(text);
}

interface Progress {
  update: (done: number, total?: number) => void;
  stop: () => void;
}

/** A byte progress bar on stderr, or undefined when stderr is not a terminal. */
function progressBar(label: string): Progress | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB`,
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  let started = false;
  let stopped = false;
  const mib = (n: number): string => (n / MiB).toFixed(1);
  return {
    update: (done, total) => {
      const payload = { doneMiB: mib(done), totalMiB: total === undefined ? "?" : mib(total) };
      if (!started) {
        started = true;
        bar.start(total ?? 0, done, payload);
      } else {
        if (total !== undefined) bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop: () => {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
