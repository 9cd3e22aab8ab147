/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pkt.bpf.h — packets on the wire (the net_snoop seed): device transmit
 * (net_dev_queue) and receive (netif_receive_skb). Both can run in softirq,
 * so the current task is NEVER used: a transmitted packet names its socket
 * (skb->sk -> cookie -> owner map); a received packet is matched to a socket
 * by its 5-tuple through snoop_flows, learned in process context. Packets
 * nobody owns are kept with pid 0 (the analyzer counts them unattributed).
 * With --packets=runs a known socket's packets are folded into packet sets
 * (one record for a socket's packets in one direction, as runs of up to
 * SNOOP_SET_LENS lengths, see snoop_set_join); packets of no known socket
 * stay one record each.
 */

/* Parsed L3/L4 facts of one packet, as source/destination. */
struct snoop_l34 {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
};

/* Parse an IPv4/IPv6 header at kernel address l3 (+ TCP/UDP ports).
 * Returns 0 when the packet is not IP. Fragments keep ports 0. The headers
 * are read with direct loads through bpf_core_cast (read-only, faulting
 * loads the JIT guards), not bpf_probe_read_kernel: helper calls were
 * most of the cost per packet. Bytes past a short packet are read
 * harmlessly from the skb buffer and ignored unless TCP/UDP. */
static __always_inline int snoop_parse_l3(const void *l3, __u16 eth_proto, struct snoop_l34 *out)
{
	if (eth_proto == SNOOP_ETH_P_IP) {
		const struct iphdr *ip = bpf_core_cast(l3, struct iphdr);
		__u8 ihl = ip->ihl;

		out->family = SNOOP_AF_INET;
		out->proto = ip->protocol;
		snoop_map_v4(out->saddr, ip->saddr);
		snoop_map_v4(out->daddr, ip->daddr);
		if (ip->frag_off & bpf_htons(0x1fff))
			return 1;
		if (out->proto != SNOOP_IPPROTO_TCP && out->proto != SNOOP_IPPROTO_UDP)
			return 1;
		const struct udphdr *l4 = bpf_core_cast(l3 + ihl * 4, struct udphdr);

		out->sport = bpf_ntohs(l4->source);
		out->dport = bpf_ntohs(l4->dest);
		return 1;
	}
	if (eth_proto == SNOOP_ETH_P_IPV6) {
		const struct ipv6hdr *ip6 = bpf_core_cast(l3, struct ipv6hdr);
		__u32 *s = (__u32 *)out->saddr, *d = (__u32 *)out->daddr;

		out->family = SNOOP_AF_INET6;
		out->proto = ip6->nexthdr;
		s[0] = ip6->saddr.in6_u.u6_addr32[0];
		s[1] = ip6->saddr.in6_u.u6_addr32[1];
		s[2] = ip6->saddr.in6_u.u6_addr32[2];
		s[3] = ip6->saddr.in6_u.u6_addr32[3];
		d[0] = ip6->daddr.in6_u.u6_addr32[0];
		d[1] = ip6->daddr.in6_u.u6_addr32[1];
		d[2] = ip6->daddr.in6_u.u6_addr32[2];
		d[3] = ip6->daddr.in6_u.u6_addr32[3];
		if (out->proto == SNOOP_IPPROTO_TCP || out->proto == SNOOP_IPPROTO_UDP) {
			const struct udphdr *l4 = bpf_core_cast(l3 + sizeof(struct ipv6hdr), struct udphdr);

			out->sport = bpf_ntohs(l4->source);
			out->dport = bpf_ntohs(l4->dest);
		}
		return 1;
	}
	return 0;
}

static __always_inline __u16 snoop_gso_segs(struct sk_buff *skb)
{
	const struct skb_shared_info *shinfo =
		bpf_core_cast(skb->head + skb->end, struct skb_shared_info);
	__u16 segs = shinfo->gso_segs;

	return segs ? segs : 1;
}

