/* The Xen seed's design (src/reclaim/xen_tasklet.cpp: Xen 4.17 iommu_queue_free_pgtable()),
 * for `spin`. Notes: docs/flush-epoch.md, "What each check covers".
 *
 * Each CPU has an unlocked list of freed tables and a tasklet whose data is that list. retire()
 * appends the frame and schedules the list's tasklet on the current CPU; the caller then flushes
 * the IOTLB of the operation's range (non-leaf, every IOMMU, waited for) before its CPU passes a
 * scheduler point. The tasklet frees the whole list, asserting it runs on the list's CPU. The
 * hotplug notifier: CPU_DOWN_PREPARE kills the tasklet; CPU_DEAD (on another CPU) splices the
 * dead list onto its own and schedules its own tasklet; CPU_DOWN_FAILED re-inits the tasklet and,
 * if the list is not empty, tasklet_schedule()s it - on the CPU running the notifier.
 *
 * Configurations (-D):
 *   (none)          plain tasklet; CPU 1 may go down, and the down always succeeds: must verify
 *   DOWN_FAIL       the down may also fail (CPU_DOWN_FAILED): the finding
 *   SOFTIRQ         the softirq-tasklet variant: it also runs at the softirq point inside the
 *                   caller's operation, between retire and the flush (xen-softirq-tasklet)
 *   FIX_DOWN_FAILED CPU_DOWN_FAILED schedules the tasklet on its own CPU (tasklet_schedule_on_cpu)
 *   NDEBUG          no ASSERT(list == &this_cpu(free_pgt_list)) (a release build)
 *   NO_RACE_ASSERT  no check that two CPUs are inside one list operation at once
 *   NO_S3_ASSERT    S3 unchecked at the free (only the walk shows an early free)
 */

#define NCPU 2
#ifndef OPS0
#define OPS0 1
#endif
#ifndef OPS1
#define OPS1 2
#endif
#define NF (OPS0 + OPS1)
#define NOPS(c) ((c) == 0 -> OPS0 : OPS1)
#define FBASE(c) ((c) == 0 -> 0 : OPS0)
#define MAXE NF                       /* one caller flush per operation */
#define REGBIT(f) (((((f) < OPS0) -> (f) : (f) - OPS0) % 2 == 0) -> 1 : 2)
#define RMASK1 (1 | (1 << OPS0))
#define RMASK2 (((OPS0 == 2) -> 2 : 0) | ((OPS1 == 2) -> (1 << (OPS0 + 1)) : 0))

#include "hw.pml"
#include "hw_units.pml"

byte started;                 /* invalidations submitted (an id for the queues) */

/* Per-CPU lists (bit f) and the tasklets whose data they are (tasklet t frees list t). */
byte lst[NCPU];
byte lbusy[NCPU];             /* CPUs inside an operation on the list (the race check) */
byte tq[NCPU];                /* tasklet t queued on CPU tq-1; 0: not queued */
byte trun[NCPU];              /* tasklet t running on CPU trun-1; 0: not running */
bit tdead[NCPU];              /* killed: schedule ignored until init */
bit dead[NCPU], park_req[NCPU], hp_done;
bit wl_done[NCPU];
#define STOPPED ((wl_done[0] || dead[0]) && (wl_done[1] || dead[1]))

/* tasklet_schedule(t) on CPU c: queued on c (moved from another CPU); if it is running, it runs
 * again on c afterwards; a dead tasklet is left alone. */
#define TASKLET_SCHEDULE(t, c) if :: !tdead[t] -> tq[t] = (c) + 1 :: else fi

/* A list operation by CPU c on list l, in two steps: read the list, then write it back. */
#ifdef NO_RACE_ASSERT
#define RACE_CHECK(l) skip
#else
#define RACE_CHECK(l) assert(lbusy[l] == 1)   /* two CPUs on one unlocked list: a data race */
#endif

/* page_list_add_tail(f, list of c) */
inline list_add(ac, af) {
  d_step { lbusy[ac]++;
           printf("CPU%d: page_list_add_tail(frame %d, list of CPU%d) reads\n", ac, af, ac);
           RACE_CHECK(ac); tmp = lst[ac] };
  d_step { lst[ac] = tmp | (1 << af);
           printf("CPU%d: page_list_add_tail writes the list back: frames %d\n", ac, lst[ac]);
           tmp = 0; lbusy[ac]-- }
}

