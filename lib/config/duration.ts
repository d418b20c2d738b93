/** Durations as operators write them (`500ms`, `5s`, `2m`, `1h`, `1m30s`, `0`), parsed once here. */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PART = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/y

/** Returns milliseconds, or a problem string (the caller names the key and value). */
export function parseDuration(text: string): number | string {
  const trimmed = text.trim()
  if (trimmed === '0') return 0
  if (/^[0-9]+(\.[0-9]+)?$/.test(trimmed)) return 'needs a unit: ms, s, m or h (e.g. "5s")'
  let total = 0
  PART.lastIndex = 0
  let matched = 0
  while (PART.lastIndex < trimmed.length) {
    const start = PART.lastIndex
    const m = PART.exec(trimmed)
    if (!m || m.index !== start) return 'not a duration: use a number with ms, s, m or h (e.g. "500ms", "5s", "1m30s")'
    total += Number(m[1]) * UNIT_MS[m[2]!]!
    matched++
  }
  if (matched === 0) return 'not a duration: use a number with ms, s, m or h (e.g. "500ms", "5s", "1m30s")'
  if (!Number.isFinite(total) || total > 2_147_483_647) return 'too long (at most 24d)'
  return Math.round(total)
}

