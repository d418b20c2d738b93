/** Backend hostnames are resolved here, at load — never per connection (DESIGN: hot path stays lean). */
import { lookup } from 'node:dns/promises'
import type { BackendConfig } from '../config/index.js'
import { ResolveError } from '../errors.js'

export async function resolveBackends(backends: readonly BackendConfig[]): Promise<string[]> {
  return Promise.all(
    backends.map(async (b) => {
      if (b.family !== 0) return b.host
      try {
        const { address } = await lookup(b.host)
        return address
      } catch (err) {
        throw new ResolveError(b.host, (err as NodeJS.ErrnoException).code ?? String(err), err)
      }
    }),
  )
}
