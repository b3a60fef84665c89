/* flush-epoch's protocol (src/reclaim/flush_epoch.cpp, src/iommu/system.cpp), for `spin`.
 * Design note and what this model abstracts: docs/flush-epoch.md, "What each check covers".
 *
 * 2 CPUs, 2 IOMMUs, one domain attached to both, two IOVA regions. CPU 0 runs OPS0 operations,
 * CPU 1 OPS1; each unlinks a frame of its own (region REGBIT) and retires it, and its caller then
 * flushes the region (with the regions it owes), defers (a batched caller), or never flushes.
 * CPU 0 may take CPU 1 down (HOTPLUG): CPU_DOWN_PREPARE, then CPU_DEAD or CPU_DOWN_FAILED.
 *
 * Mutants (-D on the spin command line), each must give a trail:
 *   STAMP_BEFORE_UNLINK  a retire closes its batch with a stamp read before its unlink
 *   STAMP_AT_OPEN        the stamp is read when the batch opens, not when it closes
 *   NO_FENCE             the stamp's load does not wait for the unlink store (no full fence)
 *   ONE_UNIT             completion (update_epochs) looks at the first IOMMU only
 *   COVER_NO_RANGE       a caller's flush covers every older batch, whatever its range
 *   ADOPT_OPEN           CPU_DEAD adopts the dead CPU's open batch without closing it
 *   FULL_GE              completed_full >= stamp (not >) frees a batch with a non-zero stamp
 *   TIMER_NO_POLL        the timer reaps without polling the hardware (L1)
 *   WAIT_NO_SEEN         (with SPACING) flush_all's wait does not advance the _seen counters, so
 *                        a reap whose poll another CPU's recent poll suppressed finds nothing
 * Options:
 *   SPACING              poll_spacing_ns > 0: a reap that polls may skip its hardware poll when
 *                        another CPU polled within the spacing (claim_poll). Time is abstracted:
 *                        each poll by another CPU lets a CPU skip one of its own polls, and the
 *                        _seen counters that poll advanced are what the reap then reads.
 */

#define NCPU 2
#ifndef OPS0
#define OPS0 2                /* operations (frames) of CPU 0 */
#endif
#ifndef OPS1
#define OPS1 1                /* operations (frames) of CPU 1 */
#endif
#define NF (OPS0 + OPS1)
#define NOPS(c) ((c) == 0 -> OPS0 : OPS1)
#define FBASE(c) ((c) == 0 -> 0 : OPS0)
#ifndef MAXE
#define MAXE 6                /* invalidations numbered; reaching it is an assertion failure */
#endif
#define RING 2                /* batches_per_cpu */
#ifndef BATCH_FRAMES
#define BATCH_FRAMES 2
#endif
#define BUDGET 2              /* frames a CPU may hold: max_pending 4 over 2 CPUs */
#define WATERMARK 1           /* min(watermark, BUDGET / 2) */
#ifndef HOTPLUG
#define HOTPLUG 0             /* 0: none, 1: CPU 1 goes down (dead or down-failed, either) */
#endif
#ifndef CALLER
#define CALLER 3              /* bit 1: callers may defer (batched), bit 2: may skip the flush */
#endif

/* A CPU's k-th frame maps region 1 if k is even, region 2 if odd. */
#define REGBIT(f) (((((f) < OPS0) -> (f) : (f) - OPS0) % 2 == 0) -> 1 : 2)
#define RMASK1 (1 | (1 << OPS0))
#define RMASK2 (((OPS0 == 2) -> 2 : 0) | ((OPS1 == 2) -> (1 << (OPS0 + 1)) : 0))

#include "hw.pml"


/* The domain's flush epochs (iommu::domain). */
byte started;                 /* flush_started */
byte cseen, cfseen;           /* flush_completed / _full as last advanced by a poll */
byte hw_c, hw_cf;             /* what a poll would compute now (derived, kept current) */
byte hint;                    /* full_requested_[d]: newest full flush a CPU asked for */

/* update_epochs(): an invalidation is done when it was submitted to every unit and every unit
 * processed it; completed = in-order prefix, completed_full = newest done full one. */
