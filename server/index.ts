/** sockgate/server: the gateway as a Fastify plugin, a ready-made gateway, and its configuration. */
export { createGateway, logSerializers, type Gateway, type GatewayOptions, type ListeningAddress } from './gateway.js';
export { sockgatePlugin, RAW_SUBPROTOCOL, SHUTDOWN_GRACE_MS, type SockgatePluginOptions } from './plugin.js';
export {
  DEFAULTS,
  resolveConfig,
  readConfigFile,
  loadConfigFile,
  isResolvedConfig,
  parseListen,
  formatListen,
  isLoopbackHost,
  type AnonymousAccess,
  type ConfigInput,
  type GatewayConfig,
  type GatewayLimits,
  type ListenAddress,
} from './config.js';
export { LIMIT_DEFAULTS, LIMIT_RANGES, handshakeHttpOptions, type Limits, type LimitsConfig } from './limits.js';
export {
  bearerProtocol,
  redactHeaders,
  redactUrl,
  type AuthConfig,
  type AuthConfigInput,
  type Principal,
} from './auth.js';
export { LOOPBACK_HOSTS } from './origin.js';
export { DEMO_CONFIG } from './demo-config.js';
export { handleRawConnection, BACKEND_END_GRACE_MS, type RawContext } from './raw.js';
export { parseTarget, formatTarget, type Route, type Target } from './routes.js';
