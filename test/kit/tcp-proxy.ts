/**
 * A TCP proxy on a free loopback port in front of a real peer (the GCS
 * emulator, Redis): it can be cut (every connection dropped, new ones
 * refused) and restored, so a test makes a network partition for one daemon
 * while others still reach the peer.
 */
import * as net from "node:net";

export interface TcpProxy {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** A TCP proxy to the emulator that can be cut (every connection dropped, new ones refused) and restored. */
export async function startProxy(targetPort: number): Promise<TcpProxy> {
  let open = true;
  const sockets = new Set<net.Socket>();
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
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const cut = () => {
    open = false;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    cut,
    restore: () => {
      open = true;
    },
    close: () => {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