#ifdef ONE_UNIT
#define DONE(e) (isub[e] && (idone[e] & 1) != 0)
#else
#define DONE(e) (isub[e] && (idone[e] & UNITS) == UNITS)
#endif
inline hw_recompute() {
  i = hw_c + 1;
  do :: i <= started && DONE(i) -> hw_c = i; i++ :: else -> break od;
  i = hw_cf + 1;
  do :: i <= started -> if :: DONE(i) && (ikind[i] & FULLBIT) -> hw_cf = i :: else fi; i++
     :: else -> break od;
  i = 0
}
#define UNIT_PROCESSED hw_recompute()

#include "hw_units.pml"

#define POLL cseen = hw_c; cfseen = hw_cf; \
             printf("poll: completed %d, completed_full %d\n", hw_c, hw_cf)

/* poll_spacing_ns (claim_poll): pfresh[c] = another CPU's reap polled since CPU c last skipped
 * a poll on the strength of one. A reap's claim is one step before its polls. */
#ifdef SPACING
bit pfresh[NCPU];
bit spaced[NCPU];             /* CPU c's current reap skips its polls */
#define RPOLL(c) if :: !spaced[c] -> POLL; pfresh[1 - (c)] = 1 :: else fi
#define CLAIM_POLL(c) if :: pfresh[c] -> d_step { pfresh[c] = 0; spaced[c] = 1 } :: true fi
#define CLAIM_DONE(c) spaced[c] = 0
#else
#define RPOLL(c) POLL
#define CLAIM_POLL(c) skip
#define CLAIM_DONE(c) skip
#endif

/* Per-CPU rings of batches; slot 0 is the oldest (pop shifts: fewer distinct states). */
byte rn[NCPU];                /* batches in the ring */
byte bfr[NCPU * RING];        /* frames of the batch (bit f) */
byte brg[NCPU * RING];        /* the batch's IOVA range, as region bits */
byte bst[NCPU * RING];        /* stamp */
byte bcov[NCPU * RING];       /* cover: a caller's covering epoch, 0 if none */
bit qopen[NCPU];              /* the newest batch is open (unstamped) */
byte qframes[NCPU];           /* frames in the ring */
#define B(c, i) ((c) * RING + (i))
#define BACK(c) B(c, rn[c] - 1)

/* Timers: the executor's state and the policy's own flags. */
#define T_IDLE 0
#define T_PENDING 1
#define T_KILLED 2             /* set_timer ignored until the next init */
byte tmr[NCPU];
bit tready[NCPU], tarmed[NCPU];
bit in_timer[NCPU];
bit tfired[NCPU];              /* fired since the CPU's last operation (see on_timer) */

bit wl_done[NCPU];             /* the CPU finished its operations and owes no flush */
bit dead[NCPU];
bit park_req[NCPU];
bit hp_done;                   /* cpu_down(1) happened */
#define STOPPED ((wl_done[0] || dead[0]) && (wl_done[1] || dead[1]))

#define SET_TIMER(c) if :: tmr[c] != T_KILLED -> tmr[c] = T_PENDING :: else fi

/* Witnesses (-DW_...): each asserts that something the checks rely on never happens, so a
 * trail proves the model does reach it (the properties are not vacuously true):
 *   W_FULL_AHEAD   a batch freed on completed_full while in-order completed is behind it
 *   W_RIDE         a batch freed on a caller's cover
 *   W_TIMER_FREE   the timer frees a batch          W_BACKPRESSURE  flush_all runs
 *   W_ADOPT_OPEN   CPU_DEAD finds the dead CPU's newest batch open
 *   W_FAILED_FREE  after CPU_DOWN_FAILED, CPU 1's re-armed timer frees a batch
 *   W_KEEP_OPEN    over the watermark, a retire keeps its batch open: a flush is in flight
 *   W_SPACED_FREE  (SPACING) a reap that skipped its poll frees a batch */
#define WITNESS(cond) assert(!(cond))
bit hp_failed;

