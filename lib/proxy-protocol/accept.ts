import type { Socket } from 'node:net'
import type { ProxyHeaderError } from '../errors.js'
import { DEFAULT_HEADER_TIMEOUT_MS } from './constants.js'
import { ProxyHeaderParser } from './decode.js'
import { type ProxyHeader, proxyError } from './types.js'

export interface AcceptProxyOptions {
  /** Whole-header deadline, not an idle timeout: a peer trickling one byte a second still fails. */
  timeoutMs?: number
  maxV2Length?: number
}

export interface AcceptedProxy {
  header: ProxyHeader
  /**
   * Client bytes that arrived after the header in the same read. Forward them (or
   * `socket.unshift(rest)`) before anything else; later bytes stay buffered in the paused socket.
   */
  rest: Buffer
}

/**
 * Reads a PROXY header from a freshly accepted socket (the listener should use
 * `pauseOnConnect`). Resolves with the header and the bytes after it, leaving the socket paused
 * with no listeners of ours; or rejects with a ProxyHeaderError (`reason` is the label to log and
 * count) after destroying the socket, since §2.1 says to abort as soon as a header is invalid.
 *
 * On success our 'error' listener is gone too: attach yours before awaiting anything else, or a
 * reset arriving in between is an unhandled 'error' event.
 */
export function acceptProxy(socket: Socket, options: AcceptProxyOptions = {}): Promise<AcceptedProxy> {
  return new Promise((resolve, reject) => {
    new HeaderReader(socket, options, resolve, reject)
  })
}

function ignore(): void {}

/**
 * One per connection: its bound handlers are the only closures, made once, never per chunk.
 */
class HeaderReader {
  readonly #socket: Socket
  readonly #parser: ProxyHeaderParser
  readonly #resolve: (accepted: AcceptedProxy) => void
  readonly #reject: (err: ProxyHeaderError) => void
  readonly #timer: NodeJS.Timeout
  readonly #onData = (chunk: Buffer): void => this.#data(chunk)
  // 'end' (FIN) and 'close' (reset, or destroyed elsewhere) both mean no header is coming
  readonly #onGone = (): void => this.#closed()
  readonly #onError = (err: Error): void => {
    const code = (err as NodeJS.ErrnoException).code ?? err.message
    this.#fail(proxyError('socket-error', `${code} after ${this.#parser.bytesSeen} header bytes`))
  }
  #settled = false

  constructor(
    socket: Socket,
    options: AcceptProxyOptions,
    resolve: (accepted: AcceptedProxy) => void,
    reject: (err: ProxyHeaderError) => void,
  ) {
    this.#socket = socket
    this.#resolve = resolve
    this.#reject = reject
    this.#parser = new ProxyHeaderParser(
      options.maxV2Length === undefined ? {} : { maxV2Length: options.maxV2Length },
    )
    const timeoutMs = options.timeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS
    this.#timer = setTimeout(() => {
      this.#fail(
        proxyError(
          'timeout',
          `no complete header within ${timeoutMs} ms (${this.#parser.bytesSeen} bytes seen)`,
        ),
      )
    }, timeoutMs)
    this.#timer.unref()
    if (socket.destroyed || socket.readableEnded) {
      this.#closed()
      return
    }
    socket.on('data', this.#onData)
    socket.on('end', this.#onGone)
    socket.on('close', this.#onGone)
    socket.on('error', this.#onError)
    // pauseOnConnect leaves readableFlowing === false, which a 'data' listener does not undo
    socket.resume()
  }

  #data(chunk: Buffer): void {
    if (this.#settled) return
    let result
    try {
      result = this.#parser.push(chunk)
    } catch (err) {
      // only a bug throws anything but a ProxyHeaderError; the caller still gets it, and the
      // connection still closes
      this.#fail(err as ProxyHeaderError)
      return
    }
    if (result.state === 'need-more') return
    // pause inside the 'data' handler: the stream stops flowing before emitting another chunk,
    // so everything after `rest` waits in the socket's buffer for whoever takes over
    this.#socket.pause()
    this.#detach()
    this.#resolve({ header: result.header, rest: result.rest })
  }

  #closed(): void {
    const seen = this.#parser.bytesSeen
    this.#fail(
      seen === 0
        ? proxyError('closed-empty', 'connection closed before any byte')
        : proxyError('truncated', `connection closed after ${seen} bytes of a header`),
    )
  }

  #fail(err: ProxyHeaderError): void {
    if (this.#settled) return
    this.#detach()
    // a reset racing the destroy must not surface as an unhandled 'error' on a socket nobody owns
    this.#socket.on('error', ignore)
    this.#socket.destroy()
    this.#reject(err)
  }

  #detach(): void {
    this.#settled = true
    clearTimeout(this.#timer)
    const socket = this.#socket
    socket.removeListener('data', this.#onData)
    socket.removeListener('end', this.#onGone)
    socket.removeListener('close', this.#onGone)
    socket.removeListener('error', this.#onError)
  }
}
