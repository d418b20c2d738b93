/**
 * The public entry point, `import { start, algorithms } from 'l4lb'`: run the balancer inside a
 * Node program, extend it with your own balancing algorithms and health checks. Everything
 * exported here is covered by semver; deeper paths (dist/lib/...) are not.
 */
export { start, parseConfig, type ConfigInput, type L4lb, type ListenAddress, type ReloadResult, type StartOptions } from './api/index.js'
export { Registry, createRegistry } from './api/registry.js'
export { algorithms, algorithmAliases, keyHash, type Algorithm, type AlgorithmName, type BalanceEntry, type Picker } from './balance/index.js'
export type { HealthCheck, HealthCheckContext, HealthCheckTarget } from './health/custom.js'
export type { Status } from './admin/index.js'
export { ConfigErrors } from './config/index.js'
export type { AdminConfig, BackendConfig, Config, HealthConfig, LogConfig, ServiceConfig } from './config/index.js'
export { L4lbError, ConfigError, type ErrorCode } from './errors.js'
