import { DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_MAX_V2_LENGTH } from '../proxy-protocol/constants.js'

/** One source of truth for every default an operator can override (DESIGN: "a default lives in config/"). */
export const DEFAULTS = {
  protocol: 'tcp',
  balance: 'consistent',
  hashKey: 'src-ip',
  proxyProtocol: 'none',
  /** The PROXY spec's own advice (at least 3 s to cover a retransmit), kept in the module. */
  acceptProxyTimeoutMs: DEFAULT_HEADER_TIMEOUT_MS,
  acceptProxyMaxLength: DEFAULT_MAX_V2_LENGTH,
  connectTimeoutMs: 5_000,
  idleTimeoutMs: 3_600_000,
  retries: 2,
  maxConns: 0,
  drainTimeoutMs: 30_000,
  onDown: 'keep',
  /** Matches HAProxy's and nginx's habit of a deep accept queue for bursts of new connections. */
  backlog: 4096,
  weight: 1,
  resolveIntervalMs: 30_000,
  // --- UDP (lib/udp) ---
  udpIdleTimeoutMs: 30_000,
  /** 0 = unlimited replies per session. */
  udpResponses: 0,
  udpMaxSessions: 100_000,
  /** 4 MiB: absorbs bursts between event-loop turns; Linux caps it at net.core.rmem_max. */
  udpBufferBytes: 4 * 1024 * 1024,
  udpKeepOnDown: false,
  health: {
    type: 'tcp',
    intervalMs: 2_000,
    timeoutMs: 1_000,
    rise: 2,
    fall: 3,
    httpPath: '/',
    httpStatus: '2xx',
    /** Each check delay is spread by ±10% so many backends are not checked in lockstep. */
    jitterRatio: 0.1,
  },
  log: { level: 'info', format: 'json' },
  dataPlane: 'auto',
  /** 0 = one native engine thread per CPU. */
  threads: 0,
} as const