/* Open packet sets of this CPU (--packets=runs), in slots by socket cookie
 * and direction: a packet joins the set in its slot or closes it (the set
 * goes to the ring) and opens its own. Per CPU, so no lock: the
 * transmit hook runs with softirqs off and the receive hook in softirq,
 * and neither nests in itself. Userspace reads whatever is still open
 * after detaching, so no set outlives the recording. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SNOOP_RUN_SLOTS);
	__type(key, __u32);
	__type(value, struct snoop_pktset);
} snoop_runs SEC(".maps");

/* Per CPU: where the idle sweep is. */
struct snoop_sweep {
	__u64 next;    /* the next slot it looks at */
	__u64 last_ns; /* when it last looked at one */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct snoop_sweep);
} snoop_run_sweep SEC(".maps");

/* The flags byte (byte 13) of a TCP header, read as the 16 bits from
 * byte 12 (data offset and flags): one load the verifier knows covers
 * tcphdr's bitfields. */
static __always_inline __u8 snoop_tcphdr_flags(const void *l4)
{
	const struct tcphdr *t = bpf_core_cast(l4, struct tcphdr);

	return (__u8)(bpf_ntohs(*(const __u16 *)((const void *)t + 12)) & 0xff);
}

/* TCP flags of a TCP packet at kernel address l3 (0 otherwise). */
static __always_inline __u8 snoop_tcp_flags(const void *l3, const struct snoop_l34 *h)
{
	if (h->proto != SNOOP_IPPROTO_TCP)
		return 0;
	if (h->family == SNOOP_AF_INET) {
		const struct iphdr *ip = bpf_core_cast(l3, struct iphdr);

		if (ip->frag_off & bpf_htons(0x1fff))
			return 0;
		return snoop_tcphdr_flags(l3 + ip->ihl * 4);
	}
	return snoop_tcphdr_flags(l3 + sizeof(struct ipv6hdr));
}

/* Copy a finished packet or run into the ring. */
static __always_inline void snoop_pkt_out(const struct snoop_pkt *r)
{
	struct snoop_pkt *p = snoop_reserve(sizeof(*p), SNOOP_KIND_PKT);

	if (!p)
		return;
	__builtin_memcpy(p, r, sizeof(*p));
	snoop_submit(p);
}

/* Copy a closed packet set into the ring, counted as its runs (a set lost
 * to a full ring loses that many packet rows). */
static __always_inline void snoop_set_out(const struct snoop_pktset *s)
{
	void *ring = snoop_ring();
	struct snoop_pktset *p = ring ? bpf_ringbuf_reserve(ring, sizeof(*p), 0) : NULL;

	snoop_count_n(SNOOP_KIND_PKT, s->n, p == NULL);
	if (!p)
		return;
	__builtin_memcpy(p, s, sizeof(*p));
	snoop_submit(p);
}

/* The slot of a socket's packets in one direction: transmit and receive of
 * one socket are neighbours. */
static __always_inline __u32 snoop_run_slot(__u64 cookie, __u8 dir)
{
	return (__u32)((cookie * 0x9E3779B97F4A7C15ULL) >> 40) & (SNOOP_RUN_SLOTS - 2) | (dir & 1);
}

/* Close one idle set of this CPU (slots round robin), so a socket that
 * went quiet has its set in the ring soon, not at the end. One slot per
 * packet, but at most one per SNOOP_RUN_SWEEP_NS: looking at a slot is a
 * likely cache miss, 50-70 ns of a packet's ~550 on a connection storm,
 * while the sweep's round only needs to be short next to the recording. A
 * CPU with few packets looks at a slot for each; a busy one goes round all
 * slots in SNOOP_RUN_SLOTS * SNOOP_RUN_SWEEP_NS (16 ms). */
