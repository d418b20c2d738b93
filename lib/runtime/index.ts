/**
 * Process life: builds each service (pool, prober, listeners) from a Config, reloads in place
 * (SIGHUP: listeners kept, the same pool and prober updated, removed services drained), and
 * stops gracefully (stop accepting, let connections finish up to the drain timeout, close the
 * rest).
 */
import type { Logger } from 'pino'
import { formatHostPort } from '../address/index.js'
import type { Config, ServiceConfig } from '../config/index.js'
import type { Prober } from '../health/index.js'
import { Pool, type Backend, type PoolOptions, type StateChange } from '../pool/index.js'
import { choosePlane, nativeEngine, NativeTcpService, noteFallback, type PlaneChoice } from '../native/index.js'
import { TcpService } from '../tcp/service.js'
import { UdpService } from '../udp/index.js'
import { ServiceHealth, type Extensions } from './health.js'
import { createResolver, hasNames, resolveBackends, signature, type NameResolver, type ResolvedBackends } from './resolve.js'
import { MemoryReclaim } from './reclaim.js'

/**
 * Everything one configured service owns. The pool and its health live as long as the service
 * (a reload updates them in place); listeners may be replaced when their addresses change.
 */
export class ServiceHandle {
  config: ServiceConfig
  readonly pool: Pool
  readonly health: ServiceHealth
  /** Which data plane carries the service's TCP connections, and why (lib/native choosePlane). */
  plane: PlaneChoice = { plane: 'node', why: '' }
  tcp: TcpService | NativeTcpService | undefined
  udp: UdpService | undefined
  /** The last DNS answer the pool was built from (see refresh). */
  resolvedSignature = ''
  refreshTimer: NodeJS.Timeout | undefined

  constructor(config: ServiceConfig, pool: Pool, health: ServiceHealth) {
    this.config = config
    this.pool = pool
    this.health = health
  }

  get name(): string {
    return this.config.name
  }

  get prober(): Prober | undefined {
    return this.health.prober
  }

  /**
   * Connections (and UDP sessions) proxied to `backend` so far, the open ones included, on
   * either plane: the native plane counts its closed ones from close records and its open ones
   * in the engine's shared counts.
   */
  connectionsTotal(backend: Backend): number {
    return this.tcp?.connectionsTotal(backend) ?? backend.connectionsTotal
  }

  /** TCP connections plus UDP sessions. */
  get activeConnections(): number {
    return (this.tcp?.activeConnections ?? 0) + (this.udp?.activeSessions ?? 0)
  }

  /**
   * Stops new connections. UDP has nothing to drain: with its listener closed replies have no
   * way back, so its sessions end here.
   */
  async stopAccepting(): Promise<void> {
    clearInterval(this.refreshTimer)
    await Promise.all([this.tcp?.stopAccepting(), this.udp?.close()])
  }

  /** Waits up to `timeoutMs` for connections to end, then closes the rest. Returns how many were cut. */
  async drain(timeoutMs: number): Promise<number> {
    const idle = this.tcp ? this.tcp.whenIdle() : Promise.resolve()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs)
    })
    const outcome = await Promise.race([idle.then(() => 'idle' as const), timeout])
    clearTimeout(timer)
    if (outcome === 'idle') return 0
    const cut = this.activeConnections
    this.tcp?.closeAll('shutdown')
    await idle
    return cut
  }
}

export class Runtime {
  config: Config
  readonly logger: Logger
  readonly services = new Map<string, ServiceHandle>()
  /** Services (or replaced listeners of one) whose connections are still finishing. */
  readonly draining = new Set<ServiceHandle>()
  /** Set when stop() begins: /healthz turns 503 so routers move traffic away during the drain. */
  stopping = false
  #resolver: NameResolver
  readonly #extensions: Extensions | undefined
  #reclaim: MemoryReclaim | undefined

  private constructor(config: Config, logger: Logger, extensions?: Extensions) {
    this.config = config
    this.logger = logger
    this.#resolver = createResolver(config.resolvers)
    this.#extensions = extensions
  }

