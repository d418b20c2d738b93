/**
 * What a flow needs from its service, taken once when it is accepted (issue 13): the config
 * and pool it was admitted under, the key function, admission, and how failures are told
 * apart. A connection or session holds its context and never looks back at its service, so
 * a reload that swaps the service's context changes nothing for flows already open.
 */
import { keyHash } from '../balance/index.js'
import type { ServiceConfig } from '../config/index.js'
import { LOCAL_ERROR_CODES } from '../errors.js'
import type { Backend, Pool } from '../pool/index.js'
import { Admission } from './admit.js'
import type { FlowLog } from './log.js'

export class FlowContext {
  readonly config: ServiceConfig
  readonly pool: Pool
  readonly admission: Admission
  readonly log: FlowLog
  readonly #hashByIp: boolean
  /** The settings `admission` was built from. */
  readonly #admissionKey: string

  /**
   * A service's context for `config`. Admission is kept from `previous` while its settings stay
   * the same, so per-source counts of open flows stay true across a reload; new settings start a
   * new one (flows admitted before release to theirs).
   */
  constructor(config: ServiceConfig, pool: Pool, log: FlowLog, proto: 'tcp' | 'udp', previous?: FlowContext) {
    this.config = config
    this.pool = pool
    this.log = log
    this.#hashByIp = config.hashKey === 'src-ip'
    this.#admissionKey = JSON.stringify([config.allow, config.deny, config.maxConns, config.maxConnsPerIp, config.ratePerIp, config.udpMaxSessions, config.udpMaxSessionsPerIp])
    this.admission = previous !== undefined && previous.#admissionKey === this.#admissionKey
      ? previous.admission
      : proto === 'tcp' ? Admission.forTcp(config) : Admission.forUdp(config)
    // l4lb_refused_total counts since the service started: new settings do not reset it.
    if (previous !== undefined && previous.admission !== this.admission) Object.assign(this.admission.refused, previous.admission.refused)
  }

  /** The key stage: from the real client's address, once per flow. */
  key(ip: string, port: number): number {
    return keyHash(this.#hashByIp ? ip : `${ip}:${port}`)
  }

  /**
   * A connect or send to `backend` failed with `code`. Our own shortage (descriptors, buffers,
   * ports) is logged and never held against the backend; anything else is a passive
   * observation for the prober. Returns true when it was the backend's.
   */
  backendFailed(backend: Backend, code: string): boolean {
    if (LOCAL_ERROR_CODES.has(code)) {
      this.log.warn({ code, backend: backend.name }, 'cannot open a connection to a backend')
      return false
    }
    this.pool.observeConnectFailure(backend, code)
    return true
  }
}

