#!/usr/bin/env python3
"""A userspace stand-in for `tc qdisc add dev eth0 root netem delay D loss L` where the kernel has no
sch_netem (launch/tests.d/80-multihost uses it only then, and says so).

    link_emulator.py HOST_TAP BRIDGE_TAP DELAY_MS LOSS_PERCENT SEED

Opens two TAP devices in the current network namespace: HOST_TAP becomes the host's link (the caller
moves it into the host's namespace and addresses it), BRIDGE_TAP is attached to the bridge. Frames the
host sends (HOST_TAP -> BRIDGE_TAP) are each dropped with probability LOSS_PERCENT / 100 and otherwise
delivered DELAY_MS later, in order, as netem does on the host's egress; frames towards the host pass at
once. TAP devices without a virtio header receive whole, checksummed frames (the kernel segments and
checksums for them), so nothing depends on offloads. Prints "ready" once both devices exist; runs until
killed.
"""
import fcntl, heapq, os, random, select, struct, sys, time

TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000


def tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    host_name, bridge_name, delay_ms, loss_pct, seed = sys.argv[1:6]
    delay, loss = float(delay_ms) / 1000.0, float(loss_pct) / 100.0
    rng = random.Random(int(seed))
    host, bridge = tap(host_name), tap(bridge_name)
    print("ready", flush=True)
    pending = []  # (due time, sequence, frame): host -> bridge, delayed
    seq = 0
    dropped = sent = 0
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
        readable, _, _ = select.select([host, bridge], [], [], timeout)
        now = time.monotonic()
        if host in readable:
            for _ in range(256):
                try:
                    frame = os.read(host, 65536)
                except BlockingIOError:
                    break
                if rng.random() < loss:
                    dropped += 1
                    continue
                heapq.heappush(pending, (now + delay, seq, frame)); seq += 1
        if bridge in readable:
            for _ in range(256):
                try:
                    frame = os.read(bridge, 65536)
                except BlockingIOError:
                    break
                try:
                    os.write(host, frame)
                except OSError:
                    pass  # host link down or its queue full: the frame is lost, as on a wire
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, frame = heapq.heappop(pending)
            try:
                os.write(bridge, frame); sent += 1
            except OSError:
                pass


if __name__ == "__main__":
    main()
