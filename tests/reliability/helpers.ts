/**
 * Shared by the reliability suite (issue 12 item 6): the i-th client source address of a test,
 * and what the kernel says about an l4lb process. Process and socket helpers are tests/helpers'.
 */
import { readdir } from 'node:fs/promises'
import type { Socket } from 'node:net'

/**
 * The i-th source address in 127.<net>.0.0/16, never .0 or .255 in the last byte: each test
 * passes its own `net` so no two tests (they run in parallel) share a source address.
 */
export function source(net: number, i: number): string {
  const host = 1 + (i % 250)
  return `127.${net}.${Math.floor(i / 250)}.${host}`
}

/** Open descriptors of a process (0 once it has gone). */
export async function fdCount(pid: number): Promise<number> {
  try {
    return (await readdir(`/proc/${pid}/fd`)).length
  } catch {
    return 0
  }
}

export interface Ending {
  /** Bytes received before the end. */
  bytes: number
  /** 'end' (FIN), 'reset' (ECONNRESET), 'error:CODE', or 'close'. */
  how: string
  /** Milliseconds from the call until the end. */
  afterMs: number
}

/** Resolves when the peer ends the connection, saying how; the socket's bytes are counted, not kept. */
export function ending(socket: Socket): Promise<Ending> {
  const started = Date.now()
  return new Promise((resolve) => {
    let bytes = 0
    let done = false
    const finish = (how: string): void => {
      if (done) return
      done = true
      resolve({ bytes, how, afterMs: Date.now() - started })
    }
    socket.on('data', (c: Buffer) => (bytes += c.length))
    socket.once('end', () => finish('end'))
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNRESET' ? 'reset' : `error:${err.code ?? err.message}`))
    socket.once('close', () => finish('close'))
    socket.resume()
  })
}

/** Runs `fn` over `items` with at most `limit` at once; resolves with the results in order. */
export async function pooled<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}
