/**
 * Time as the prober sees it, injectable so scheduler tests can run on a fake clock instead of
 * sleeping. Check sockets always use real time; only the scheduling and timeouts go through here.
 */
export type TimerHandle = unknown

export interface Clock {
  /** Milliseconds on the Unix epoch scale; must never go backwards. */
  now(): number
  /** The timer must not keep the process alive (the real clock unrefs it). */
  setTimeout(fn: () => void, delayMs: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
}

/**
 * Epoch-scaled but monotonic (timeOrigin + performance.now()), so a wall-clock step from NTP
 * can neither fire a burst of checks nor stretch the flap-damping window.
 */
export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout(fn, delayMs) {
    const timer = setTimeout(fn, Math.max(0, delayMs))
    timer.unref()
    return timer
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}
