/* The hardware's processes (state and rules: hw.pml). UNIT_PROCESSED: the including model's
 * hook, run in the same atomic step as a unit's processing of a descriptor. */
#ifndef UNIT_PROCESSED
#define UNIT_PROCESSED skip
#endif
/* One IOMMU: takes descriptors from its own queue in order, and walks.
 *
 * The PSC is kept at its worst case: a device walks all the time, so every table that is still
 * linked (as memory shows it: an unlink in a store buffer is not visible) is cached on every
 * unit, and processing a covering descriptor clears only the frames already unlinked (a linked
 * one is cached again by the next walk). The policy never reads the PSC, so a smaller cache only
 * removes violations: this worst case covers every fill order without exploring them. */
proctype unit(byte u) {
  byte e, m, i;
end:
  do
  :: d_step {
       iq[u]?e, m ->
       cached[u] = cached[u] & ~(COVERED(ikind[e]) & unl);
       s3ok[u] = s3ok[u] | (COVERED(ikind[e]) & m);
       idone[e] = idone[e] | (1 << u);
       printf("unit %d processes %d (PSC now %d)\n", u, e, cached[u]);
       UNIT_PROCESSED;
       e = 0; m = 0
     }
#ifndef NO_S1_WALK
  /* A walk through a cached pointer reads the frame: S1 if it was freed. */
  :: atomic {
       (cached[u] & freed) != 0 ->
       printf("S1: unit %d walked into a freed table\n", u);
walk_freed:
       assert(false)
     }
#endif
  od
}

/* A CPU's store buffer drains on its own, eventually (TSO). */
proctype storebuf(byte c) {
end:
  do
  :: d_step { sb[c] != 0 -> DRAIN(c) }
  od
}