static __always_inline void snoop_run_sweep_one(__u64 now)
{
	__u32 zero = 0;
	struct snoop_sweep *sw = bpf_map_lookup_elem(&snoop_run_sweep, &zero);

	if (!sw || now - sw->last_ns < SNOOP_RUN_SWEEP_NS)
		return;
	sw->last_ns = now;
	__u32 i = (__u32)(sw->next++) & (SNOOP_RUN_SLOTS - 1);
	struct snoop_pktset *r = bpf_map_lookup_elem(&snoop_runs, &i);

	if (r && r->n && now - r->last_ns > SNOOP_RUN_GAP_NS) {
		snoop_set_out(r);
		r->n = 0;
	}
}

/* Add a packet to the open set in its socket's slot `r`: to the run of its
 * length and segments, or as a new run while the set has room. Returns 0
 * when it does not belong there (another socket, direction or device,
 * after a pause, or no room), and the caller opens a set with it. Needs
 * no owner: the set's first packet had it looked up and filtered. TCP
 * flags do not end a run (they are OR-ed into it). */
static __always_inline int snoop_set_join(struct snoop_pktset *r, __u64 cookie, __u8 dir,
					  __u32 ifindex, __u32 len, __u16 segs, __u8 flags,
					  __u64 now)
{
	__u32 n = r->n;

	if (!n || r->cookie != cookie || r->dir != dir || r->ifindex != ifindex ||
	    now - r->last_ns > SNOOP_RUN_GAP_NS)
		return 0;
#pragma unroll
	for (int i = 0; i < SNOOP_SET_LENS; i++) {
		struct snoop_pkt_len *e = &r->e[i];

		if (i < n && e->len == len && e->segs == segs && e->count < 0xffffffffU) {
			e->count++;
			e->last_ns = now;
			e->tcp_flags |= flags;
			r->last_ns = now;
			return 1;
		}
	}
	if (n >= SNOOP_SET_LENS)
		return 0;
	struct snoop_pkt_len *e = &r->e[n];

	e->first_ns = now;
	e->last_ns = now;
	e->len = len;
	e->count = 1;
	e->segs = segs;
	e->tcp_flags = flags;
	r->n = n + 1;
	r->last_ns = now;
	return 1;
}

/* Close the set in slot `r` (if any) and open one with packet `cur`. */
static __always_inline void snoop_set_open(struct snoop_pktset *r, const struct snoop_pkt *cur)
{
	if (r->n)
		snoop_set_out(r);
	r->kind = SNOOP_KIND_PKTSET;
	r->dir = cur->dir;
	r->family = cur->family;
	r->proto = cur->proto;
	r->ifindex = cur->ifindex;
	r->cookie = cur->cookie;
	r->last_ns = cur->ts_ns;
	r->pid = cur->pid;
	r->tid = cur->tid;
	__builtin_memcpy(r->laddr, cur->laddr, 16);
	__builtin_memcpy(r->raddr, cur->raddr, 16);
	r->lport = cur->lport;
	r->rport = cur->rport;
	r->source = cur->source;
	__builtin_memcpy(r->comm, cur->comm, sizeof(r->comm));
	r->e[0].first_ns = cur->ts_ns;
	r->e[0].last_ns = cur->ts_ns;
	r->e[0].len = cur->len;
	r->e[0].count = 1;
	r->e[0].segs = cur->segs;
	r->e[0].tcp_flags = cur->tcp_flags;
	r->n = 1;
}

