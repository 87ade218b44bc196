/**
 * containerd's tricolor mark (`gc/gc.go` Tricolor), over an abstract graph: nodes are opaque values (strings, or numbers for an interned graph), `refs`
 * names the nodes one node references. Depth first (a grey stack), each node expanded once. `normalize`
 * maps a node to the identity it is marked under (containerd strips its "flat" type bits there), so a node
 * reached both flat and not is one marked node, expanded once per variant.
 *
 * The caller must keep the graph from changing between reading it and sweeping what this leaves unmarked.
 */
export function tricolor<N>(
  roots: Iterable<N>,
  refs: (node: N) => Iterable<N>,
  normalize: (node: N) => N = (n) => n,
): Set<N> {
  const grey: N[] = [...roots];
  const seen = new Set<N>();
  const black = new Set<N>();
  while (grey.length > 0) {
    const node = grey.pop() as N;
    if (seen.has(node)) continue;
    seen.add(node);
    for (const target of refs(node)) if (!seen.has(target)) grey.push(target);
    black.add(normalize(node));
  }
  return black;
}
