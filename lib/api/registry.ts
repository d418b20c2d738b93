/**
 * Extensions an embedding program brings: balancing algorithms and health checks under names
 * its config then uses (`balance: first-up`, `health: {type: redis-ping}`). A Registry is an
 * ordinary object handed to `start()` — nothing is registered process-wide (STYLE: no registries
 * filled at run time in module state), so two balancers in one process can differ, and a
 * reload keeps the registry its `start()` was given.
 */
import { algorithms as builtInAlgorithms, resolveAlgorithm, type Algorithm } from '../balance/index.js'
import { CHECK_TYPES } from '../health/options.js'
import type { HealthCheck } from '../health/custom.js'

const NAME = /^[a-z][a-z0-9-]{0,31}$/

export class Registry {
  readonly #algorithms = new Map<string, Algorithm>()
  readonly #checks = new Map<string, HealthCheck>()

  /** Adds a balancing algorithm; `name` must not be a built-in one (see `algorithms`). */
  addAlgorithm(name: string, algorithm: Algorithm): this {
    if (!NAME.test(name)) throw new TypeError(`algorithm name ${JSON.stringify(name)}: use 1-32 lowercase letters, digits and "-"`)
    if (resolveAlgorithm(name) || this.#algorithms.has(name)) throw new TypeError(`algorithm name ${JSON.stringify(name)}: already registered`)
    if (typeof algorithm?.createPicker !== 'function') throw new TypeError(`algorithm ${name}: needs createPicker(entries, active)`)
    this.#algorithms.set(name, algorithm)
    return this
  }

  /** Adds a health check type; `name` must not be a built-in one (tcp, send-expect, http, udp, none). */
  addCheck(name: string, check: HealthCheck): this {
    if (!NAME.test(name)) throw new TypeError(`check name ${JSON.stringify(name)}: use 1-32 lowercase letters, digits and "-"`)
    if ((CHECK_TYPES as readonly string[]).includes(name) || this.#checks.has(name)) throw new TypeError(`check name ${JSON.stringify(name)}: already registered`)
    if (typeof check?.run !== 'function') throw new TypeError(`check ${name}: needs run(target, context)`)
    this.#checks.set(name, check)
    return this
  }

  /** The algorithm a service's `balance` names: built-ins (and their aliases) first. */
  algorithm(name: string): Algorithm | undefined {
    return resolveAlgorithm(name) ?? this.#algorithms.get(name)
  }

  /** A registered custom check (built-in types are not in here). */
  check(name: string): HealthCheck | undefined {
    return this.#checks.get(name)
  }

  get algorithmNames(): string[] {
    return [...Object.keys(builtInAlgorithms), ...this.#algorithms.keys()]
  }

  get checkNames(): string[] {
    return [...this.#checks.keys()]
  }
}

export function createRegistry(): Registry {
  return new Registry()
}
