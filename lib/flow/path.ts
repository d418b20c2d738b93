/**
 * What the TCP and UDP data paths of a service have in common as objects: the context new flows
 * take (replaced on reload), the flow log, and the one subscription to the pool's state changes.
 */
import type { Logger } from 'pino'
import type { ServiceConfig } from '../config/index.js'
import type { Pool, StateChange } from '../pool/index.js'
import { FlowContext } from './context.js'
import { FlowLog } from './log.js'

export abstract class DataPath {
  readonly name: string
  readonly proto: 'tcp' | 'udp'
  protected readonly log: FlowLog
  /** What a flow begun now takes along (config, pool, admission); replaced on reload. */
  protected context: FlowContext

  constructor(config: ServiceConfig, pool: Pool, logger: Logger, proto: 'tcp' | 'udp') {
    this.name = config.name
    this.proto = proto
    this.log = new FlowLog(logger.child({ service: config.name, proto }), config.logConnections)
    this.context = new FlowContext(config, pool, this.log, proto)
    pool.onStateChange((change) => this.backendChanged(change))
  }

  get config(): ServiceConfig {
    return this.context.config
  }

  /** The service's pool, for its whole life (a reload updates it in place). */
  get pool(): Pool {
    return this.context.pool
  }

  /** Admission of new flows, with its refusal counts (kept across reloads that keep the limits). */
  get admission(): FlowContext['admission'] {
    return this.context.admission
  }

  /**
   * Reload: new flows use the new config from now on; open ones keep the context they began
   * with. The listening sockets stay open throughout.
   */
  update(config: ServiceConfig): void {
    this.context = new FlowContext(config, this.context.pool, this.log, this.proto, this.context)
    this.log.mode = config.logConnections
  }

  /** A backend changed state: act on this path's flows by the policy (lib/flow/policy). */
  protected abstract backendChanged(change: StateChange): void
}