/* free_queued_pgtables(list of owner), run by a tasklet on CPU rc. */
inline free_queued(rc, owner) {
#ifndef NDEBUG
  assert(owner == rc);   /* S4: ASSERT(list == &this_cpu(free_pgt_list)) */
#endif
  do
  :: d_step { lbusy[owner]++;                                           /* page_list_remove_head */
              printf("CPU%d: page_list_remove_head(list of CPU%d) reads\n", rc, owner);
              RACE_CHECK(owner); tmp = lst[owner] };
     if
     :: tmp == 0 -> lbusy[owner]--; break
     :: else ->
        d_step {
          j = 0;
          do :: (tmp & (1 << j)) == 0 -> j++ :: else -> break od;
          lst[owner] = tmp & ~(1 << j); lbusy[owner]--;
          printf("CPU%d: tasklet of CPU%d frees frame %d\n", rc, owner, j);
          free_frame(j); j = 0; tmp = 0 }
     fi
  od;
  tmp = 0      /* (a plain statement: a loop's exit may not jump into a d_step) */
}

/* Run one tasklet queued on CPU rc (tasklets run one at a time on a CPU). */
#define TASKLET_DUE(c) ((tq[0] == (c) + 1 && trun[0] == 0) || (tq[1] == (c) + 1 && trun[1] == 0))
inline run_tasklet(rc) {
  d_step {
    TASKLET_DUE(rc) && !dead[rc] ->
    if
    :: tq[0] == rc + 1 && trun[0] == 0 -> t = 0
    :: else -> t = 1
    fi;
    tq[t] = 0; trun[t] = rc + 1;
    printf("CPU%d runs the tasklet of CPU%d (free_queued_pgtables)\n", rc, t) };
  free_queued(rc, t);
  d_step { trun[t] = 0; t = 0 }
}

/* The caller's synchronous flush of region r: on every IOMMU, then wait. */
inline caller_flush(fc, r) {
  d_step { assert(started < MAXE); started++; e = started; ikind[e] = r;
           printf("CPU%d flushes region %d: invalidation %d\n", fc, r, e) };
  atomic { iq[0]!e, unl };
  atomic { iq[1]!e, unl };
  d_step { (idone[e] & UNITS) == UNITS -> printf("CPU%d: invalidation %d complete\n", fc, e);
           e = 0 }
}

proctype cpu(byte c) {
  byte k, f, e, t, j, tmp;
end:
  do
  /* An operation: unlink, retire (queue + schedule), [softirq point], flush. */
  :: d_step { !park_req[c] && k < NOPS(c) -> f = FBASE(c) + k; k++;
              fstate[f] = RETIRED; unl = unl | (1 << f); nretired++;
              printf("CPU%d unlinks frame %d (region %d)\n", c, f, REGBIT(f)) };
     list_add(c, f);
     d_step { TASKLET_SCHEDULE(c, c) };
#ifdef SOFTIRQ
     /* process_pending_softirqs() inside the operation: a softirq tasklet of this CPU runs */
     if :: run_tasklet(c) :: else fi;
#endif
     tmp = REGBIT(f);
     caller_flush(c, tmp);
     f = 0; tmp = 0
  /* Scheduler point: tasklets queued here run. */
  :: run_tasklet(c)
  :: park_req[c] -> d_step { dead[c] = 1; printf("CPU%d parked\n", c) }; break
  :: !wl_done[c] && k == NOPS(c) -> wl_done[c] = 1
  /* cpu_down(1), run from CPU 0 (the notifier runs here). */
  :: c == 0 && !hp_done ->
     d_step { trun[1] == 0 -> tq[1] = 0; tdead[1] = 1;      /* tasklet_kill waits while it runs */
              printf("CPU_DOWN_PREPARE(1) on CPU0: tasklet_kill\n") };
     if
     :: park_req[1] = 1;
        dead[1];
        printf("CPU_DEAD(1) on CPU0\n");
        if
        :: lst[1] != 0 ->
           d_step { lbusy[1]++; RACE_CHECK(1); lbusy[0]++; RACE_CHECK(0);
                    lst[0] = lst[0] | lst[1]; lst[1] = 0; lbusy[1]--; lbusy[0]--;
                    TASKLET_SCHEDULE(0, 0) }
        :: else
        fi
#ifdef DOWN_FAIL
     :: d_step {
          tdead[1] = 0; tq[1] = 0;                      /* tasklet_init */
          if
#ifdef FIX_DOWN_FAILED
          :: lst[1] != 0 -> TASKLET_SCHEDULE(1, 1)       /* on its own CPU */
#else
          :: lst[1] != 0 -> TASKLET_SCHEDULE(1, 0)       /* on the notifier's CPU */
#endif
          :: else
          fi;
          printf("CPU_DOWN_FAILED(1) on CPU0: list of CPU1 %d, tasklet queued on %d (CPU+1)\n",
                 lst[1], tq[1]) }
#endif
     fi;
     hp_done = 1
  od
}

init {
  atomic {
    cached[0] = ALLF; cached[1] = ALLF;   /* devices walked everything before */
    run unit(0); run unit(1);
    run cpu(0); run cpu(1)
  }
}

/* L1: once the workload stopped, every retired frame is eventually freed. */
ltl L1 { <> (STOPPED && nfreed == nretired) }
