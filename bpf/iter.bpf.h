/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * iter.bpf.h — sockets that existed before recording started. iter/task_file
 * walks every open file: socket fds seed the cookie -> owner map (the
 * owner is the fd's task, in process terms, not the iterating task).
 * iter/tcp then emits a synthetic "already open" connection record
 * (old_state 0) for every TCP socket and learns its 5-tuple for packet
 * attribution. Userspace runs task_file first, then tcp.
 */

SEC("iter/task_file")
int snoop_iter_task_file(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;

	if (!task || !file)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);

	if (!sock)
		return 0;
	struct sock *sk = sock->sk; /* BTF pointer walk, not a probe read */

	if (!sk)
		return 0;
	__u16 family = sk->__sk_common.skc_family;

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return 0;
	__u64 cookie = bpf_get_socket_cookie(sk);

	if (bpf_map_lookup_elem(&snoop_owners, &cookie))
		return 0; /* first task seen keeps it (the main thread comes first) */
	struct snoop_owner o = {};

	o.pid = task->tgid;
	o.tid = task->pid;
	o.cgroup = 0;
	bpf_probe_read_kernel_str(o.comm, sizeof(o.comm), task->comm);
	snoop_owner_put(cookie, &o, BPF_NOEXIST);
	return 0;
}

SEC("iter/tcp")
int snoop_iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (!skc)
		return 0;
	__u8 state = BPF_CORE_READ(skc, skc_state);

	/* TCP_ESTABLISHED..TCP_CLOSING except TIME_WAIT (6) and LISTEN (10)
	 * for connections; listeners are learned for packet attribution. */
	if (state == 6 || state == 12) /* time-wait, new-syn-recv */
		return 0;
	const struct sock *sk = (const struct sock *)skc;

	if (state == 10) {
		__u8 laddr[16] = {}, raddr[16] = {};
		__u16 lport = 0, rport = 0;
		__u64 cookie = bpf_get_socket_cookie((void *)sk);

		snoop_sk_addrs(skc, laddr, raddr, &lport, &rport);
		snoop_learn_flow(laddr, raddr, lport, rport, SNOOP_IPPROTO_TCP, cookie);
		return 0;
	}
	snoop_emit_conn(sk, 0, state, 1);
	return 0;
}
