/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * snoop.h — the one contract between the BPF programs (C) and the recorder
 * (Rust). Rust never hand-copies these structs: the skeleton generator emits
 * them from BTF because snoop.bpf.c declares one dummy global of each type.
 *
 * Rules: fixed-width types only, explicit padding (every struct is a multiple
 * of 8 bytes, no implicit holes), every name prefixed snoop_/SNOOP_ so it
 * never collides with vmlinux.h. Every ring-buffer record starts with
 * `__u8 kind` (one of enum snoop_kind). IPv4 addresses are stored as
 * v4-mapped IPv6 (::ffff:a.b.c.d) in 16-byte fields; an unspecified or
 * unknown address (0.0.0.0, ::) is all zero. Timestamps are
 * CLOCK_BOOTTIME nanoseconds (bpf_ktime_get_boot_ns).
 */
#ifndef SNOOP_H
#define SNOOP_H

#define SNOOP_COMM_LEN 16
#define SNOOP_FILENAME_LEN 128

/* Record kinds: the first byte of every ring-buffer record, and the index of
 * the per-CPU drop counter for that kind. */
enum snoop_kind {
	SNOOP_KIND_MSG = 0,  /* application-level send/recv (process context) */
	SNOOP_KIND_PKT = 1,  /* wire-level packet (device or --iface)          */
	SNOOP_KIND_CONN = 2, /* TCP state change / pre-existing connection     */
	SNOOP_KIND_PROC = 3, /* exec / fork / exit                             */
	SNOOP_KIND_DNS = 4,  /* a DNS answer's first bytes (from port 53)      */
	SNOOP_KIND_MAX = 5,  /* kinds counted; the record kinds below count as one of them */
	SNOOP_KIND_PKTSET = 6, /* a socket's packets of up to SNOOP_SET_LENS lengths (counted as PKT) */
	SNOOP_KIND_MSGS = 7, /* up to SNOOP_MSG_BATCH messages of one CPU (counted as MSG) */
};

/* Map pressure counters (index of snoop_pressure): what the kernel side
 * could not remember, so attribution or tracking may be incomplete. */
enum snoop_pressure_kind {
	/* A socket's owner could not be put in snoop_owners: the map was
	 * full (more live sockets than --owner-map-entries). Counted per
	 * refused insert; the socket's packets and state changes stay
	 * unattributed until an insert succeeds. */
	SNOOP_PRESSURE_OWNER_FULL = 0,
	/* A process selected by --pid/--comm/--follow could not be added to
	 * snoop_tracked (map full): its events are not recorded. */
	SNOOP_PRESSURE_TRACKED_FULL = 1,
	SNOOP_PRESSURE_MAX = 2,
};

enum snoop_dir {
	SNOOP_DIR_TX = 0,
	SNOOP_DIR_RX = 1,
};

enum snoop_proc_kind {
	SNOOP_PROC_EXEC = 0,
	SNOOP_PROC_FORK = 1,
	SNOOP_PROC_EXIT = 2,
	/* Already running when recording began (iter/task): ts_ns is the
	 * process's start (task->start_boottime), ppid its parent then. */
	SNOOP_PROC_RUNNING = 3,
};

/* Packet sources (snoop_pkt.source). */
enum snoop_pkt_source {
	SNOOP_PKT_DEV = 0,   /* net_dev_queue / netif_receive_skb */
	SNOOP_PKT_IFACE = 1, /* socket filter on an AF_PACKET socket (--iface) */
};

/* One send or receive as the application saw it (sock_send_length /
 * sock_recv_length). pid/tid/comm are those of the calling thread. raddr /
 * rport of unconnected UDP come from the cgroup sendmsg/recvmsg hooks when
 * the application passed an address; otherwise they are zero. */
struct snoop_msg {
	__u8 kind; /* SNOOP_KIND_MSG */
	__u8 dir;  /* enum snoop_dir */
	__u8 family; /* AF_INET (2) or AF_INET6 (10) of the socket */
	__u8 proto;  /* IPPROTO_TCP / IPPROTO_UDP */
	__u32 pid;   /* tgid */
	__u32 tid;
	__u32 bytes;
	__u64 ts_ns;
	__u64 cookie; /* bpf_get_socket_cookie */
	__u64 cgroup; /* cgroup v2 id of the task */
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport; /* host byte order */
	__u16 rport; /* host byte order */
	__u32 _pad0;
	char comm[SNOOP_COMM_LEN];
};

