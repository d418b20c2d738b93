/**
 * Process life: builds each service (pool, prober, listeners) from a Config, reloads in place
 * (SIGHUP: listeners kept, new pools swapped in, removed services drained), and stops gracefully
 * (stop accepting, let connections finish up to the drain timeout, close the rest).
 */
import type { Logger } from 'pino'
import { formatHostPort } from '../address/index.js'
import type { Config, ServiceConfig } from '../config/index.js'
import type { Prober } from '../health/index.js'
import { Pool, type StateChange } from '../pool/index.js'
import { TcpService } from '../tcp/service.js'
import { UdpService } from '../udp/index.js'
import { attachProber } from './health.js'
import { createResolver, hasNames, resolveBackends, signature, type NameResolver, type ResolvedBackends } from './resolve.js'

/** Everything one configured service owns. */
export class ServiceHandle {
  config: ServiceConfig
  pool: Pool
  prober: Prober | undefined
  tcp: TcpService | undefined
  udp: UdpService | undefined
  /** The last DNS answer the pool was built from (see refresh). */
  resolvedSignature = ''
  refreshTimer: NodeJS.Timeout | undefined

  constructor(config: ServiceConfig, pool: Pool) {
    this.config = config
    this.pool = pool
  }

  get name(): string {
    return this.config.name
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
    await Promise.all([this.tcp?.stopAccepting(), this.udp?.close(), this.prober?.stop()])
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
  /** Services removed by a reload whose connections are still finishing. */
  readonly draining = new Set<ServiceHandle>()
  #resolver: NameResolver

  private constructor(config: Config, logger: Logger) {
    this.config = config
    this.logger = logger
    this.#resolver = createResolver(config.resolvers)
  }

  static async start(config: Config, logger: Logger): Promise<Runtime> {
    const runtime = new Runtime(config, logger)
    try {
      for (const service of config.services) runtime.services.set(service.name, await runtime.#startService(service))
    } catch (err) {
      await runtime.stop(0)
      throw err
    }
    return runtime
  }

  async #buildPool(service: ServiceConfig, previous?: Pool, refreshed?: ResolvedBackends): Promise<ServiceHandle> {
    const resolved = refreshed ?? await resolveBackends(service.backends, this.#resolver)
    const pool = new Pool({
      name: service.name,
      balance: service.balance,
      backends: resolved.backends,
      addresses: resolved.addresses,
      // Checked backends start unusable and come up on their first passing check (README:
      // "Initial state"); with no checks there is nothing to wait for.
      initiallyUp: service.health.type === 'none',
    })
    // Only a DNS refresh passes `refreshed`: it keeps operator-set weights; a reload resets them.
    if (previous) pool.inherit(previous, refreshed !== undefined)
    pool.onStateChange(this.#logStateChange)
    const handle = new ServiceHandle(service, pool)
    handle.resolvedSignature = signature(resolved)
    if (service.health.type !== 'none') handle.prober = await attachProber(pool, service.health, this.logger)
    this.#scheduleRefresh(handle)
    return handle
  }

  /** Re-resolves hostnames and SRV names; a changed answer swaps in a new pool (like a reload). */
  #scheduleRefresh(handle: ServiceHandle): void {
    const service = handle.config
    if (service.resolveIntervalMs <= 0 || !hasNames(service.backends)) return
    handle.refreshTimer = setInterval(() => void this.#refresh(handle), service.resolveIntervalMs)
    handle.refreshTimer.unref()
  }

  async #refresh(handle: ServiceHandle): Promise<void> {
    if (this.services.get(handle.name) !== handle) return clearInterval(handle.refreshTimer)
    let resolved: ResolvedBackends
    try {
      resolved = await resolveBackends(handle.config.backends, this.#resolver)
    } catch (err) {
      this.logger.warn({ service: handle.name, err: (err as Error).message }, 'DNS refresh failed: keeping the current backends')
      return
    }
    if (signature(resolved) === handle.resolvedSignature || this.services.get(handle.name) !== handle) return
    clearInterval(handle.refreshTimer)
    const next = await this.#buildPool(handle.config, handle.pool, resolved)
    await handle.prober?.stop()
    next.tcp = handle.tcp
    next.udp = handle.udp
    handle.tcp?.update(handle.config, next.pool)
    handle.udp?.update(handle.config, next.pool)
    this.services.set(handle.name, next)
    this.logger.info({ service: handle.name, backends: resolved.backends.map((b, i) => `${b.name}=${resolved.addresses[i]}`) }, 'backends re-resolved')
  }

  async #startService(service: ServiceConfig): Promise<ServiceHandle> {
    const handle = await this.#buildPool(service)
    try {
      await this.#listen(handle)
    } catch (err) {
      await handle.stopAccepting()
      throw err
    }
    return handle
  }

  async #listen(handle: ServiceHandle): Promise<void> {
    const service = handle.config
    const backends = handle.pool.backends.map((b) => b.name)
    let tcpPorts: number[] | undefined
    if (service.protocols.includes('tcp')) {
      const tcp = new TcpService(service, handle.pool, this.logger)
      handle.tcp = tcp
      await tcp.listen()
      tcpPorts = tcp.addresses().map((a) => a.port)
      this.logger.info({ service: service.name, proto: 'tcp', listen: tcp.addresses().map((a) => formatHostPort(a.host, a.port)), balance: service.balance, backends }, 'listening')
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
    const pool = this.services.get(change.pool)?.pool
    const fields = {
      service: change.pool, backend: change.backend.name, from: change.from, to: change.to, reason: change.reason,
      lastError: change.lastError, usable: pool?.usableCount, usingBackups: pool?.usingBackups,
    }
    if (change.to === 'down') this.logger.warn(fields, 'backend state changed')
    else this.logger.info(fields, 'backend state changed')
    if (pool && pool.usableCount === 0) this.logger.error({ service: change.pool }, 'no usable backend: new connections are closed')
  }

  get activeConnections(): number {
    let n = 0
    for (const s of this.services.values()) n += s.activeConnections
    for (const s of this.draining) n += s.activeConnections
    return n
  }

  /**
   * Applies a new, already validated config without closing listeners of services that stay
   * and without cutting established connections. Services whose listen addresses or protocols
   * changed are rebound (their old listeners close first, so the same port can be reused).
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
      const old = this.services.get(service.name)
      if (!old) {
        this.services.set(service.name, await this.#startService(service))
        result.added.push(service.name)
        continue
      }
      const handle = await this.#buildPool(service, old.pool)
      clearInterval(old.refreshTimer)
      await old.prober?.stop()
      if (sameListeners(old.config, service)) {
        old.tcp?.update(service, handle.pool)
        old.udp?.update(service, handle.pool)
        handle.tcp = old.tcp
        handle.udp = old.udp
        result.updated.push(service.name)
      } else {
        await Promise.all([old.tcp?.stopAccepting(), old.udp?.close()])
        if (old.activeConnections > 0) void this.#retire(old, false)
        await this.#listen(handle)
        result.rebound.push(service.name)
      }
      this.services.set(service.name, handle)
    }
    this.config = next
    return result
  }

  async #retire(handle: ServiceHandle, stop = true): Promise<void> {
    this.draining.add(handle)
    if (stop) await handle.stopAccepting()
    const cut = await handle.drain(handle.config.drainTimeoutMs)
    this.draining.delete(handle)
    this.logger.info({ service: handle.name, cut }, 'retired service drained')
  }

  /** Stops accepting, waits up to `drainTimeoutMs` for connections to finish, then closes the rest. */
  async stop(drainTimeoutMs: number): Promise<void> {
    const all = [...this.services.values(), ...this.draining]
    await Promise.all(all.map((s) => s.stopAccepting()))
    const cut = (await Promise.all(all.map((s) => s.drain(drainTimeoutMs)))).reduce((a, b) => a + b, 0)
    if (cut > 0) this.logger.warn({ cut }, 'drain timeout: closed remaining connections')
  }
}

function sameListeners(a: ServiceConfig, b: ServiceConfig): boolean {
  const key = (s: ServiceConfig): string => [...s.protocols].sort().join(',') + '|' + s.listen.map((l) => `${l.host}:${l.port}`).sort().join(',')
  return key(a) === key(b)
}
