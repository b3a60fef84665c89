/* The hardware both reclamation models run on: page-table frames, the CPUs' store buffers for
 * the unlink, and IOMMUs with a paging-structure cache (PSC) and an in-order invalidation queue.
 * Included by flush_epoch.pml and xen_tasklet.pml after they define NCPU, NF, MAXE and the
 * masks RMASK1/RMASK2 (frames whose tables map IOVA region 1 / 2); the processes that act for
 * the hardware are in hw_units.pml, included after the model's UNIT_PROCESSED hook.
 *
 * What is a violation here is decided by the hardware, not by the policy's bookkeeping:
 *   S1   a device walk goes through a PSC entry to a frame that was freed (walk_freed below);
 *   S2   a frame freed twice, or freed while still linked;
 *   S3   a frame freed before some covering (non-leaf, its region or whole-domain) invalidation
 *        that was submitted to a unit after the frame's unlink was visible has been processed
 *        by *every* unit (ghost s3ok, computed from the queues, never from epochs).
 */

#define NUNIT 2
#define UNITS 3           /* bit u: unit u; the domain is attached to both */
#define FULLBIT 4         /* ikind: a domain-wide non-leaf invalidation */
#define ALLF ((1 << NF) - 1)

#define LINKED 0
#define RETIRED 1         /* unlinked (visible to walks) and handed to the reclaimer */
#define FREED 2

byte fstate[NF];
byte cached[NUNIT];       /* bit f: the unit's PSC holds a pointer to frame f (a walk may use it) */
byte s3ok[NUNIT];         /* ghost, bit f: see S3 above */
byte unl;                 /* ghost: frames whose unlink is visible (drained) */
byte nfreed;              /* frames freed */
byte freed;               /* bit f: frame f freed */
byte nretired;            /* frames retired */
byte sb[NCPU];            /* a CPU's store buffer: frame+1 whose unlink is not yet visible, or 0 */
/* NO_SB: unlinks are visible at once (sequential consistency; a quicker check). */

/* Invalidations, numbered 1..MAXE (per domain; one domain). */
byte ikind[MAXE + 1];     /* region bits 1|2, or FULLBIT */
byte idone[MAXE + 1];     /* bit u: processed by unit u */
bit isub[MAXE + 1];       /* submitted to every unit (the pending record's `submitted`) */
chan iq[NUNIT] = [MAXE] of { byte, byte };  /* epoch, ghost: unl when it was submitted */

/* Frames a descriptor of kind k drops from the PSC. */
#define COVERED(k) (((k) & FULLBIT) -> ALLF : \
                    ((((k) & 1) -> RMASK1 : 0) | (((k) & 2) -> RMASK2 : 0)))

/* The unlink becomes visible to walks: the store buffer drains (a fence, a locked RMW, a
 * stop_machine park, or the hardware's own time). */
#define DRAIN(c) if :: sb[c] != 0 -> fstate[sb[c] - 1] = RETIRED; unl = unl | (1 << (sb[c] - 1)); \
                               printf("frame %d: unlink visible\n", sb[c] - 1); sb[c] = 0 \
                    :: else -> skip fi

/* Frees frame f (any reclaimer): S2 and S3 are checked here, S1 by the next walk. */
inline free_frame(f) {
#ifndef NO_S2_ASSERT
  assert(fstate[f] == RETIRED);                                     /* S2 */
#endif
#ifndef NO_S3_ASSERT
  assert((s3ok[0] & (1 << f)) != 0 && (s3ok[1] & (1 << f)) != 0);   /* S3 */
#endif
  fstate[f] = FREED;
  freed = freed | (1 << f);
  nfreed++
}

/* One IOMMU: takes descriptors from its own queue in order, fills its PSC from linked tables,
 * and walks through whatever it cached. */
