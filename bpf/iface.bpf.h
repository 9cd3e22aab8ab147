/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * iface.bpf.h — interface capture (the sockfilter seed): a socket filter on
 * an AF_PACKET raw socket bound to one device sees every frame of that
 * device, other network namespaces' traffic included. Each IPv4/IPv6
 * packet becomes a packet record (source SNOOP_PKT_IFACE); fragments other
 * than the first are skipped, as the seed did. The filter returns 0, so no
 * copy ever reaches the socket itself. No owner: this traffic may belong to
 * other namespaces; the analyzer matches it by 5-tuple if it can.
 */

SEC("socket")
int snoop_iface_filter(struct __sk_buff *skb)
{
	__u16 eth_proto = bpf_ntohs(skb->protocol);
	struct snoop_l34 h = {};
	__u32 off = 14; /* Ethernet header; AF_PACKET SOCK_RAW sees L2 */

	if (eth_proto == SNOOP_ETH_P_IP) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return 0;
		if (ip.frag_off & bpf_htons(0x1fff))
			return 0; /* a non-first fragment: no L4 header */
		h.family = SNOOP_AF_INET;
		h.proto = ip.protocol;
		snoop_map_v4(h.saddr, ip.saddr);
		snoop_map_v4(h.daddr, ip.daddr);
		off += ip.ihl * 4;
	} else if (eth_proto == SNOOP_ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return 0;
		if (ip6.nexthdr == 44) /* fragment header */
			return 0;
		h.family = SNOOP_AF_INET6;
		h.proto = ip6.nexthdr;
		__builtin_memcpy(h.saddr, &ip6.saddr, 16);
		__builtin_memcpy(h.daddr, &ip6.daddr, 16);
		off += sizeof(ip6);
	} else {
		return 0;
	}
	if (h.proto == SNOOP_IPPROTO_TCP || h.proto == SNOOP_IPPROTO_UDP) {
		__u16 ports[2];

		if (!bpf_skb_load_bytes(skb, off, ports, sizeof(ports))) {
			h.sport = bpf_ntohs(ports[0]);
			h.dport = bpf_ntohs(ports[1]);
		}
	}
	if (!snoop_proto_ok(h.proto))
		return 0;
	__u8 dir = skb->pkt_type == SNOOP_PACKET_OUTGOING ? SNOOP_DIR_TX : SNOOP_DIR_RX;
	const __u8 *laddr = dir == SNOOP_DIR_TX ? h.saddr : h.daddr;
	const __u8 *raddr = dir == SNOOP_DIR_TX ? h.daddr : h.saddr;
	__u16 lport = dir == SNOOP_DIR_TX ? h.sport : h.dport;
	__u16 rport = dir == SNOOP_DIR_TX ? h.dport : h.sport;

	if (!snoop_port_ok(lport, rport) || !snoop_family_ok(h.family, raddr))
		return 0;
	struct snoop_pkt *p = snoop_reserve(sizeof(*p), SNOOP_KIND_PKT);

	if (!p)
		return 0;
	__builtin_memset(p, 0, sizeof(*p));
	p->kind = SNOOP_KIND_PKT;
	p->dir = dir;
	p->family = h.family;
	p->proto = h.proto;
	p->ifindex = skb->ifindex;
	p->ts_ns = bpf_ktime_get_boot_ns();
	p->last_ns = p->ts_ns;
	p->count = 1;
	p->len = skb->len > 14 ? skb->len - 14 : 0; /* L3 length, like skb->len at the device hooks */
	p->segs = skb->gso_segs ? skb->gso_segs : 1;
	p->source = SNOOP_PKT_IFACE;
	__builtin_memcpy(p->laddr, laddr, 16);
	__builtin_memcpy(p->raddr, raddr, 16);
	p->lport = lport;
	p->rport = rport;
	snoop_submit(p);
	return 0;
}
