/**
 * The data planes a TCP test runs on (DESIGN "Two data planes"): every TCP e2e and interop test
 * loops over PLANES; the native one is skipped, with the reason, where the addon is not built.
 */
import { loadAddon } from '../../lib/native/index.js'

export type Plane = 'node' | 'native'
export const PLANES: readonly Plane[] = ['node', 'native']

/** tap's `skip` option: false to run, or why the plane cannot run here. */
export function planeSkip(plane: Plane): string | false {
  if (plane === 'node') return false
  const loaded = loadAddon()
  return 'addon' in loaded ? false : loaded.reason
}

/**
 * Flags that put a service on `plane`. One engine thread: with two or more the native plane
 * binds SO_REUSEPORT listeners, and loopback test clients binding port 0 from 127.0.0.1 could
 * then be handed the listener's own port (tests that need threads pass --threads themselves).
 */
export function planeArgs(plane: Plane): string[] {
  return plane === 'native' ? ['--data-plane', 'native', '--threads', '1'] : ['--data-plane', 'node']
}