/* Messages are staged per CPU and go to the ring together: one reserve
 * and commit for up to SNOOP_MSG_BATCH messages instead of one each
 * (measured: ~60 ns less per message, BENCHMARKS.md). A batch goes out when
 * it is full, at the first message more than SNOOP_MSG_BATCH_NS after its
 * first, and when userspace runs the flush program on its CPU (a few times
 * a second, so a CPU that went quiet holds none for long: a message's
 * cgroup must still exist when the recorder names it). At stop userspace
 * reads out what is left, so no message outlives the recording. Only
 * `snoop record` stages (`top` shows traffic as it happens). In the ring a
 * batch is 16 + n * 96 bytes. */
#define SNOOP_MSG_BATCH 16
#define SNOOP_MSG_BATCH_NS 1000000ULL

/* Staged messages of one CPU (SNOOP_KIND_MSGS); only m[0..n] go to the ring. */
struct snoop_msgs {
	__u8 kind; /* SNOOP_KIND_MSGS */
	__u8 n;    /* messages in m[] */
	__u8 busy; /* a message program is writing it (the flush program waits) */
	__u8 _pad0[5];
	__u64 first_ns; /* when m[0] was staged */
	struct snoop_msg m[SNOOP_MSG_BATCH];
};

/* One packet on the wire. The owner (pid/tid/comm) comes from the cookie ->
 * owner map learned in process context, never from the current task; it is
 * zero when unknown. local = source for tx, destination for rx. */
struct snoop_pkt {
	__u8 kind; /* SNOOP_KIND_PKT */
	__u8 dir;
	__u8 family; /* AF_INET / AF_INET6 of the IP header */
	__u8 proto;  /* IP protocol number (any, not only TCP/UDP) */
	__u32 ifindex;
	__u64 ts_ns;
	__u64 cookie; /* 0 when the kernel does not know the socket */
	__u32 len;    /* IP packet length (L3 header + payload; GSO: all segments) */
	__u16 segs;   /* GSO segments, 1 when not GSO */
	__u8 source;  /* enum snoop_pkt_source */
	__u8 _pad0;
	__u32 pid; /* owner, 0 = unknown */
	__u32 tid;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u32 _pad1;
	char comm[SNOOP_COMM_LEN];
	/* One packet: count 1, last_ns == ts_ns (with --packets=runs a known
	 * socket's packets come as snoop_pktset instead, whose runs the
	 * recorder writes as rows of this shape: count packets, first and last
	 * time). tcp_flags: the packet's TCP flags (0 for other protocols). */
	__u64 last_ns;
	__u32 count;
	__u8 tcp_flags;
	__u8 _pad2[3];
};

/* Lengths one packet set holds. */
#define SNOOP_SET_LENS 4

/* The packets of one length in a packet set: a run. */
struct snoop_pkt_len {
	__u64 first_ns;
	__u64 last_ns;
	__u32 len; /* as snoop_pkt.len */
	__u32 count;
	__u16 segs;
	__u8 tcp_flags; /* OR of its packets' TCP flags */
	__u8 _pad[5];
};

/* A packet set (--packets=runs): the packets of one socket and direction on
 * one device, none more than SNOOP_RUN_GAP_NS after the one before, as runs
 * of up to SNOOP_SET_LENS lengths (e[0..n]). A set closes when a packet of
 * a new length finds all its lengths taken, after a pause, when its slot is
 * taken by another socket, and when recording stops. One record for the
 * few lengths a short connection's packets have (SYN, ACK, data, FIN),
 * where a run per length change took one for nearly every packet. The
 * header is as snoop_pkt's; last_ns is the set's latest packet. */
struct snoop_pktset {
	__u8 kind; /* SNOOP_KIND_PKTSET */
	__u8 dir;
	__u8 family;
	__u8 proto;
	__u32 ifindex;
	__u64 cookie;
	__u64 last_ns;
	__u32 pid;
	__u32 tid;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 source; /* enum snoop_pkt_source */
	__u8 n;      /* runs in e[] */
	__u8 _pad0[2];
	char comm[SNOOP_COMM_LEN];
	struct snoop_pkt_len e[SNOOP_SET_LENS];
};

/* Longest pause between two packets of one run. */
#define SNOOP_RUN_GAP_NS 1000000ULL
/* Open runs kept per CPU (a power of two): the slots of snoop_runs. */
#define SNOOP_RUN_SLOTS 256
/* Shortest time between two looks of a CPU's idle sweep at a run slot. */
#define SNOOP_RUN_SWEEP_NS 64000ULL

/* One TCP state change (inet_sock_set_state) or, with old_state == 0, a
 * connection that already existed when recording started (iter/tcp).
 * The tcp_sock counters and sk_err are read once, at TCP_CLOSE (and for
 * already open connections); other state changes carry zeros. */
