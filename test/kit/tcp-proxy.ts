/**
 * A TCP proxy on a free loopback port in front of a real peer (the GCS
 * emulator, Redis, a daemon): it can be cut (every connection dropped, new
 * ones refused) and restored, so a test makes a network partition for one
 * daemon while others still reach the peer; and it can drop its connections
 * when the bytes sent towards the peer pass given offsets, so a test breaks
 * an upload at chosen points while letting the client reconnect.
 */
import * as net from "node:net";

export interface TcpProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** 127.0.0.1:PORT */
  address: string;
  cut(): void;
  restore(): void;
  /**
   * Drops every open connection each time the bytes sent towards the peer
   * (counted over all connections, from now on) reach the next of `offsets`
   * (ascending); new connections are let in as before.
   */
  dropAt(offsets: number[]): void;
  /** Bytes passed towards the peer since the last dropAt (or the start). */
  readonly upstreamBytes: number;
  /** Connections dropped by dropAt so far (each drop counts once). */
  readonly drops: number;
  close(): Promise<void>;
}

/** A TCP proxy to the peer on `targetPort` (loopback). */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  let open = true;
  const sockets = new Set<net.Socket>();
  let pendingDrops: number[] = [];
  let upstreamBytes = 0;
  let drops = 0;
  const dropAll = () => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  const server = net.createServer((downstream) => {
    if (!open) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    const end = () => {
      downstream.destroy();
      upstream.destroy();
      sockets.delete(downstream);
      sockets.delete(upstream);
    };
    sockets.add(downstream);
    sockets.add(upstream);
    for (const s of [downstream, upstream]) s.on("error", end).on("close", end);
    // Towards the peer by hand, to count the bytes (and honour backpressure as pipe would).
    downstream.on("data", (chunk: Buffer) => {
      const next = pendingDrops[0];
      if (next !== undefined && upstreamBytes + chunk.length >= next) {
        upstream.write(chunk.subarray(0, next - upstreamBytes));
        upstreamBytes = next;
        pendingDrops.shift();
        drops++;
        dropAll();
        return;
      }
      upstreamBytes += chunk.length;
      if (!upstream.write(chunk)) downstream.pause();
    });
    upstream.on("drain", () => downstream.resume());
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const cut = () => {
    open = false;
    dropAll();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    address: `127.0.0.1:${port}`,
    cut,
    restore: () => {
      open = true;
    },
    dropAt(offsets) {
      pendingDrops = [...offsets].sort((a, b) => a - b);
      upstreamBytes = 0;
    },
    get upstreamBytes() {
      return upstreamBytes;
    },
    get drops() {
      return drops;
    },
    close: () => {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
