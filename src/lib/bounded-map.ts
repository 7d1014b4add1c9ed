/**
 * Sets `key` in `map`, first dropping its oldest entry when it already holds `maxEntries`
 * (a Map iterates in insertion order): the eviction of the in-process caches.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, maxEntries: number): void {
  if (!map.has(key) && map.size >= maxEntries) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}