struct snoop_conn {
	__u8 kind; /* SNOOP_KIND_CONN */
	__u8 family;
	__u8 old_state; /* TCP_* (1..12); 0 = synthetic "already open" */
	__u8 new_state;
	__u32 pid; /* owner from the cookie map, 0 = unknown */
	__u32 tid;
	__u32 retrans_segs; /* tcp_sock total_retrans */
	__u64 ts_ns;
	__u64 cookie;
	__u64 bytes_acked;    /* tcp_sock, meaningful at TCP_CLOSE */
	__u64 bytes_received; /* tcp_sock, meaningful at TCP_CLOSE */
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u16 sk_err; /* sk->sk_err (errno: ECONNREFUSED, ETIMEDOUT, ECONNRESET, ...) */
	__u16 _pad1;
	char comm[SNOOP_COMM_LEN];
	__u32 srtt_us;    /* smoothed RTT, us (tcp_sock srtt_us >> 3); 0 = no sample */
	__u32 min_rtt_us; /* minimum RTT, us (tcp_sock rtt_min); 0 = no sample */
	__u32 segs_out;   /* tcp_sock segs_out: segments sent, retransmits included */
	__u32 segs_in;    /* tcp_sock segs_in: segments received */
};

/* exec / fork / exit / running. For fork, pid/tid are the child and ppid
 * the parent; for running, ts_ns is the process's start time. */
struct snoop_proc {
	__u8 kind; /* SNOOP_KIND_PROC */
	__u8 pkind; /* enum snoop_proc_kind */
	__u16 _pad0;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__s32 exit_code; /* exit: task->exit_code (status << 8 | signal) */
	__u32 _pad1;
	__u64 ts_ns;
	char comm[SNOOP_COMM_LEN];
	char filename[SNOOP_FILENAME_LEN]; /* exec only */
};

/* Bytes of a DNS message copied per packet: the classic UDP limit. */
#define SNOOP_DNS_CAP 512

/* The first bytes of the payload of a packet from port 53 to a local
 * socket (read at netif_receive_skb when packets are recorded, else at
 * cgroup_skb ingress): a DNS answer, parsed in user space, which keeps
 * only names, addresses and TTLs. The owner comes from the receiving
 * socket's cookie, never from the current task. For TCP the payload starts
 * with the message's 2-byte length when seq is where a message starts. */
struct snoop_dns {
	__u8 kind;  /* SNOOP_KIND_DNS */
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u16 len;  /* bytes of data[] filled (<= SNOOP_DNS_CAP) */
	__u32 pid;  /* owner of the receiving socket, 0 = unknown */
	__u32 tid;
	__u32 seq;  /* TCP: sequence number of data[0]; UDP: 0 */
	__u64 ts_ns;
	__u64 cookie; /* the receiving socket */
	char comm[SNOOP_COMM_LEN];
	__u8 data[SNOOP_DNS_CAP];
};

/* Value of the cookie -> owner map. */
struct snoop_owner {
	__u32 pid;
	__u32 tid;
	__u64 cgroup;
	char comm[SNOOP_COMM_LEN];
	__u16 lport; /* ports of the 5-tuple last learned into snoop_flows */
	__u16 rport;
	__u32 _pad0;
};

/* Key of the 5-tuple -> cookie map used to attribute received packets
 * (netif_receive_skb does not know the socket yet). Filled in process
 * context from the socket's own addresses. */
struct snoop_flow_key {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 proto;
	__u8 _pad0[3];
};

/* Pending peer address of an unconnected UDP send/recv, captured by the
 * cgroup sendmsg/recvmsg hooks and consumed by sock_*_length in the same
 * thread. Keyed by tid. */
struct snoop_peer {
	__u64 cookie;
	__u8 addr[16];
	__u16 port;
	__u8 family;
	__u8 _pad0[5];
};

/* Settings fixed before load (const volatile, rodata). */
struct snoop_config {
	__u8 filter_pid;   /* only tgids present in snoop_tracked */
	__u8 filter_comm;  /* comms in snoop_comms join snoop_tracked */
	__u8 follow;       /* children of tracked tgids join snoop_tracked */
	__u8 capture_pkts; /* net_dev_queue / netif_receive_skb */
	__u8 family;       /* 0 = any, AF_INET, AF_INET6 */
	__u8 proto;        /* 0 = any, IPPROTO_TCP, IPPROTO_UDP */
	__u16 port;        /* 0 = any; matches local or remote port */
	__u64 cgroup;      /* 0 = any; else only tasks in this cgroup v2 id */
	__u8 pkt_runs;     /* fold a socket's packets into runs (--packets=runs) */
	__u8 dns_pkts;     /* DNS answers from the netif_receive_skb program */
	__u8 msg_batch;    /* stage messages per CPU (snoop_msgs) */
	__u8 _pad0[5];
};

#endif /* SNOOP_H */
