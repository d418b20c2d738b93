/**
 * Gives memory back after many connections closed (issue 12: RSS back within 20% of the warm
 * baseline a minute after 9,000 idle connections close).
 *
 * Two things keep a closed crowd's memory resident. V8 grows its young generation to 16 MiB
 * semispaces under load and shrinks it only in a memory-reducing collection, which it starts by
 * itself only when its heuristics see the process idle (on a busy box: not within minutes); a
 * plain full collection frees the old generation but keeps the young one. And glibc never
 * trims the heap below the 128 MiB trim_threshold bin/l4lb sets for bulk speed, so the closed
 * sockets' native handles stay resident. So when the open count has fallen by at least
 * RECLAIM_MIN_CLOSED and to at most half its peak, and has stopped falling, the process asks
 * for both: V8's memory-reducing collection through an in-process inspector session
 * (`HeapProfiler.collectGarbage`: the same collection as a low-memory notification; no port
 * is opened; the gc extension's `flavor: 'last-resort'` does this on Node 24 but not on 20),
 * then malloc_trim through the native addon where it is built. It pauses the main thread (125–189
 * ms after 1,200 connections in tests/reliability/memory.test.ts; each run logs its pauseMs),
 * hence at most once per RECLAIM_SPACING_MS.
 */
import inspector from 'node:inspector'
import type { Logger } from 'pino'
import { nativeAddon } from '../native/index.js'

export const RECLAIM_MIN_CLOSED = 1000
export const RECLAIM_SAMPLE_MS = 1000
export const RECLAIM_SPACING_MS = 60_000

/**
 * When to reclaim, from samples of the open count; no clock or I/O, so a test can drive it.
 * `sample` returns true when a reclaim should run now.
 */
export class ReclaimTrigger {
  #peak = 0
  #previous = 0
  #lastAtMs = -Infinity
  readonly #minClosed: number
  readonly #spacingMs: number

  constructor(minClosed = RECLAIM_MIN_CLOSED, spacingMs = RECLAIM_SPACING_MS) {
    this.#minClosed = minClosed
    this.#spacingMs = spacingMs
  }

  sample(open: number, nowMs: number): boolean {
    if (open > this.#peak) this.#peak = open
    const settled = open >= this.#previous
    this.#previous = open
    const closed = this.#peak - open
    if (closed < this.#minClosed || open > this.#peak / 2 || !settled || nowMs - this.#lastAtMs < this.#spacingMs) return false
    this.#peak = open
    this.#lastAtMs = nowMs
    return true
  }
}

/** V8's memory-reducing collection; false where this Node has no inspector. */
async function collectAllGarbage(): Promise<boolean> {
  let session: inspector.Session
  try {
    session = new inspector.Session()
    session.connect()
  } catch {
    return false
  }
  try {
    await new Promise<void>((resolve, reject) => session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())))
    return true
  } catch {
    return false
  } finally {
    session.disconnect()
  }
}

const mb = (bytes: number): number => Math.round(bytes / 104857.6) / 10

/**
 * Samples `openCount` every RECLAIM_SAMPLE_MS (unref'd) until stop(). A crowd that came and went
 * between two samples is not seen; one that stayed a second or more is.
 */
export class MemoryReclaim {
  readonly #timer: NodeJS.Timeout
  readonly #trigger = new ReclaimTrigger()
  #running = false

  constructor(openCount: () => number, logger: Logger) {
    this.#timer = setInterval(() => {
      const open = openCount()
      if (this.#running || !this.#trigger.sample(open, performance.now())) return
      this.#running = true
      void reclaim().then((r) => {
        this.#running = false
        logger.info({ open, ...r }, 'memory reclaimed after connections closed')
      })
    }, RECLAIM_SAMPLE_MS)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
  }
}

export interface Reclaimed {
  rssBeforeMb: number
  rssAfterMb: number
  pauseMs: number
  v8: boolean
  malloc: boolean
}

export async function reclaim(): Promise<Reclaimed> {
  const rssBefore = process.memoryUsage.rss()
  const started = performance.now()
  const v8 = await collectAllGarbage()
  const malloc = nativeAddon()?.trimMemory() ?? false
  return { rssBeforeMb: mb(rssBefore), rssAfterMb: mb(process.memoryUsage.rss()), pauseMs: Math.round(performance.now() - started), v8, malloc }
}