  /** `extensions`: algorithms and checks an embedding program registered (lib/api). */
  static async start(config: Config, logger: Logger, extensions?: Extensions): Promise<Runtime> {
    const runtime = new Runtime(config, logger, extensions)
    try {
      for (const service of config.services) runtime.services.set(service.name, await runtime.#startService(service))
    } catch (err) {
      await runtime.stop(0)
      throw err
    }
    runtime.#reclaim = new MemoryReclaim(() => runtime.activeConnections, logger)
    return runtime
  }

  async #startService(service: ServiceConfig): Promise<ServiceHandle> {
    const resolved = await resolveBackends(service.backends, this.#resolver)
    const plane = choosePlane(service, this.config.dataPlane)
    noteFallback(this.logger, service, plane)
    const pool = new Pool({
      ...this.#poolOptions(service, resolved),
      // The native plane's threads count live connections in memory the pool reads too.
      activeStorage: plane.plane === 'native' ? nativeEngine(this.config.threads).createCounters() : undefined,
      name: service.name,
    })
    pool.onStateChange(this.#logStateChange)
    this.#markUnresolved(service, pool, resolved)
    const handle = new ServiceHandle(service, pool, new ServiceHealth(pool, this.#extensions))
    handle.plane = plane
    handle.resolvedSignature = signature(resolved)
    try {
      await handle.health.apply(service.health)
      await this.#listen(handle)
    } catch (err) {
      await handle.stopAccepting()
      await handle.health.stop()
      throw err
    }
    this.#scheduleRefresh(handle)
    return handle
  }

  /** What a pool is built from, and updated from on reload and DNS changes. */
  #poolOptions(service: ServiceConfig, resolved: ResolvedBackends): Omit<PoolOptions, 'name' | 'clock' | 'activeStorage'> {
    return {
      balance: service.balance,
      backends: resolved.backends,
      addresses: resolved.addresses,
      // Checked backends start `starting` and come up on their first passing check (README:
      // "Initial state"); with no checks there is nothing to wait for.
      checked: service.health.type !== 'none',
      algorithm: this.#extensions?.algorithm(service.balance),
      slowStartMs: service.slowStartMs,
    }
  }

  /** Applies a service's new config and DNS answer to its pool and prober, in place. */
  async #updateService(handle: ServiceHandle, service: ServiceConfig, resolved: ResolvedBackends): Promise<void> {
    const change = handle.pool.update(this.#poolOptions(service, resolved))
    this.#markUnresolved(service, handle.pool, resolved)
    handle.resolvedSignature = signature(resolved)
    await handle.health.apply(service.health)
    if (change.added.length > 0 || change.removed.length > 0) {
      this.logger.info({ service: service.name, added: change.added, removed: change.removed, usable: handle.pool.usableCount }, 'backends changed')
    }
  }

  /** Backends whose names did not resolve go down with the DNS error; the service serves on without them. */
  #markUnresolved(service: ServiceConfig, pool: Pool, resolved: ResolvedBackends): void {
    for (const [name, error] of resolved.unresolved) {
      const backend = pool.byName(name)
      if (!backend || backend.unresolved) continue
      pool.setUnresolved(backend.id, error)
      this.logger.warn({ service: service.name, backend: name, state: 'down', reason: 'dns', lastError: error }, 'backend name does not resolve: down until it does')
    }
  }

  /** Re-resolves hostnames and SRV names on a timer; a changed answer updates the pool in place. */
  #scheduleRefresh(handle: ServiceHandle): void {
    clearInterval(handle.refreshTimer)
    const service = handle.config
    if (service.resolveIntervalMs <= 0 || !hasNames(service.backends)) return
    handle.refreshTimer = setInterval(() => void this.refresh(handle), service.resolveIntervalMs)
    handle.refreshTimer.unref()
  }

  /** Re-resolves one service's backend names now. Returns whether its backends changed. */
  async refresh(handle: ServiceHandle): Promise<boolean> {
    if (this.services.get(handle.name) !== handle || !hasNames(handle.config.backends)) return false
    let resolved: ResolvedBackends
    try {
      resolved = await resolveBackends(handle.config.backends, this.#resolver)
    } catch (err) {
      this.logger.warn({ service: handle.name, err: (err as Error).message }, 'DNS refresh failed: keeping the current backends')
      return false
    }
    // A name that resolved before and fails now keeps the backends as they are (a DNS hiccup must
    // not take a working backend down); one that never resolved stays down until it does.
    const newlyFailed = [...resolved.unresolved.keys()].filter((name) => !handle.pool.byName(name)?.unresolved)
    if (newlyFailed.length > 0) {
      this.logger.warn({ service: handle.name, backends: newlyFailed, err: [...resolved.unresolved.values()].join('; ') }, 'DNS refresh failed: keeping the current backends')
      return false
    }
    if (signature(resolved) === handle.resolvedSignature || this.services.get(handle.name) !== handle) return false
    await this.#updateService(handle, handle.config, resolved)
    this.logger.info({ service: handle.name, backends: resolved.backends.map((b, i) => `${b.name}=${resolved.addresses[i]}`) }, 'backends re-resolved')
    return true
  }

  /** Re-resolves every service's names now (SIGHUP without a config file). Returns the changed services. */
  async refreshAll(): Promise<string[]> {
    const changed: string[] = []
    for (const handle of [...this.services.values()]) if (await this.refresh(handle)) changed.push(handle.name)
    return changed
  }

  async #listen(handle: ServiceHandle): Promise<void> {
    const service = handle.config
    const backends = handle.pool.backends.map((b) => b.name)
    let tcpPorts: number[] | undefined
    if (service.protocols.includes('tcp')) {
      const tcp = handle.plane.plane === 'native'
        ? new NativeTcpService(service, handle.pool, this.logger, nativeEngine(this.config.threads))
        : new TcpService(service, handle.pool, this.logger)
      handle.tcp = tcp
      await tcp.listen()
      tcpPorts = tcp.addresses().map((a) => a.port)
      this.logger.info(
        {
          service: service.name, proto: 'tcp', listen: tcp.addresses().map((a) => formatHostPort(a.host, a.port)), balance: service.balance, backends,
          plane: handle.plane.plane, planeWhy: handle.plane.why,
        },
        'listening',
      )
    }
    if (service.protocols.includes('udp')) {
      // With tcp,udp the UDP sockets take the ports TCP was given, so `:0` means one port for both.
      const udp = new UdpService(service, handle.pool, this.logger)
      handle.udp = udp
      await udp.listen(tcpPorts)
      this.logger.info(
        {
          service: service.name, proto: 'udp', listen: udp.addresses().map((a) => formatHostPort(a.host, a.port)), balance: service.balance,
          backends, idleTimeoutMs: service.udpIdleTimeoutMs, responses: service.udpResponses,
        },
        'listening',
      )
    }
  }

  readonly #logStateChange = (change: StateChange): void => {
    const fields = {
      service: change.pool, backend: change.backend.name, from: change.from, to: change.to, reason: change.reason,
      lastError: change.lastError, usable: change.usableCount, usingBackups: change.usingBackups,
    }
    if (change.to === 'down') this.logger.warn(fields, 'backend state changed')
    else this.logger.info(fields, 'backend state changed')
    if (change.usableCount === 0 && change.from === 'up') this.logger.error({ service: change.pool }, 'no usable backend: new connections are closed')
  }