/* A batch may be freed: cover completed, or a full flush numbered after its stamp completed. */
#ifdef FULL_GE
#define FULL_OK(s) (cfseen > (s) || ((s) != 0 && cfseen >= (s)))
#else
#define FULL_OK(s) (cfseen > (s))
#endif
#define ELIGIBLE(c) (rn[c] > 0 && !(qopen[c] && rn[c] == 1) && \
                     ((bcov[B(c, 0)] != 0 && cseen >= bcov[B(c, 0)]) || FULL_OK(bst[B(c, 0)])))

/* The bodies below have no atomic of their own: callers put them in one d_step with the
 * CPU-local bookkeeping around them, which no other process reads, so fewer interleavings
 * are explored without losing an ordering of shared accesses that matters (the counters only
 * grow; see "What the models abstract away" in docs/flush-epoch.md). */

/* Drops the oldest batch of ring pc (the others move up; emptied slots are zeroed). */
inline pop_front(pc) {
  j = 0;
  do :: j + 1 < rn[pc] ->
        bfr[B(pc, j)] = bfr[B(pc, j + 1)]; brg[B(pc, j)] = brg[B(pc, j + 1)];
        bst[B(pc, j)] = bst[B(pc, j + 1)]; bcov[B(pc, j)] = bcov[B(pc, j + 1)]; j++
     :: else -> break od;
  bfr[B(pc, j)] = 0; brg[B(pc, j)] = 0; bst[B(pc, j)] = 0; bcov[B(pc, j)] = 0;
  rn[pc]--; j = 0
}

inline free_head(hc) {
  j = 0;
#ifdef W_FULL_AHEAD
  WITNESS(cseen < cfseen && !(bcov[B(hc, 0)] != 0 && cseen >= bcov[B(hc, 0)]));
#endif
#ifdef W_RIDE
  WITNESS(bcov[B(hc, 0)] != 0 && cseen >= bcov[B(hc, 0)]);
#endif
#ifdef W_TIMER_FREE
  WITNESS(in_timer[hc]);
#endif
#ifdef W_FAILED_FREE
  WITNESS(hp_failed && in_timer[1] && hc == 1);
#endif
  do :: j < NF -> if :: (bfr[B(hc, 0)] & (1 << j)) != 0 -> free_frame(j); qframes[hc]--;
                        printf("CPU%d frees frame %d (batch stamp %d cover %d)\n", c, j,
                               bst[B(hc, 0)], bcov[B(hc, 0)])
                     :: else fi; j++
     :: else -> break od;
  pop_front(hc)
}
/* reap(): frees every eligible batch from the head of ring rc (never the open one). Frees
 * are one step: the counters only grow, so a later look only frees more. */
inline reap_body(rc, rpoll) {
  do
  :: if :: rpoll -> RPOLL(rc) :: else fi;
     if :: ELIGIBLE(rc) ->
#ifdef W_SPACED_FREE
           WITNESS(rpoll && spaced[rc]);
#endif
           free_head(rc)
     :: else -> break fi
  od
}

/* close(): stamps the open batch of ring cc; cme runs it. The stamp is a full fence (drains
 * cme's store buffer) and a load of started. */
#ifdef NO_FENCE
#define FENCE(me) skip
#else
#define FENCE(me) DRAIN(me)
#endif
inline close_body(cc, cme) {
  if :: qopen[cc] -> FENCE(cme); bst[BACK(cc)] = started; qopen[cc] = 0;
        printf("CPU%d closes a batch of CPU%d: stamp %d\n", cme, cc, started)
     :: else fi
}
inline close(cc2, cme2) { d_step { close_body(cc2, cme2) } }

/* system::invalidate(): numbered under the domain lock by a locked RMW (a full fence too),
 * then submitted to each unit; marked submitted with the last. Another CPU may run between. */
inline invalidate(ime, ikd, ie) {
  d_step { assert(started < MAXE); DRAIN(ime); started++; ie = started; ikind[ie] = ikd;
           printf("CPU%d numbers invalidation %d (kind %d)\n", ime, ie, ikd) };
  atomic { iq[0]!ie, unl; printf("CPU%d submits %d to unit 0\n", ime, ie) };
  atomic { iq[1]!ie, unl; printf("CPU%d submits %d to unit 1\n", ime, ie);
           isub[ie] = 1; hw_recompute() }
}

