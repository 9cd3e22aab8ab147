/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * pkt.bpf.h — packets on the wire (the net_snoop seed): device transmit
 * (net_dev_queue) and receive (netif_receive_skb). Both can run in softirq,
 * so the current task is NEVER used: a transmitted packet names its socket
 * (skb->sk -> cookie -> owner map); a received packet is matched to a socket
 * by its 5-tuple through snoop_flows, learned in process context. Packets
 * nobody owns are kept with pid 0 (the analyzer counts them unattributed).
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

static __always_inline void snoop_emit_pkt(struct sk_buff *skb, const void *l3, __u8 dir)
{
	struct snoop_l34 h = {};
	__u16 eth_proto = bpf_ntohs(skb->protocol);

	if (!snoop_parse_l3(l3, eth_proto, &h))
		return;
	if (!snoop_proto_ok(h.proto))
		return;

	const __u8 *laddr = dir == SNOOP_DIR_TX ? h.saddr : h.daddr;
	const __u8 *raddr = dir == SNOOP_DIR_TX ? h.daddr : h.saddr;
	__u16 lport = dir == SNOOP_DIR_TX ? h.sport : h.dport;
	__u16 rport = dir == SNOOP_DIR_TX ? h.dport : h.sport;

	if (!snoop_port_ok(lport, rport) || !snoop_family_ok(h.family, raddr))
		return;

	__u64 cookie = 0;

	if (dir == SNOOP_DIR_TX) {
		/* skb->sk is an RCU pointer the cookie helper refuses here. The
		 * cookie of every socket snoop has seen was generated in process
		 * context (sock_create, send/recv, iterators), so read it; 0 means
		 * a socket snoop never saw, i.e. unknown. */
		struct sock *sk = skb->sk;

		if (sk)
			cookie = sk->__sk_common.skc_cookie.counter;
	} else {
		struct snoop_flow_key k = {};
		__u64 *c;

		__builtin_memcpy(k.laddr, laddr, 16);
		__builtin_memcpy(k.raddr, raddr, 16);
		k.lport = lport;
		k.rport = rport;
		k.proto = h.proto;
		c = bpf_map_lookup_elem(&snoop_flows, &k);
		if (!c) /* unconnected UDP / listener: bound address, no peer */
			c = snoop_lookup_bound(laddr, lport, h.proto);
		if (c)
			cookie = *c;
	}

	struct snoop_owner *o = cookie ? bpf_map_lookup_elem(&snoop_owners, &cookie) : NULL;

	if (!snoop_owner_wanted(o))
		return;

	struct snoop_pkt *p = snoop_reserve(sizeof(*p), SNOOP_KIND_PKT);

	if (!p)
		return;
	p->kind = SNOOP_KIND_PKT;
	p->dir = dir;
	p->family = h.family;
	p->proto = h.proto;
	p->ifindex = skb->dev ? skb->dev->ifindex : 0;
	p->ts_ns = bpf_ktime_get_boot_ns();
	p->cookie = cookie;
	/* L3 length: at net_dev_queue skb->data is the MAC header. */
	p->len = skb->len - (__u32)((const unsigned char *)l3 - skb->data);
	p->segs = snoop_gso_segs(skb);
	p->source = SNOOP_PKT_DEV;
	p->_pad0 = 0;
	p->_pad1 = 0;
	__builtin_memcpy(p->laddr, laddr, 16);
	__builtin_memcpy(p->raddr, raddr, 16);
	p->lport = lport;
	p->rport = rport;
	if (o) {
		p->pid = o->pid;
		p->tid = o->tid;
		__builtin_memcpy(p->comm, o->comm, sizeof(p->comm));
	} else {
		p->pid = 0;
		p->tid = 0;
		__builtin_memset(p->comm, 0, sizeof(p->comm));
	}
	snoop_submit(p);
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
