/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * proc.bpf.h — process lifecycle (exec, fork, exit) and the dynamic
 * tracking behind --comm and --follow: an exec whose new comm matches joins
 * the tracked set, a fork of a tracked process adds the child (--follow),
 * and an exiting process leaves it. Only whole processes are reported (new
 * thread groups on fork, group death on exit), not threads. At start,
 * iter/task reports the processes already running, with their start time.
 */

static __always_inline int snoop_task_wanted(struct task_struct *t)
{
	if (snoop_cfg.cgroup && bpf_get_current_cgroup_id() != snoop_cfg.cgroup)
		return 0;
	return !snoop_tracking() || snoop_is_tracked(t->tgid);
}

static __always_inline struct snoop_proc *snoop_proc_begin(struct task_struct *t, __u8 pkind)
{
	struct snoop_proc *p = snoop_reserve(sizeof(*p), SNOOP_KIND_PROC);

	if (!p)
		return NULL;
	p->kind = SNOOP_KIND_PROC;
	p->pkind = pkind;
	p->_pad0 = 0;
	p->_pad1 = 0;
	p->pid = t->tgid;
	p->tid = t->pid;
	p->ppid = BPF_CORE_READ(t, real_parent, tgid);
	p->exit_code = 0;
	p->ts_ns = bpf_ktime_get_boot_ns();
	bpf_probe_read_kernel_str(p->comm, sizeof(p->comm), t->comm);
	p->filename[0] = 0;
	return p;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(snoop_exec, struct task_struct *t, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = t->tgid;

	if (snoop_cfg.filter_comm && !snoop_is_tracked(tgid)) {
		char comm[SNOOP_COMM_LEN] = {};

		bpf_probe_read_kernel_str(comm, sizeof(comm), t->comm);
		if (bpf_map_lookup_elem(&snoop_comms, comm))
			snoop_track(tgid);
	}
	if (!snoop_task_wanted(t))
		return 0;
	struct snoop_proc *p = snoop_proc_begin(t, SNOOP_PROC_EXEC);

	if (!p)
		return 0;
	bpf_probe_read_kernel_str(p->filename, sizeof(p->filename), BPF_CORE_READ(bprm, filename));
	snoop_submit(p);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(snoop_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->pid != child->tgid)
		return 0; /* a new thread, not a new process */
	if (snoop_cfg.follow && snoop_is_tracked(parent->tgid))
		snoop_track(child->tgid);
	if (!snoop_task_wanted(child))
		return 0;
	struct snoop_proc *p = snoop_proc_begin(child, SNOOP_PROC_FORK);

	if (!p)
		return 0;
	p->ppid = parent->tgid;
	snoop_submit(p);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(snoop_exit, struct task_struct *t, bool group_dead)
{
	if (!group_dead)
		return 0;
	__u32 tgid = t->tgid;
	int wanted = snoop_task_wanted(t);

	if (snoop_tracking())
		bpf_map_delete_elem(&snoop_tracked, &tgid);
	if (!wanted)
		return 0;
	struct snoop_proc *p = snoop_proc_begin(t, SNOOP_PROC_EXIT);

	if (!p)
		return 0;
	p->exit_code = BPF_CORE_READ(t, signal, group_exit_code) ?: t->exit_code;
	snoop_submit(p);
	return 0;
}

/* Processes that were already running when recording began (the
 * "existing_processes" group; userspace runs it once at start, after the
 * process hooks are attached): one SNOOP_PROC_RUNNING record per thread
 * group leader the filters want, with the kernel's start time of the
 * process, so "how long after its start" works for long-running services
 * too. Nothing runs per message or per packet for it. The records go into
 * the ring of the CPU that runs the walk before the reader drains it: a
 * host with more user processes than that ring holds loses the rest,
 * counted as dropped process records. */
SEC("iter/task")
int snoop_iter_task(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!t || t->pid != t->tgid)
		return 0; /* end of the walk, or a thread */
	/* Kernel threads make no sends or receives of their own (and on a
	 * large host they are hundreds of records in one CPU's ring). */
	if (t->flags & 0x00200000 /* PF_KTHREAD */)
		return 0;
	__u32 tgid = t->tgid;

	if (snoop_cfg.cgroup && snoop_task_cgroup(t) != snoop_cfg.cgroup)
		return 0;
	if (snoop_tracking() && !snoop_is_tracked(tgid)) {
		char comm[SNOOP_COMM_LEN] = {};

		if (!snoop_cfg.filter_comm)
			return 0;
		bpf_probe_read_kernel_str(comm, sizeof(comm), t->comm);
		if (!bpf_map_lookup_elem(&snoop_comms, comm))
			return 0;
		snoop_track(tgid);
	}
	struct snoop_proc *p = snoop_proc_begin(t, SNOOP_PROC_RUNNING);

	if (!p)
		return 0;
	p->ts_ns = t->start_boottime;
	snoop_submit(p);
	return 0;
}