static __always_inline void snoop_emit_pkt(struct sk_buff *skb, const void *l3, __u8 dir)
{
	struct snoop_l34 h = {};
	__u16 eth_proto = bpf_ntohs(skb->protocol);

	if (!snoop_parse_l3(l3, eth_proto, &h))
		return;
	__u64 cookie = 0;

	/* DNS answers (dns.bpf.h), before any filter: the names are for the
	 * recorded traffic, whatever its port, protocol or family. Every
	 * other packet pays this compare; an answer's socket, found here,
	 * serves its packet record too. */
	if (dir == SNOOP_DIR_RX && snoop_cfg.dns_pkts && h.sport == SNOOP_DNS_PORT) {
		cookie = snoop_rx_cookie(h.daddr, h.saddr, h.dport, h.sport, h.proto);
		snoop_dns_rx(skb, l3, h.family, h.proto, h.saddr, h.dport, cookie);
	}
	if (!snoop_proto_ok(h.proto))
		return;

	const __u8 *laddr = dir == SNOOP_DIR_TX ? h.saddr : h.daddr;
	const __u8 *raddr = dir == SNOOP_DIR_TX ? h.daddr : h.saddr;
	__u16 lport = dir == SNOOP_DIR_TX ? h.sport : h.dport;
	__u16 rport = dir == SNOOP_DIR_TX ? h.dport : h.sport;

	if (!snoop_port_ok(lport, rport) || !snoop_family_ok(h.family, raddr))
		return;

	if (dir == SNOOP_DIR_TX) {
		/* skb->sk is an RCU pointer the cookie helper refuses here. The
		 * cookie of every socket snoop has seen was generated in process
		 * context (sock_create, send/recv, iterators), so read it; 0 means
		 * a socket snoop never saw, i.e. unknown. */
		struct sock *sk = skb->sk;

		if (sk)
			cookie = sk->__sk_common.skc_cookie.counter;
	} else if (!cookie) {
		cookie = snoop_rx_cookie(laddr, raddr, lport, rport, h.proto);
	}

	__u32 ifindex = skb->dev ? skb->dev->ifindex : 0;
	__u64 now = bpf_ktime_get_boot_ns();
	__u8 flags = snoop_tcp_flags(l3, &h);
	/* L3 length: at net_dev_queue skb->data is the MAC header. */
	__u32 len = skb->len - (__u32)((const unsigned char *)l3 - skb->data);
	__u16 segs = snoop_gso_segs(skb);
	struct snoop_pktset *set = NULL;

	/* Most of a socket's packets join its open set: no owner lookup and
	 * no record built for them. Packets with no known socket stay one
	 * record each. */
	if (snoop_cfg.pkt_runs && cookie) {
		__u32 idx = snoop_run_slot(cookie, dir);

		set = bpf_map_lookup_elem(&snoop_runs, &idx);
		if (set && snoop_set_join(set, cookie, dir, ifindex, len, segs, flags, now)) {
			snoop_run_sweep_one(now);
			return;
		}
	}

	struct snoop_owner *o = cookie ? bpf_map_lookup_elem(&snoop_owners, &cookie) : NULL;

	if (!snoop_owner_wanted(o))
		return;

	struct snoop_pkt p = {};

	p.kind = SNOOP_KIND_PKT;
	p.dir = dir;
	p.family = h.family;
	p.proto = h.proto;
	p.ifindex = ifindex;
	p.ts_ns = now;
	p.last_ns = now;
	p.count = 1;
	p.tcp_flags = flags;
	p.cookie = cookie;
	p.len = len;
	p.segs = segs;
	p.source = SNOOP_PKT_DEV;
	__builtin_memcpy(p.laddr, laddr, 16);
	__builtin_memcpy(p.raddr, raddr, 16);
	p.lport = lport;
	p.rport = rport;
	if (o) {
		p.pid = o->pid;
		p.tid = o->tid;
		__builtin_memcpy(p.comm, o->comm, sizeof(p.comm));
	}
	if (set) {
		snoop_set_open(set, &p);
		snoop_run_sweep_one(now);
	} else {
		snoop_pkt_out(&p);
	}
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(snoop_dev_queue, struct sk_buff *skb)
{
	if (!snoop_cfg.capture_pkts)
		return 0;
	snoop_emit_pkt(skb, skb->head + skb->network_header, SNOOP_DIR_TX);
	return 0;
}

/* At this tracepoint the network header offset is not reset yet, but
 * skb->data already points at the L3 header (the MAC header was pulled). */
SEC("tp_btf/netif_receive_skb")
int BPF_PROG(snoop_netif_receive, struct sk_buff *skb)
{
	if (!snoop_cfg.capture_pkts)
		return 0;
	snoop_emit_pkt(skb, skb->data, SNOOP_DIR_RX);
	return 0;
}
