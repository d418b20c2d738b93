import { type AddressInfo, type Server, type Socket, createServer } from 'node:net'
import { ListenError, ProxyHeaderError } from '../errors.js'
import { acceptProxy } from './accept.js'
import { INSPECT_BYTES, formatHeader } from './format.js'

export interface InspectorOptions {
  host: string
  /** 0 picks a free port; read it back from `address()`. */
  port: number
  /** Where reports go (process.stdout for the CLI). */
  out: { write(text: string): unknown }
  /** Header deadline per connection (default 5000). */
  timeoutMs?: number
  maxV2Length?: number
  /** How long to wait for bytes after the header before printing what came (default 1000). */
  waitMs?: number
}

export interface Inspector {
  address(): AddressInfo
  /** Stops listening and closes every connection still being inspected. */
  close(): Promise<void>
}

/**
 * `l4lb proxy-inspect`: listens, and for each connection prints the PROXY header (or why it was
 * refused) and the first 64 bytes after it, then closes the connection. It is how an operator
 * checks what an upstream proxy or load balancer really sends.
 */
export function startInspector(options: InspectorOptions): Promise<Inspector> {
  const { out } = options
  const waitMs = options.waitMs ?? 1000
  const open = new Set<Socket>()
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
    const peer = `${socket.remoteAddress}:${socket.remotePort}`
    const acceptOptions = {
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      ...(options.maxV2Length === undefined ? {} : { maxV2Length: options.maxV2Length }),
    }
    acceptProxy(socket, acceptOptions).then(
      ({ header, rest }) =>
        firstBytes(socket, rest, waitMs).then((first) => {
          out.write(`connection from ${peer}\n${formatHeader(header, first)}`)
          socket.destroy()
        }),
      (err: unknown) => {
        const reason = err instanceof ProxyHeaderError ? `${err.code} ${err.message}` : String(err)
        out.write(`connection from ${peer}\n  refused: ${reason}\n`)
      },
    )
  })
  return new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(new ListenError(`${options.host}:${options.port}`, err.message, err)),
    )
    server.listen(options.port, options.host, () => {
      resolve({
        address: () => server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            for (const socket of open) socket.destroy()
            server.close(() => done())
          }),
      })
    })
  })
}

/** Up to INSPECT_BYTES after the header: what came with it, plus what arrives within waitMs. */
function firstBytes(socket: Socket, rest: Buffer, waitMs: number): Promise<Buffer> {
  if (rest.length >= INSPECT_BYTES || socket.destroyed)
    return Promise.resolve(rest.subarray(0, INSPECT_BYTES))
  return new Promise((resolve) => {
    const chunks: Buffer[] = [rest]
    let length = rest.length
    const finish = (): void => {
      clearTimeout(timer)
      socket.removeListener('data', onData)
      socket.removeListener('end', finish)
      socket.removeListener('close', finish)
      socket.removeListener('error', finish)
      resolve(Buffer.concat(chunks, length).subarray(0, INSPECT_BYTES))
    }
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk)
      length += chunk.length
      if (length >= INSPECT_BYTES) finish()
    }
    const timer = setTimeout(finish, waitMs)
    socket.on('data', onData)
    socket.once('end', finish)
    socket.once('close', finish)
    socket.once('error', finish)
    socket.resume()
  })
}
