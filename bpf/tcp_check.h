// TCP's acceptance rules: whether an incoming FIN or RST ends the connection.
// They mirror the kernel's code (tcp_input.c) rather than anything of this
// project's, and are checked against it, so they stand apart.

#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kernel.h"
#include "parse.h"

// accepted_by_tcp says whether TCP will act on an incoming FIN or RST. The
// ingress hook runs before TCP validates the segment, so an out-of-window or
// forged FIN/RST reaches it; such segments end nothing. This mirrors
// tcp_validate_incoming() and tcp_rcv_synsent_state_process().
static __always_inline int accepted_by_tcp(struct bpf_sock *sk, struct segment *seg)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	// No TCP state to check against (BPF_PROG_TEST_RUN's dummy socket):
	// take the segment at face value.
	if (!tp)
		return 1;

	// TCP discards every segment for a socket in CLOSE: one that arrived
	// as the socket closed on another CPU (its table entry may be free).
	if (sk->state == TCP_CLOSE)
		return 0;

	__u32 rcv_nxt = tp->rcv_nxt;

	// Acknowledgments are bounded by write_seq, the end of what the socket
	// has queued, not by snd_nxt: on loopback a reply can arrive while the
	// sender is still inside its transmit call and has not advanced snd_nxt
	// (it then waits in the socket backlog).
	__u32 snd_una = tp->snd_una;
	__u32 write_seq = tp->write_seq;
	int ack_ok = (seg->flags & TH_ACK) && !seq_before(write_seq, seg->ack_seq);

	if (sk->state == TCP_SYN_SENT) {
		// Only a RST that acknowledges our SYN is acceptable; everything
		// else without SYN is dropped.
		return (seg->flags & TH_RST) && ack_ok && seq_before(snd_una, seg->ack_seq);
	}

	// The receive window, as tcp_receive_window() computes it.
	__s32 win = (__s32)(tp->rcv_wup + tp->rcv_wnd - rcv_nxt);
	if (win < 0)
		win = 0;
	__u32 end_seq = seg->seq + seg->payload_len + ((seg->flags & TH_FIN) ? 1 : 0);
	int in_window = !seq_before(end_seq, tp->rcv_wup) &&
			!seq_before(rcv_nxt + (__u32)win, seg->seq);

	if (!(seg->flags & TH_RST)) {
		// A FIN also needs an acceptable ACK (tcp_ack()): none, one for
		// data never sent, or one older than the largest window is dropped.
		return in_window && ack_ok && !seq_before(seg->ack_seq, snd_una - tp->max_window);
	}

	// RFC 5961: a RST is accepted only at exactly rcv_nxt (or rcv_nxt-1
	// once a FIN was received, tcp_reset_check()); other in-window RSTs only
	// draw a challenge ACK.
	if (seg->seq == rcv_nxt)
		return 1;
	if (seg->seq == rcv_nxt - 1 &&
	    (sk->state == TCP_CLOSE_WAIT || sk->state == TCP_LAST_ACK || sk->state == TCP_CLOSING))
		return 1;
	// Segments queued in the socket backlog (socket owned by a task) have
	// not advanced rcv_nxt yet; a RST behind them is checked against the
	// window, as TCP will find it exact once the backlog is processed.
	if (tp->inet_conn.icsk_inet.sk.sk_backlog.len > 0)
		return in_window;
	return 0;
}
