/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * msg.bpf.h — application-level messages: every successful send and
 * receive on a TCP or UDP socket, in the calling thread's context (so
 * pid/tid/comm are exact), plus the socket-owner learning that lets the
 * other concerns attribute packets and connections by cookie.
 *
 * Unconnected UDP: the socket has no peer, so the cgroup sendmsg/recvmsg
 * hooks (which see the user's sockaddr) park the peer per thread in
 * snoop_peers and the message hook picks it up. A recvfrom() without an
 * address buffer never runs the recvmsg hook: the peer is then recorded as
 * zero (the application does not know it either).
 */

/* This CPU's staged messages (snoop.h, SNOOP_MSG_BATCH). The message
 * programs run in process context with preemption off, so neither nests
 * in the other on one CPU; the flush program can interrupt one, and then
 * leaves a batch marked busy alone. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct snoop_msgs);
} snoop_msg_stage SEC(".maps");

/* Write the staged batch to this CPU's ring (counted as its messages). */
static __always_inline void snoop_msgs_out(struct snoop_msgs *b)
{
	__u32 n = b->n;
	void *ring = snoop_ring();
	/* Masked and capped so the verifier sees the size within the value. */
	__u64 size = 16 + (__u64)(n & (2 * SNOOP_MSG_BATCH - 1)) * sizeof(struct snoop_msg);

	if (size > sizeof(*b))
		size = sizeof(*b);
	b->kind = SNOOP_KIND_MSGS;
	snoop_count_n(SNOOP_KIND_MSG, n,
		      !ring || bpf_ringbuf_output(ring, b, size, snoop_wake_flags()) != 0);
	b->n = 0;
}

static __always_inline void snoop_learn_owner(__u64 cookie, __u64 pid_tgid,
					      const __u8 laddr[16], const __u8 raddr[16],
					      __u16 lport, __u16 rport, __u8 proto)
{
	struct snoop_owner *cur = bpf_map_lookup_elem(&snoop_owners, &cookie);
	__u32 tgid = pid_tgid >> 32;

	if (cur && cur->pid == tgid && cur->lport == lport && cur->rport == rport)
		return;
	struct snoop_owner o = {};

	snoop_fill_owner_cur(&o, pid_tgid);
	o.lport = lport;
	o.rport = rport;
	snoop_owner_put(cookie, &o, BPF_ANY);
	/* A TCP socket with an owner entry already had its 5-tuple learned by
	 * the state hook (the flow maps the tuple to the cookie, which a new
	 * owner does not change): skip the second update of a short
	 * connection's life. Without an entry (never seen, or the map was full)
	 * learn. */
	if (proto == SNOOP_IPPROTO_TCP && cur && snoop_tcp_flows_learned)
		return;
	/* Bound UDP entries and connected tuples serve packets only. */
	if (!snoop_flow_kept(0))
		return;
	snoop_learn_flow(laddr, raddr, lport, rport, proto, cookie);
}

static __always_inline int snoop_handle_msg(struct sock *sk, int ret, int flags, __u8 dir)
{
	if (ret <= 0 || (dir == SNOOP_DIR_RX && (flags & SNOOP_MSG_PEEK)))
		return 0;
	__u16 family = sk->__sk_common.skc_family;

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return 0;
	__u8 proto = sk->sk_protocol;

	if (proto != SNOOP_IPPROTO_TCP && proto != SNOOP_IPPROTO_UDP)
		return 0;
	if (!snoop_proto_ok(proto))
		return 0;

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u64 cookie = snoop_sk_cookie(sk);
	__u8 laddr[16] = {}, raddr[16] = {};
	__u16 lport = 0, rport = 0;

	snoop_sk_addrs(&sk->__sk_common, laddr, raddr, &lport, &rport);

	/* Only an unconnected socket needs the parked peer (a connected one
	 * names its peer); entries left parked are overwritten by the
	 * thread's next send/recv with an address, or aged out of the LRU. */
	if (proto == SNOOP_IPPROTO_UDP && rport == 0) {
		__u32 tid = (__u32)pid_tgid;
		struct snoop_peer *p = bpf_map_lookup_elem(&snoop_peers, &tid);

		if (p) {
			if (p->cookie == cookie) {
				__builtin_memcpy(raddr, p->addr, 16);
				rport = p->port;
			}
			bpf_map_delete_elem(&snoop_peers, &tid);
		}
	}

	/* Owner learning happens for every socket, filtered or not, so packet
	 * attribution does not depend on the filters. */
	snoop_learn_owner(cookie, pid_tgid, laddr, raddr, lport, rport, proto);

	if (!snoop_port_ok(lport, rport) || !snoop_family_ok(family, raddr))
		return 0;
	if (!snoop_current_wanted(tgid))
		return 0;

	struct snoop_msgs *b = NULL;
	struct snoop_msg *m;
	__u32 zero = 0;

	if (snoop_cfg.msg_batch)
		b = bpf_map_lookup_elem(&snoop_msg_stage, &zero);
	if (b) {
		/* The flush program runs on this CPU from an interrupt: it must
		 * not take the batch while this program writes to it. */
		*(volatile __u8 *)&b->busy = 1;
		asm volatile("" ::: "memory");
		if (b->n >= SNOOP_MSG_BATCH)
			snoop_msgs_out(b); /* not reached: a full batch goes out at once */
		m = &b->m[b->n & (SNOOP_MSG_BATCH - 1)];
	} else {
		m = snoop_reserve(sizeof(*m), SNOOP_KIND_MSG);
		if (!m)
			return 0;
	}
	m->kind = SNOOP_KIND_MSG;
	m->dir = dir;
	m->family = family;
	m->proto = proto;
	m->pid = tgid;
	m->tid = (__u32)pid_tgid;
	m->bytes = ret;
	m->ts_ns = bpf_ktime_get_boot_ns();
	m->cookie = cookie;
	struct task_struct *task = bpf_get_current_task_btf();

	m->cgroup = snoop_task_cgroup(task);
	__builtin_memcpy(m->laddr, laddr, 16);
	__builtin_memcpy(m->raddr, raddr, 16);
	m->lport = lport;
	m->rport = rport;
	m->_pad0 = 0;
	snoop_task_comm(m->comm, task);
	if (!b) {
		snoop_submit(m);
		return 0;
	}
	if (b->n == 0)
		b->first_ns = m->ts_ns;
	b->n++;
	if (b->n >= SNOOP_MSG_BATCH || m->ts_ns - b->first_ns > SNOOP_MSG_BATCH_NS)
		snoop_msgs_out(b);
	asm volatile("" ::: "memory");
	*(volatile __u8 *)&b->busy = 0;
	return 0;
}

/* Send this CPU's staged messages to the ring. Never attached: userspace
 * runs it on each CPU (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU) a few
 * times a second. It runs in an interrupt, so it can land in the middle
 * of a message program on the same CPU: then it leaves the batch alone
 * (the next flush or message takes it). */
SEC("raw_tp")
int snoop_msg_flush(void *ctx)
{
	__u32 zero = 0;
	struct snoop_msgs *b = bpf_map_lookup_elem(&snoop_msg_stage, &zero);

	if (b && !*(volatile __u8 *)&b->busy && b->n)
		snoop_msgs_out(b);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(snoop_send_length, struct sock *sk, int ret, int flags)
{
	return snoop_handle_msg(sk, ret, flags, SNOOP_DIR_TX);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(snoop_recv_length, struct sock *sk, int ret, int flags)
{
	return snoop_handle_msg(sk, ret, flags, SNOOP_DIR_RX);
}

/* Park the user's sockaddr of an unconnected UDP send/recv for this thread. */
static __always_inline void snoop_park_peer(struct bpf_sock_addr *ctx, int v6)
{
	struct snoop_peer p = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	p.cookie = bpf_get_socket_cookie(ctx);
	if (v6) {
		__u32 *w = (__u32 *)p.addr;

		w[0] = ctx->user_ip6[0];
		w[1] = ctx->user_ip6[1];
		w[2] = ctx->user_ip6[2];
		w[3] = ctx->user_ip6[3];
		p.family = SNOOP_AF_INET6;
	} else {
		snoop_map_v4(p.addr, ctx->user_ip4);
		p.family = SNOOP_AF_INET;
	}
	p.port = bpf_ntohs((__u16)ctx->user_port);
	bpf_map_update_elem(&snoop_peers, &tid, &p, BPF_ANY);
}

SEC("cgroup/sendmsg4")
int snoop_sendmsg4(struct bpf_sock_addr *ctx)
{
	snoop_park_peer(ctx, 0);
	return 1;
}

SEC("cgroup/sendmsg6")
int snoop_sendmsg6(struct bpf_sock_addr *ctx)
{
	snoop_park_peer(ctx, 1);
	return 1;
}

SEC("cgroup/recvmsg4")
int snoop_recvmsg4(struct bpf_sock_addr *ctx)
{
	snoop_park_peer(ctx, 0);
	return 1;
}

SEC("cgroup/recvmsg6")
int snoop_recvmsg6(struct bpf_sock_addr *ctx)
{
	snoop_park_peer(ctx, 1);
	return 1;
}

/* Learn the owner of every socket at creation (process context). Accepted
 * sockets do not pass here; they are learned at their first send/recv. */
SEC("cgroup/sock_create")
int snoop_sock_create(struct bpf_sock *ctx)
{
	if (ctx->family != SNOOP_AF_INET && ctx->family != SNOOP_AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct snoop_owner o = {};

	snoop_fill_owner_cur(&o, bpf_get_current_pid_tgid());
	snoop_owner_put(cookie, &o, BPF_ANY);
	return 1;
}

/* A UDP (or other non-TCP) socket is gone: forget its owner so the owner
 * map holds live sockets only. A TCP socket is forgotten at TCP_CLOSE
 * instead (conn.bpf.h): release runs before tcp_close(), and the state
 * changes of the close still need their owner. One already in TCP_CLOSE
 * (never connected, or reset) changes state no more, so it goes here. */
SEC("cgroup/sock_release")
int snoop_sock_release(struct bpf_sock *ctx)
{
	if (ctx->protocol == SNOOP_IPPROTO_TCP && ctx->state != SNOOP_TCP_CLOSE)
		return 1;
	if (ctx->family != SNOOP_AF_INET && ctx->family != SNOOP_AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&snoop_owners, &cookie);
	return 1;
}

/* A UDP socket was bound (bind(), in the binding process): learn its bound
 * tuple now, so a server's first datagram — which arrives before the
 * server's first receive, where the tuple was learned before — is
 * attributed to it. TCP listeners are learned at LISTEN (conn.bpf.h). */
static __always_inline int snoop_post_bind(struct bpf_sock *ctx, int v6)
{
	if (ctx->protocol != SNOOP_IPPROTO_UDP || !snoop_flow_kept(0))
		return 1;
	__u8 laddr[16] = {}, raddr[16] = {};

	if (v6) {
		__u32 *w = (__u32 *)laddr;

		w[0] = ctx->src_ip6[0];
		w[1] = ctx->src_ip6[1];
		w[2] = ctx->src_ip6[2];
		w[3] = ctx->src_ip6[3];
	} else {
		snoop_map_v4(laddr, ctx->src_ip4);
	}
	/* src_port is in host byte order in struct bpf_sock. */
	snoop_learn_flow(laddr, raddr, (__u16)ctx->src_port, 0, SNOOP_IPPROTO_UDP,
			 bpf_get_socket_cookie(ctx));
	return 1;
}

SEC("cgroup/post_bind4")
int snoop_post_bind4(struct bpf_sock *ctx)
{
	return snoop_post_bind(ctx, 0);
}

SEC("cgroup/post_bind6")
int snoop_post_bind6(struct bpf_sock *ctx)
{
	return snoop_post_bind(ctx, 1);
}
