/**
 * containerd's tricolor mark (`gc/gc.go` Tricolor), over an abstract graph: nodes are opaque values (strings, or numbers for an interned graph), `refs`
 * names the nodes one node references. Depth first (a grey stack), each node expanded once. `normalize`
 * maps a node to the identity it is marked under (containerd strips its "flat" type bits there), so a node
 * reached both flat and not is one marked node, expanded once per variant.
 *
 * The caller must keep the graph from changing between reading it and sweeping what this leaves unmarked.
 * Given the state of an earlier mark (`from`, updated in place), it continues it: the graph may have gained
 * nodes and edges since, and `roots` are then the new roots and the targets of new edges from nodes already
 * seen; nothing marked before is expanded again.
 */
export function tricolor<N>(
  roots: Iterable<N>,
  refs: (node: N) => Iterable<N>,
  normalize: (node: N) => N = (n) => n,
  from: TricolorState<N> = { seen: new Set<N>(), black: new Set<N>() },
): Set<N> {
  const grey: N[] = [...roots];
  const { seen, black } = from;
  while (grey.length > 0) {
    const node = grey.pop() as N;
    if (seen.has(node)) continue;
    seen.add(node);
    for (const target of refs(node)) if (!seen.has(target)) grey.push(target);
    black.add(normalize(node));
  }
  return black;
}

/** A mark in progress: the nodes expanded, and the identities marked. */
export interface TricolorState<N> {
  readonly seen: Set<N>;
  readonly black: Set<N>;
}