/* request_flush(): one full flush in flight per domain, not waited for. REQUEST_CHECK(st) goes
 * in the caller's step; request_rest() submits if it found none to ride on. */
#define REQUEST_CHECK(st) ok = (hint > (st) || cfseen < hint)
inline request_rest(qme) {
  if
  :: !ok ->
     invalidate(qme, FULLBIT, e);
     d_step { if :: cfseen < e && hint < e -> hint = e :: else fi; e = 0 }
  :: else -> ok = 0
  fi
}

/* flush_all(): back-pressure and adopt overflow: invalidate the whole domain, wait, free all. */
inline flush_all(fc, fme) {
  if
  :: rn[fc] > 0 ->
#ifdef W_BACKPRESSURE
     WITNESS(true);
#endif
     close(fc, fme);
     invalidate(fme, FULLBIT, e);
#ifdef SPACING
     /* wait(): spins on completed(), which advances the _seen counters; then reap(poll). */
#ifdef WAIT_NO_SEEN
     hw_c >= e;
#else
     d_step { hw_c >= e -> POLL };
#endif
     CLAIM_POLL(fme);
     d_step { reap_body(fc, 1); CLAIM_DONE(fme); assert(rn[fc] == 0); e = 0 }   /* PTR_ASSERT */
#else
     d_step { hw_c >= e -> reap_body(fc, 1); assert(rn[fc] == 0); e = 0 }   /* PTR_ASSERT */
#endif
  :: else
  fi
}

#define CAN_MERGE(c) (qopen[c] && nbf < BATCH_FRAMES)
inline count_back(kc) {   /* nbf = frames in the newest batch */
  nbf = 0; j = 0;
  do :: rn[kc] > 0 && j < NF -> if :: (bfr[BACK(kc)] & (1 << j)) != 0 -> nbf++ :: else fi; j++
     :: else -> break od;
  j = 0
}

#ifdef STAMP_BEFORE_UNLINK
/* The mutant: the retire's closes use the counter as read before the unlink. */
inline close_in_retire(xc) {
  if :: qopen[xc] -> bst[BACK(xc)] = early; qopen[xc] = 0;
        printf("CPU%d closes its batch with stamp %d (read before the unlink)\n", xc, early)
     :: else fi
}
#elif defined(STAMP_AT_OPEN)
inline close_in_retire(xc) { qopen[xc] = 0 }
#else
inline close_in_retire(xc) { close_body(xc, xc) }
#endif

#define ARM_IF_IDLE(c) if :: tready[c] && !tarmed[c] -> SET_TIMER(c); tarmed[c] = 1 :: else fi

/* retire(d, gather of frame f) on CPU c, after the unlink (buffered) in the same step. */
inline retire_start(tc, tf) {
  DRAIN(tc);                                /* a one-entry store buffer */
  sb[tc] = tf + 1; printf("CPU%d unlinks frame %d (region %d)\n", tc, tf, REGBIT(tf));
#ifdef NO_SB
  DRAIN(tc);
#endif
  reap_body(tc, 0);
  count_back(tc);
  ok = ((rn[tc] == RING && !CAN_MERGE(tc)) || qframes[tc] + 1 > BUDGET);  /* ring or share full */
  nbf = 0
}
inline retire_rest(tc, tf) {
  if :: ok -> flush_all(tc, tc) :: else fi;
  d_step {
    nretired++; count_back(tc);
    if
    :: CAN_MERGE(tc) ->
       bfr[BACK(tc)] = bfr[BACK(tc)] | (1 << tf); brg[BACK(tc)] = brg[BACK(tc)] | REGBIT(tf)
    :: else ->
       close_body(tc, tc);
       rn[tc]++; bfr[BACK(tc)] = 1 << tf; brg[BACK(tc)] = REGBIT(tf);
       bst[BACK(tc)] = 0; bcov[BACK(tc)] = 0;
#ifdef STAMP_AT_OPEN
       FENCE(tc); bst[BACK(tc)] = started;
#endif
       qopen[tc] = 1
    fi;
    qframes[tc]++; assert(qframes[0] + qframes[1] <= NCPU * BUDGET);     /* S5 */
    count_back(tc);
    if :: nbf >= BATCH_FRAMES -> close_in_retire(tc) :: else fi;
    ok = (qframes[tc] > WATERMARK || 2 * rn[tc] > RING); nbf = 0 };
  /* Over the watermark: ask early, unless a full flush of the domain is in flight (one request
   * per domain); then the batch stays open until BATCH_FRAMES and the timer polls. */
  if
  :: d_step { ok && !(cfseen < hint) -> close_in_retire(tc); REQUEST_CHECK(bst[BACK(tc)]) };
     request_rest(tc);
     d_step { reap_body(tc, 0); if :: rn[tc] > 0 -> ARM_IF_IDLE(tc) :: else fi }
  :: d_step { ok && cfseen < hint ->
#ifdef W_KEEP_OPEN
              WITNESS(qopen[tc]);
#endif
              ok = 0; ARM_IF_IDLE(tc) }                     /* poll_soon */
  :: d_step { !ok -> ARM_IF_IDLE(tc) }
  fi
}

