/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * iter.bpf.h — sockets that existed before recording started (the
 * "existing_sockets" hook group).
 *
 * iter/task_file sees every open file with its task, so it knows the owner
 * of each socket fd; but its socket's `sk` is reached by a pointer walk
 * (`sock->sk`) that stricter verifiers mark untrusted, and no helper may
 * take an untrusted pointer (bpf_get_socket_cookie refuses it). So
 * task_file reads only plain data — the file's inode number, as `ss -p`
 * matches sockets to processes — and parks inode -> owner in
 * snoop_iter_owners. iter/tcp and iter/udp are handed the socket itself as
 * a trusted pointer: they read the same inode number through the socket,
 * take the cookie from the helper and move the owner into snoop_owners.
 * iter/tcp also emits a synthetic "already open" connection record
 * (old_state 0) for every TCP connection when the TCP state group runs,
 * and learns 5-tuples for packet attribution. Userspace runs task_file
 * first, then tcp and udp, then empties snoop_iter_owners.
 */

/* socket inode number -> owner, filled by iter/task_file. Not preallocated:
 * it holds only as many entries as the host has sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144); /* resized with the owner map */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct snoop_owner);
} snoop_iter_owners SEC(".maps");

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
	/* Plain reads (probe reads), never a helper on `sock->sk`: no trust
	 * in the walked pointer is needed on any kernel. */
	__u16 family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return 0;
	__u64 ino = BPF_CORE_READ(file, f_inode, i_ino);

	if (!ino || bpf_map_lookup_elem(&snoop_iter_owners, &ino))
		return 0; /* first task seen keeps it (the main thread comes first) */
	struct snoop_owner o = {};

	o.pid = task->tgid;
	o.tid = task->pid;
	o.cgroup = snoop_task_cgroup(task);
	bpf_probe_read_kernel_str(o.comm, sizeof(o.comm), task->comm);
	bpf_map_update_elem(&snoop_iter_owners, &ino, &o, BPF_NOEXIST);
	return 0;
}

/* The owner task_file parked for this socket, moved to snoop_owners under
 * its cookie. A socket no task holds (e.g. accepted but not yet taken by
 * accept()) has no entry and stays unowned until its first message. */
static __always_inline void snoop_iter_adopt(const struct sock *sk, __u64 cookie)
{
	__u64 ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	struct snoop_owner *o = ino ? bpf_map_lookup_elem(&snoop_iter_owners, &ino) : NULL;

	if (o)
		snoop_owner_put(cookie, o, BPF_NOEXIST);
}

SEC("iter/tcp")
int snoop_iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;

	if (!skc)
		return 0;
	__u8 state = skc->skc_state;

	/* TIME_WAIT and NEW_SYN_RECV entries are not full sockets. */
	if (state == 6 || state == 12)
		return 0;
	__u16 family = skc->skc_family;

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return 0;
	const struct sock *sk = (const struct sock *)skc;
	__u64 cookie = bpf_get_socket_cookie((void *)skc);

	snoop_iter_adopt(sk, cookie);
	if (state == SNOOP_TCP_LISTEN) {
		__u8 laddr[16] = {}, raddr[16] = {};
		__u16 lport = 0, rport = 0;

		snoop_sk_addrs(skc, laddr, raddr, &lport, &rport);
		snoop_learn_flow(laddr, raddr, lport, rport, SNOOP_IPPROTO_TCP, cookie);
		return 0;
	}
	if (snoop_tcp_flows_learned) {
		snoop_emit_conn(sk, 0, state, 1);
	} else if (snoop_flow_kept(0)) {
		/* No TCP state group: learn the tuple for packets here. */
		__u8 laddr[16] = {}, raddr[16] = {};
		__u16 lport = 0, rport = 0;

		snoop_sk_addrs(skc, laddr, raddr, &lport, &rport);
		snoop_learn_flow(laddr, raddr, lport, rport, SNOOP_IPPROTO_TCP, cookie);
	}
	return 0;
}

SEC("iter/udp")
int snoop_iter_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;

	if (!udp)
		return 0;
	const struct sock *sk = (const struct sock *)udp;
	__u16 family = sk->__sk_common.skc_family;

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return 0;
	__u64 cookie = bpf_get_socket_cookie((void *)udp);

	snoop_iter_adopt(sk, cookie);
	if (snoop_flow_kept(0)) {
		__u8 laddr[16] = {}, raddr[16] = {};
		__u16 lport = 0, rport = 0;

		snoop_sk_addrs(&sk->__sk_common, laddr, raddr, &lport, &rport);
		snoop_learn_flow(laddr, raddr, lport, rport, SNOOP_IPPROTO_UDP, cookie);
	}
	return 0;
}