  get activeConnections(): number {
    let n = 0
    for (const s of this.services.values()) n += s.activeConnections
    for (const s of this.draining) n += s.activeConnections
    return n
  }

  /**
   * Applies a new, already validated config without closing listeners of services that stay
   * and without cutting established connections. A service that stays keeps its pool and
   * prober (updated in place); one whose listen addresses or protocols changed is rebound (its
   * old listeners close first, so the same port can be reused).
   */
  async reload(next: Config): Promise<{ added: string[]; removed: string[]; updated: string[]; rebound: string[] }> {
    const result = { added: [] as string[], removed: [] as string[], updated: [] as string[], rebound: [] as string[] }
    this.#resolver = createResolver(next.resolvers)
    const nextNames = new Set(next.services.map((s) => s.name))
    for (const [name, handle] of this.services) {
      if (nextNames.has(name)) continue
      this.services.delete(name)
      result.removed.push(name)
      void this.#retire(handle)
    }
    for (const service of next.services) {
      const handle = this.services.get(service.name)
      if (!handle) {
        this.services.set(service.name, await this.#startService(service))
        result.added.push(service.name)
        continue
      }
      const resolved = await resolveBackends(service.backends, this.#resolver)
      const previous = handle.config
      await this.#updateService(handle, service, resolved)
      handle.config = service
      const plane = choosePlane(service, next.dataPlane, handle.pool)
      const samePlane = plane.plane === handle.plane.plane
      handle.plane = plane
      if (sameListeners(previous, service) && samePlane) {
        handle.tcp?.update(service)
        handle.udp?.update(service)
        result.updated.push(service.name)
      } else {
        // The old listeners' connections finish under a handle of their own; the pool is shared.
        const old = new ServiceHandle(previous, handle.pool, handle.health)
        old.tcp = handle.tcp
        old.udp = handle.udp
        handle.tcp = undefined
        handle.udp = undefined
        await old.stopAccepting()
        if (old.activeConnections > 0) void this.#retire(old, false)
        else if (old.tcp instanceof NativeTcpService) old.tcp.release()
        await this.#listen(handle)
        result.rebound.push(service.name)
      }
      this.#scheduleRefresh(handle)
    }
    // The engine's thread count is fixed when it starts.
    this.config = { ...next, threads: this.config.threads }
    return result
  }

  async #retire(handle: ServiceHandle, wholeService = true): Promise<void> {
    this.draining.add(handle)
    if (wholeService) {
      await handle.stopAccepting()
      await handle.health.stop()
    }
    const cut = await handle.drain(handle.config.drainTimeoutMs)
    if (handle.tcp instanceof NativeTcpService) handle.tcp.release()
    this.draining.delete(handle)
    this.logger.info({ service: handle.name, cut }, 'retired service drained')
  }

  /** Stops accepting, waits up to `drainTimeoutMs` for connections to finish, then closes the rest. */
  /** `listenersClosed` runs once no listener accepts any more, before the drain. */
  async stop(drainTimeoutMs: number, listenersClosed?: () => void): Promise<void> {
    this.stopping = true
    this.#reclaim?.stop()
    const all = [...this.services.values(), ...this.draining]
    await Promise.all(all.map((s) => s.stopAccepting()))
    listenersClosed?.()
    await Promise.all(all.map((s) => s.health.stop()))
    const cut = (await Promise.all(all.map((s) => s.drain(drainTimeoutMs)))).reduce((a, b) => a + b, 0)
    if (cut > 0) this.logger.warn({ cut }, 'drain timeout: closed remaining connections')
  }
}

function sameListeners(a: ServiceConfig, b: ServiceConfig): boolean {
  const key = (s: ServiceConfig): string => [...s.protocols].sort().join(',') + '|' + s.listen.map((l) => `${l.host}:${l.port}`).sort().join(',')
  return key(a) === key(b)
}
