/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * snoop.bpf.c — the one BPF object of the recorder. One object (rather than
 * one per concern) so that every program shares the same maps and ring
 * buffer without pinning or fd reuse; each concern lives in its own header.
 */
#include "common.bpf.h"
#include "msg.bpf.h"
#include "dns.bpf.h"
#include "pkt.bpf.h"
#include "conn.bpf.h"
#include "proc.bpf.h"
#include "iter.bpf.h"
#include "iface.bpf.h"
