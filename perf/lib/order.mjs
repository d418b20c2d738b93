/**
 * Target order for repetition r: reversed every other repetition (ABBA, which cancels a linear
 * drift in machine load between a pair) and rotated every two, so each target also leads in turn.
 */
export function orderFor(list, r) {
  const k = Math.floor(r / 2) % list.length;
  const rotated = [...list.slice(k), ...list.slice(0, k)];
  return r % 2 ? rotated.reverse() : rotated;
}
