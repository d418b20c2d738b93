/**
 * Process life: builds pools and services from a Config, binds listeners, and stops them
 * gracefully (stop accepting, let connections finish up to the drain timeout, close the rest).
 */
import type { Logger } from 'pino'
import type { Config, ServiceConfig } from '../config/index.js'
import type { Prober } from '../health/index.js'
import { Pool, type StateChange } from '../pool/index.js'
import { TcpService } from '../tcp/service.js'
import { UdpService } from '../udp/index.js'
import { attachProber } from './health.js'
import { resolveBackends } from './resolve.js'

export class Runtime {
  readonly config: Config
  readonly logger: Logger
  readonly pools: Pool[] = []
  readonly tcp: TcpService[] = []
  readonly udp: UdpService[] = []
  readonly probers: Prober[] = []

  private constructor(config: Config, logger: Logger) {
    this.config = config
    this.logger = logger
  }

  static async start(config: Config, logger: Logger): Promise<Runtime> {
    const runtime = new Runtime(config, logger)
    try {
      for (const service of config.services) await runtime.#startService(service)
    } catch (err) {
      await runtime.stop(0)
      throw err
    }
    return runtime
  }

  async #startService(service: ServiceConfig): Promise<void> {
    const addresses = await resolveBackends(service.backends)
    const pool = new Pool({
      name: service.name,
      balance: service.balance,
      backends: service.backends,
      addresses,
      // Checked backends start unusable and come up on their first passing check (README:
      // "Initial state"); with no checks there is nothing to wait for.
      initiallyUp: service.health.type === 'none',
    })
    pool.onStateChange(this.#logStateChange)
    this.pools.push(pool)
    if (service.health.type !== 'none') this.probers.push(await attachProber(pool, service.health, this.logger))
    let tcpPorts: number[] | undefined
    if (service.protocols.includes('tcp')) {
      const tcp = new TcpService(service, pool, this.logger)
      this.tcp.push(tcp)
      await tcp.listen()
      tcpPorts = tcp.addresses().map((a) => a.port)
      this.logger.info(
        { service: service.name, listen: tcp.addresses().map((a) => `${a.host}:${a.port}`), balance: service.balance, backends: service.backends.map((b) => b.name) },
        'listening',
      )
    }
    if (service.protocols.includes('udp')) await this.#startUdp(service, pool, tcpPorts)
  }

  /** With tcp,udp the UDP sockets take the ports TCP was given, so `:0` means one port for both. */
  async #startUdp(service: ServiceConfig, pool: Pool, ports: number[] | undefined): Promise<void> {
    const udp = new UdpService(service, pool, this.logger)
    this.udp.push(udp)
    await udp.listen(ports)
    this.logger.info(
      {
        service: service.name, proto: 'udp', listen: udp.addresses().map((a) => `${a.host}:${a.port}`), balance: service.balance,
        backends: service.backends.map((b) => b.name), idleTimeoutMs: service.udpIdleTimeoutMs, responses: service.udpResponses,
      },
      'listening',
    )
  }

  readonly #logStateChange = (change: StateChange): void => {
    const pool = this.pools.find((p) => p.name === change.pool)
    const fields = {
      service: change.pool, backend: change.backend.name, from: change.from, to: change.to, reason: change.reason,
      lastError: change.lastError, usable: pool?.usableCount, usingBackups: pool?.usingBackups,
    }
    if (change.to === 'down') this.logger.warn(fields, 'backend state changed')
    else this.logger.info(fields, 'backend state changed')
    if (pool && pool.usableCount === 0) this.logger.error({ service: change.pool }, 'no usable backend: new connections are closed')
  }

  get activeConnections(): number {
    return this.tcp.reduce((n, s) => n + s.activeConnections, 0) + this.udp.reduce((n, s) => n + s.activeSessions, 0)
  }

  /**
   * Stops accepting, waits up to `drainTimeoutMs` for connections to finish, then closes the rest.
   */
  async stop(drainTimeoutMs: number): Promise<void> {
    // UDP has nothing to drain: with the listener closed replies have no way back, so sessions end now.
    await Promise.all([...this.tcp.map((s) => s.stopAccepting()), ...this.udp.map((s) => s.close()), ...this.probers.map((p) => p.stop())])
    const idle = Promise.all(this.tcp.map((s) => s.whenIdle()))
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), drainTimeoutMs)
    })
    const outcome = await Promise.race([idle.then(() => 'idle' as const), timeout])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      this.logger.warn({ active: this.activeConnections }, 'drain timeout: closing remaining connections')
      for (const s of this.tcp) s.closeAll('shutdown')
      await idle
    }
  }
}
