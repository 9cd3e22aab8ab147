/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * conn.bpf.h — TCP connection lifecycle. inet_sock_set_state fires in
 * whatever context changes the state (often softirq), so the owner comes
 * from the cookie -> owner map, never from the current task (the tcplife
 * rule). At TCP_CLOSE the tcp_sock's bytes_acked / bytes_received are
 * recorded so the analyzer can cross-check message totals, with the
 * connection's outcome: sk_err (why the kernel gave up, if it did),
 * retransmitted segments, smoothed and minimum RTT, segments out and in.
 */

static __always_inline void snoop_emit_conn(const struct sock *sk, __u8 old_state,
					    __u8 new_state, int learn_flow)
{
	__u8 laddr[16] = {}, raddr[16] = {};
	__u16 lport = 0, rport = 0;
	__u16 family = snoop_sk_addrs(&sk->__sk_common, laddr, raddr, &lport, &rport);

	if (family != SNOOP_AF_INET && family != SNOOP_AF_INET6)
		return;
	/* At TCP_CLOSE the port was already released (inet_put_port zeroes
	 * skc_num before the state is stored); inet_sport keeps it. */
	if (!lport)
		lport = bpf_ntohs(bpf_core_cast(sk, struct inet_sock)->inet_sport);
	__u64 cookie = snoop_sk_cookie((struct sock *)sk);

	if (learn_flow && snoop_flow_kept(new_state == SNOOP_TCP_LISTEN))
		snoop_learn_flow(laddr, raddr, lport, rport, SNOOP_IPPROTO_TCP, cookie);

	struct snoop_owner *o = bpf_map_lookup_elem(&snoop_owners, &cookie);

	/* A passively opened connection has no owner until accept() and the
	 * first read; until then it belongs to its listener's owner (learned in
	 * process context at listen()). */
	if (!o && learn_flow && new_state == SNOOP_TCP_ESTABLISHED) {
		__u64 *lc = snoop_lookup_bound(laddr, lport, SNOOP_IPPROTO_TCP);
		struct snoop_owner *lo = lc ? bpf_map_lookup_elem(&snoop_owners, lc) : NULL;

		if (lo) {
			struct snoop_owner copy = *lo;

			copy.lport = 0; /* forces re-learning at the first message */
			snoop_owner_put(cookie, &copy, BPF_NOEXIST);
			o = bpf_map_lookup_elem(&snoop_owners, &cookie);
		}
	}

	/* Filters only after learning: attribution must not depend on them. */
	if (!snoop_proto_ok(SNOOP_IPPROTO_TCP) || !snoop_port_ok(lport, rport) ||
	    !snoop_family_ok(family, raddr))
		return;

	if (!snoop_owner_wanted(o))
		return;

	struct snoop_conn *c = snoop_reserve(sizeof(*c), SNOOP_KIND_CONN);

	if (!c)
		return;
	c->kind = SNOOP_KIND_CONN;
	c->family = family;
	c->old_state = old_state;
	c->new_state = new_state;
	c->_pad1 = 0;
	c->ts_ns = bpf_ktime_get_boot_ns();
	c->cookie = cookie;
	c->bytes_acked = 0;
	c->bytes_received = 0;
	c->retrans_segs = 0;
	c->sk_err = 0;
	c->srtt_us = 0;
	c->min_rtt_us = 0;
	c->segs_out = 0;
	c->segs_in = 0;
	if (new_state == SNOOP_TCP_CLOSE || old_state == 0) {
		/* One read of what the kernel already counts per socket: the
		 * connection's outcome costs nothing per packet. sk_err is set
		 * before the state becomes CLOSE when the kernel gives up on the
		 * connection (tcp_done_with_error: ECONNREFUSED for a RST to a
		 * SYN, ECONNRESET / EPIPE for a RST later, ETIMEDOUT, ...). */
		const struct tcp_sock *tp = bpf_core_cast(sk, struct tcp_sock);
		__u32 min_rtt = tp->rtt_min.s[0].v;

		c->bytes_acked = tp->bytes_acked;
		c->bytes_received = tp->bytes_received;
		c->retrans_segs = tp->total_retrans;
		c->srtt_us = tp->srtt_us >> 3;
		c->min_rtt_us = min_rtt == ~0U ? 0 : min_rtt;
		c->segs_out = tp->segs_out;
		c->segs_in = tp->segs_in;
		/* iter/tcp hands a sock_common: the cast makes the load a
		 * BTF-checked read of the full sock. */
		c->sk_err = (__u16)bpf_core_cast(sk, struct sock)->sk_err;
	}
	__builtin_memcpy(c->laddr, laddr, 16);
	__builtin_memcpy(c->raddr, raddr, 16);
	c->lport = lport;
	c->rport = rport;
	if (o) {
		c->pid = o->pid;
		c->tid = o->tid;
		__builtin_memcpy(c->comm, o->comm, sizeof(c->comm));
	} else {
		c->pid = 0;
		c->tid = 0;
		__builtin_memset(c->comm, 0, sizeof(c->comm));
	}
	snoop_submit(c);
}

/* The socket reached TCP_CLOSE: no more messages, state changes or packets
 * of its own follow, so its owner and flow entries leave the maps (a flow
 * entry exists only if snoop_flow_kept). */
static __always_inline void snoop_forget_tcp(const struct sock *sk, int old_state)
{
	__u64 cookie = snoop_sk_cookie((struct sock *)sk);
	struct snoop_flow_key k = {};

	bpf_map_delete_elem(&snoop_owners, &cookie);
	if (!snoop_flow_kept(old_state == SNOOP_TCP_LISTEN))
		return;
	snoop_sk_addrs(&sk->__sk_common, k.laddr, k.raddr, &k.lport, &k.rport);
	if (!k.lport)
		k.lport = bpf_ntohs(bpf_core_cast(sk, struct inet_sock)->inet_sport);
	k.proto = SNOOP_IPPROTO_TCP;
	/* Only if the tuple still maps to this socket. */
	__u64 *v = bpf_map_lookup_elem(&snoop_flows, &k);

	if (v && *v == cookie)
		bpf_map_delete_elem(&snoop_flows, &k);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(snoop_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != SNOOP_IPPROTO_TCP)
		return 0;
	/* LISTEN runs in the listen() caller; ESTABLISHED is the first state
	 * with the full 5-tuple (SYN_SENT precedes the source port choice). */
	snoop_emit_conn(sk, oldstate, newstate,
			newstate == SNOOP_TCP_ESTABLISHED || newstate == SNOOP_TCP_LISTEN);
	if (newstate == SNOOP_TCP_CLOSE)
		snoop_forget_tcp(sk, oldstate);
	return 0;
}