/* The caller's flush of `range` (invalidate_after_retire): close, invalidate, wait, note. */
inline caller_flush(lc, lrange) {
  close(lc, lc);                                   /* before_caller_invalidation */
  invalidate(lc, lrange, e);
  d_step {
    hw_c >= e -> POLL;                             /* wait_epoch */
    j = 0;                                         /* note_caller_invalidation */
    do
    :: j < rn[lc] ->
       if
       :: (qopen[lc] && j + 1 == rn[lc]) || bcov[B(lc, j)] != 0 || e <= bst[B(lc, j)] -> skip
#ifdef COVER_NO_RANGE
       :: else -> bcov[B(lc, j)] = e; printf("CPU%d: batch %d covered by %d\n", lc, j, e)
#else
       :: else -> if :: (brg[B(lc, j)] & ~(lrange)) == 0 -> bcov[B(lc, j)] = e;
                           printf("CPU%d: batch %d covered by %d\n", lc, j, e) :: else fi
#endif
       fi; j++
    :: else -> break
    od;
    j = 0; e = 0;
    reap_body(lc, 0) }
}

/* The CPU's timer, in softirq context on its own CPU. While the CPU still has operations to
 * run, it fires at most once between two of them (time passes between expiries); once the
 * CPU is idle, its batches age and every firing finds the oldest old enough. */
#ifdef TIMER_NO_POLL
#define TIMER_POLLS 0
#else
#define TIMER_POLLS 1
#endif
#define TIMER_DUE(c) (tmr[c] == T_PENDING && (wl_done[c] || !tfired[c]))
inline on_timer(oc) {
#ifdef SPACING
  d_step { TIMER_DUE(oc) && !dead[oc] ->
           tmr[oc] = T_IDLE; in_timer[oc] = 1; tarmed[oc] = 0; tfired[oc] = 1;
           printf("CPU%d timer\n", oc) };
  CLAIM_POLL(oc);
  d_step { reap_body(oc, TIMER_POLLS); CLAIM_DONE(oc) };
#else
  d_step { TIMER_DUE(oc) && !dead[oc] ->
           tmr[oc] = T_IDLE; in_timer[oc] = 1; tarmed[oc] = 0; tfired[oc] = 1;
           printf("CPU%d timer\n", oc);
           reap_body(oc, TIMER_POLLS) };
#endif
  if
  :: d_step { rn[oc] == 0 -> in_timer[oc] = 0 }
  :: rn[oc] > 0 ->
     if
     :: d_step { close_body(oc, oc); REQUEST_CHECK(bst[B(oc, 0)]) };   /* the oldest is old */
        request_rest(oc)
     :: !wl_done[oc]                                                    /* not yet */
     fi;
     d_step { SET_TIMER(oc); tarmed[oc] = 1; in_timer[oc] = 0 }
  fi
}

