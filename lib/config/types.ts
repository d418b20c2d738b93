/**
 * The typed config, derived from the settings table (settings.ts): a row's field and value type
 * appear here without being written twice. Only shapes that are not rows are spelled out.
 */
import type { BackendAddress } from './backend.js'
import type { ADMIN, BACKEND, HEALTH, LOG, SERVICE, TOP } from './settings.js'
import type { FlagAttrs, Values } from './table.js'

export type { Protocol } from './settings.js'
export type { CheckType } from '../health/options.js'

type ServiceValues = Values<typeof SERVICE>

export type BackendConfig = BackendAddress & Values<typeof BACKEND>
export type HealthConfig = Values<typeof HEALTH>
export type LogConfig = Values<typeof LOG>

export type ServiceConfig = Omit<ServiceValues, 'name' | 'balance'> & {
  readonly name: string
  /** A name `algorithmNames` accepts (an algorithm or an alias). */
  readonly balance: string
}

export type AdminConfig = Omit<Values<typeof ADMIN>, 'listen'> & {
  /** `host:port` or a unix socket path (contains "/"). */
  readonly listen: string
}

export interface Config extends Omit<Values<typeof TOP>, 'admin'> {
  readonly services: readonly ServiceConfig[]
  /** Undefined = no admin endpoint (the default). */
  readonly admin: AdminConfig | undefined
  /** Deprecated spellings found (one line each), for the start-up log and `l4lb check`. */
  readonly warnings?: readonly string[]
}

/** What the CLI's commander options produce: one attribute per flag of the table. */
export type FlagValues = {
  readonly [A in FlagAttrs<typeof SERVICE> | FlagAttrs<typeof HEALTH> | FlagAttrs<typeof LOG> | FlagAttrs<typeof ADMIN> | FlagAttrs<typeof TOP>]?: string | readonly string[] | boolean
} & { readonly config?: string }
