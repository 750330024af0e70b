/**
 * An HTTP proxy in front of a real peer (the GCS emulator) that counts the
 * requests passing through and can fail chosen ones, so a test can prove how
 * many GCS requests a call costs and what the daemon does when one kind of
 * request fails while the others succeed.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface ProxiedRequest {
  method: string;
  /** Path and query, e.g. /storage/v1/b/bkt/o/key?alt=media */
  url: string;
  /** The Range header, when the request had one (a ranged read). */
  range?: string;
}

export interface HttpFaultProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Every request forwarded or failed so far, in order. */
  readonly requests: ProxiedRequest[];
  /**
   * Fails (with `status`) every request `match` accepts, until cleared with
   * `fail(undefined)`; with `opts.times` only that many. `opts.forward` sends
   * the request on and fails only the answer (GCS did the work, the caller
   * cannot know: an ambiguous failure); `opts.before` runs before the failure
   * is answered (another writer acting meanwhile).
   */
  fail(match: ((req: ProxiedRequest) => boolean) | undefined, status?: number, opts?: FailOptions): void;
  /** Holds every request `match` accepts for `ms` before forwarding it, until cleared with `slow(undefined)`. */
  slow(match: ((req: ProxiedRequest) => boolean) | undefined, ms?: number): void;
  /** Requests forwarded and not answered yet. */
  readonly inFlight: number;
  /** Of the requests `slow` held: how many there were, and the most at once (held or forwarded, not yet answered). */
  readonly slowed: { count: number; mostAtOnce: number };
  close(): Promise<void>;
}

export interface FailOptions {
  times?: number;
  forward?: boolean;
  before?: (req: ProxiedRequest) => Promise<void>;
}

export async function startHttpFaultProxy(targetPort: number): Promise<HttpFaultProxy> {
  const requests: ProxiedRequest[] = [];
  let failing: { match: (req: ProxiedRequest) => boolean; status: number; opts: FailOptions; left: number } | undefined;
  let slowing: { match: (req: ProxiedRequest) => boolean; ms: number } | undefined;
  let inFlight = 0;
  const slowed = { count: 0, mostAtOnce: 0 };
  let slowedNow = 0;
  const agent = new http.Agent({ keepAlive: true });
  let port = 0;
  const server = http.createServer((req, res) => {
    const seen: ProxiedRequest = { method: req.method ?? "GET", url: req.url ?? "/" };
    if (typeof req.headers.range === "string") seen.range = req.headers.range;
    requests.push(seen);
    if (failing && failing.left > 0 && failing.match(seen)) {
      const { status, opts } = failing;
      failing.left--;
      const answer = () => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: status, message: "injected by the test proxy" } }));
      };
      const finish = () => void (opts.before ? opts.before(seen) : Promise.resolve()).then(answer, () => res.destroy());
      if (opts.forward) {
        // The work is done upstream; only its answer is lost.
        forward(req, res, finish);
      } else {
        req.resume();
        finish();
      }
      return;
    }
    const delay = slowing?.match(seen) ? slowing.ms : 0;
    inFlight++;
    res.once("close", () => inFlight--);
    if (delay > 0) {
      slowed.count++;
      slowed.mostAtOnce = Math.max(slowed.mostAtOnce, ++slowedNow);
      res.once("close", () => slowedNow--);
    }
    setTimeout(() => forward(req, res), delay);
  });
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, swallow?: () => void) => {
    const upstream = http.request(
      { host: "127.0.0.1", port: targetPort, method: req.method, path: req.url, headers: { ...req.headers, host: `127.0.0.1:${targetPort}` }, agent },
      (up) => {
        if (swallow) {
          up.resume();
          up.once("end", swallow);
          return;
        }
        // A resumable upload's session URL names the emulator: send the rest of the upload through us too.
        const headers = { ...up.headers };
        if (typeof headers.location === "string") headers.location = headers.location.replace(`127.0.0.1:${targetPort}`, `127.0.0.1:${port}`);
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    fail(match, status = 503, opts = {}) {
      failing = match && { match, status, opts, left: opts.times ?? Infinity };
    },
    slow(match, ms = 1000) {
      slowing = match && { match, ms };
    },
    get inFlight() {
      return inFlight;
    },
    slowed,
    close: () =>
      new Promise((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