/* CPU_DEAD on CPU `to`: adopt `from`'s ring, then arm to's timer. */
inline adopt(ato, afrom) {
#ifdef W_ADOPT_OPEN
  WITNESS(qopen[afrom]);
#endif
#ifndef ADOPT_OPEN
  close(afrom, ato);
#endif
  close(ato, ato);
  do
  :: rn[afrom] > 0 ->
     if :: rn[ato] == RING -> flush_all(ato, ato) :: else fi;
     d_step {
       rn[ato]++;
       bfr[BACK(ato)] = bfr[B(afrom, 0)]; brg[BACK(ato)] = brg[B(afrom, 0)];
       bst[BACK(ato)] = bst[B(afrom, 0)]; bcov[BACK(ato)] = bcov[B(afrom, 0)];
       count_back(ato);
       qframes[ato] = qframes[ato] + nbf; qframes[afrom] = qframes[afrom] - nbf; nbf = 0;
       pop_front(afrom) }
  :: else -> break
  od;
  nbf = 0;      /* (a plain statement: a loop's exit may not jump into a d_step) */
  d_step { assert(qframes[afrom] == 0); qopen[afrom] = 0; ok = (qframes[ato] > BUDGET) };
  if :: ok -> flush_all(ato, ato) :: else fi;
  d_step { ok = 0; if :: tready[ato] && rn[ato] > 0 -> SET_TIMER(ato); tarmed[ato] = 1 :: else fi }
}

proctype cpu(byte c) {
  byte k, f, owed, e, i, j, nbf, early;
  bit ok;
end:
  do
  /* The next operation: unlink, retire, then the caller's flush (maybe deferred or skipped). */
  :: d_step { !park_req[c] && k < NOPS(c) -> f = FBASE(c) + k; k++; tfired[c] = 0;
#ifdef STAMP_BEFORE_UNLINK
                DRAIN(c); early = started };
     d_step {
#endif
                retire_start(c, f) };
     retire_rest(c, f);
     if
     :: (CALLER & 1) && k < NOPS(c) -> owed = owed | REGBIT(f)           /* batched: later */
     :: (CALLER & 2) && owed == 0                                    /* this caller never flushes */
     :: owed = owed | REGBIT(f); caller_flush(c, owed); owed = 0
     fi;
     f = 0
  :: owed != 0 -> caller_flush(c, owed); owed = 0
  /* Softirq point: the CPU's timer. */
  :: on_timer(c)
  /* Scheduler point (nothing owed): park for cpu_down; or idle. */
  :: park_req[c] && owed == 0 -> d_step { DRAIN(c); dead[c] = 1 }; break
  :: !wl_done[c] && k == NOPS(c) && owed == 0 -> wl_done[c] = 1
#if HOTPLUG
  /* cpu_down(1) run from CPU 0. */
  :: c == 0 && owed == 0 && !hp_done ->
     /* CPU_DOWN_PREPARE: kill_timer (waits while the timer runs) */
     d_step { !in_timer[1] -> tmr[1] = T_KILLED; printf("CPU_DOWN_PREPARE(1) on CPU0\n") };
     if
     :: park_req[1] = 1;                /* CPU 1 runs on until it parks (stop_machine) ... */
        dead[1];
        printf("CPU_DEAD(1) on CPU0\n");
        adopt(0, 1)                     /* ... then CPU_DEAD */
     /* CPU_DOWN_FAILED: timer_init and fire now, on CPU 1 */
     :: d_step { if :: tready[1] -> tmr[1] = T_PENDING :: else fi;
                 hp_failed = 1;
                 printf("CPU_DOWN_FAILED(1) on CPU0\n") }
     fi;
     hp_done = 1
#endif
  od;
dead_end:
  skip
}

init {
  atomic {
    cached[0] = ALLF; cached[1] = ALLF;   /* devices walked everything before */
    tready[0] = 1; tready[1] = 1;         /* CPU_UP_PREPARE, replayed when the policy registers */
    run unit(0); run unit(1);
#ifndef NO_SB
    run storebuf(0); run storebuf(1);
#endif
    run cpu(0); run cpu(1)
  }
}

/* L1: once the workload stopped, every retired frame is eventually freed. */
ltl L1 { <> (STOPPED && nfreed == nretired) }
