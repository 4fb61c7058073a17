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
export { tuneGcForThroughput, INCREMENTAL_GC_ENV } from './gc-tuning.js';
export { parseTarget, formatTarget, type Route, type Target } from './routes.js';
export { CLOSE_GRACE_MS, type SockgateControl } from './ops.js';
export { RESTART_KEYS, type ReloadResult, type RestartKey } from './reload.js';
export type { DrainResult } from './drain.js';
export { GatewayMetrics, UNKNOWN_ROUTE_LABEL, CONNECT_SECONDS_BUCKETS } from './metrics.js';
export type { AdminAddress } from './admin.js';
// Reverse tunnels and forwarding (PROTOCOL 11, README "Reverse tunnels and forwarding").
export { LocalAgentRegistry, type AgentLink, type AgentRegistry } from './agent-registry.js';
export { startAgent, type AgentHandle, type AgentOptions, type AgentState } from './agent.js';
export { AGENT_DEFAULTS, resolveAgentConfig, backoffDelay, type AgentConfig, type AgentConfigInput } from './agent-config.js';
export { startForward, connectStdio, type ForwardHandle, type ForwardOptions, type ConnectStdioOptions, type ListenTarget } from './forward.js';
export { createLogger, type Logger, type LogLevel } from './log.js';
