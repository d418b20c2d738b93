/**
 * The status page's live feed: `GET /events`, Server-Sent Events carrying the `/status` document
 * once a second, and the per-backend connections/s history its sparklines draw.
 *
 * Bounded by construction: at most MAX_STREAMS clients; one JSON text per tick shared by all of
 * them (nothing is kept per event); a client that does not read (more than MAX_BUFFERED_BYTES
 * queued) is dropped rather than buffered for; a closed client is forgotten at once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Runtime } from '../runtime/index.js'

/** Sparkline length: one sample a second for 5 minutes. */
export const RATE_SAMPLES = 300
export const MAX_STREAMS = 16
const MAX_BUFFERED_BYTES = 1 << 20
/** Sent with every stream: EventSource-style clients wait this long before reconnecting. */
const RETRY_MS = 2000

/**
 * Connections per second of one backend over the last RATE_SAMPLES seconds: a ring of counts,
 * filled from `connectionsTotal` deltas once a second (never per connection).
 */
class RateRing {
  readonly samples = new Uint32Array(RATE_SAMPLES)
  /** Where the next sample goes; also how many were taken, up to RATE_SAMPLES. */
  next = 0
  filled = 0
  lastTotal: number
  seenAt = 0

  constructor(total: number) {
    this.lastTotal = total
  }

  push(total: number): void {
    // A total that went down (a backend replaced by a reload with another of the same name
    // and no history) restarts the count instead of wrapping to 4 billion.
    this.samples[this.next] = total >= this.lastTotal ? total - this.lastTotal : 0
    this.lastTotal = total
    this.next = (this.next + 1) % RATE_SAMPLES
    if (this.filled < RATE_SAMPLES) this.filled++
  }

  get latest(): number {
    return this.filled === 0 ? 0 : this.samples[(this.next + RATE_SAMPLES - 1) % RATE_SAMPLES]!
  }

  /** Oldest first. */
  history(): number[] {
    const out: number[] = []
    for (let i = this.filled; i > 0; i--) out.push(this.samples[(this.next + RATE_SAMPLES - i) % RATE_SAMPLES]!)
    return out
  }
}

/** service → backend → value; the shape the page reads. */
export type PerBackend<T> = Record<string, Record<string, T>>

/** The rings of every backend of every service, keyed by names so a reload keeps the history. */
export class Rates {
  readonly #rings = new Map<string, Map<string, RateRing>>()
  #tick = 0

  /** Takes one sample of every backend; forgets backends no longer configured. */
  sample(runtime: Runtime): void {
    const tick = ++this.#tick
    for (const h of runtime.services.values()) {
      let rings = this.#rings.get(h.name)
      if (rings === undefined) this.#rings.set(h.name, (rings = new Map()))
      for (const b of h.pool.backends) {
        let ring = rings.get(b.name)
        if (ring === undefined) rings.set(b.name, (ring = new RateRing(h.connectionsTotal(b))))
        else ring.push(h.connectionsTotal(b))
        ring.seenAt = tick
      }
    }
    for (const [service, rings] of this.#rings) {
      for (const [name, ring] of rings) if (ring.seenAt !== tick) rings.delete(name)
      if (rings.size === 0) this.#rings.delete(service)
    }
  }

  latest(): PerBackend<number> {
    return this.#map((r) => r.latest)
  }

  history(): PerBackend<number[]> {
    return this.#map((r) => r.history())
  }

  #map<T>(f: (ring: RateRing) => T): PerBackend<T> {
    const out: PerBackend<T> = {}
    for (const [service, rings] of this.#rings) {
      const s: Record<string, T> = (out[service] = {})
      for (const [name, ring] of rings) s[name] = f(ring)
    }
    return out
  }
}

export class EventStreams {
  readonly #clients = new Set<ServerResponse>()
  readonly #max: number

  constructor(max = MAX_STREAMS) {
    this.#max = max
  }

  get size(): number {
    return this.#clients.size
  }

  /**
   * Opens a stream and sends `first` (the history and the current state) at once. Refuses with
   * 503 when MAX_STREAMS are open: a page left open in many tabs must not grow the process.
   */
  open(req: IncomingMessage, res: ServerResponse, first: string): void {
    if (this.#clients.size >= this.#max) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': String(RETRY_MS / 1000) })
      return void res.end(JSON.stringify({ error: `too many event streams open (${this.#max})` }) + '\n')
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    })
    req.socket.setNoDelay(true)
    this.#clients.add(res)
    res.once('close', () => this.#clients.delete(res))
    res.write(`retry: ${RETRY_MS}\n\n${first}`)
  }

  /** Writes one event to every client; drops those that stopped reading. */
  broadcast(event: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        this.#clients.delete(res)
        res.destroy()
        continue
      }
      res.write(event)
    }
  }

  close(): void {
    for (const res of this.#clients) res.destroy()
    this.#clients.clear()
  }
}

/** One SSE event; `data` is JSON on one line (JSON.stringify escapes newlines). */
export function sseEvent(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`
}
