/**
 * A real gateway for integration tests: createGateway() on 127.0.0.1 and an ephemeral port, logger off.
 * Whatever `listen` the config names is replaced: tests never listen anywhere but loopback.
 */
import { createGateway, type Gateway } from '../../server/gateway.js';

export interface TestGateway {
  gateway: Gateway;
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `ws://127.0.0.1:PORT` (append `/mux` or `/raw/NAME`) */
  wsUrl: string;
  port: number;
  close(): Promise<void>;
}

export async function startGateway(config: Record<string, unknown> = {}): Promise<TestGateway> {
  const gateway = await createGateway({ ...config, listen: '127.0.0.1:0' }, { logger: false });
  try {
    const { port, url } = await gateway.listen();
    return { gateway, url, wsUrl: url.replace(/^http/, 'ws'), port, close: () => gateway.close() };
  } catch (err) {
    await gateway.close();
    throw err;
  }
}
