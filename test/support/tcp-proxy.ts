/**
 * A TCP proxy on loopback to a local port that can be cut (every connection
 * dropped, new ones refused) and restored: a network partition of one daemon
 * from its GCS emulator.
 */
import * as net from "node:net";

export interface TcpProxy {
  /** http://127.0.0.1:PORT, usable as GCS_API_ENDPOINT. */
  url: string;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let open = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    if (!open) return void down.destroy();
    const up = net.connect(targetPort, "127.0.0.1");
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    sockets.add(down).add(up);
    for (const s of [down, up]) s.on("error", end).on("close", end);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const cut = () => {
    open = false;
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    cut,
    restore: () => void (open = true),
    close: () => {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
