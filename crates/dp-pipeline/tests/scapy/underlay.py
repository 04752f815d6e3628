# Reference frames for tests/encap.rs, tests/decap.rs and tests/underlay_nd.rs.
# Run with /usr/bin/python3 (Debian's python3-scapy). The flow labels are the dataplane's hash of
# each inner flow (pinned in the tests); everything else is scapy's.
from scapy.all import *

router0 = "52:54:00:00:ff:00"; pf0 = "22:22:22:22:22:00"
vm1 = "66:66:66:66:66:02"; gw1 = "22:22:22:22:22:02"
ul_vm1 = "fc00:1::2"; remote = "fc00:2::d000:1:0:1"
ll0 = "fe80::2022:22ff:fe22:2200"

def show(name, p):
    h = bytes(p).hex()
    run = "78" * 16
    if run in h:  # long runs of b"x": print as prefix + count (the tests build them that way)
        at = h.index(run)
        rest = h[at:]
        n = (len(rest) - len(rest.lstrip("78"))) // 2
        tail = rest[2 * n:]
        print(name, h[:at], "+ x*%d" % n, ("+ " + tail) if tail else "")
    else:
        print(name, h)

inner4 = IP(src="10.100.1.1", dst="10.100.2.1", ttl=63, tos=0xb9, id=1, flags=0)/UDP(sport=40000, dport=5000)/b"hello"
show("ENCAP4", Ether(dst=router0, src=pf0)/IPv6(src=ul_vm1, dst=remote, nh=4, hlim=64, tc=0xb9, fl=0x51c2e)/inner4)

inner6 = IPv6(src="2000:100:1::1", dst="2000:100:2::1", hlim=63)/UDP(sport=40000, dport=5000)/b"hello"
show("ENCAP6", Ether(dst=router0, src=pf0)/IPv6(src=ul_vm1, dst=remote, nh=41, hlim=64, tc=0, fl=0x964db)/inner6)

# Path MTU: underlay MTU 1300, so 1260 for the inner packet; the VM sends 1300 bytes.
big4 = IP(src="10.100.1.1", dst="10.100.2.1", ttl=63, id=1, flags="DF")/UDP(sport=40000, dport=5000)/(b"x" * 1272)
show("FRAGNEEDED", Ether(dst=vm1, src=gw1)/IP(src="169.254.0.1", dst="10.100.1.1", ttl=64, id=0, flags=0)/ICMP(type=3, code=4, nexthopmtu=1260)/bytes(big4)[:548])
big6 = IPv6(src="2000:100:1::1", dst="2000:100:2::1", hlim=63)/UDP(sport=40000, dport=5000)/(b"x" * 1252)
show("PTB", Ether(dst=vm1, src=gw1)/IPv6(src="fe80::1", dst="2000:100:1::1", hlim=64)/ICMPv6PacketTooBig(mtu=1260)/bytes(big6)[:1232])

# Without DF the datagram is fragmented (1240 bytes of payload in the first fragment); the test
# puts each fragment behind the outer header (flow label of the whole datagram's flow).
nodf = IP(src="10.100.1.1", dst="10.100.2.1", ttl=63, id=1, flags=0)/UDP(sport=40000, dport=5000)/(b"x" * 1272)
for i, f in enumerate(fragment(nodf, fragsize=1240)):
    show("INNERFRAG%d" % i, f)

# The host answers neighbor solicitations and pings for its underlay addresses.
show("NA_HOST", Ether(dst=router0, src=pf0)/IPv6(src="fc00:1::1", dst="fe80::ffff", hlim=255)/ICMPv6ND_NA(R=0, S=1, O=1, tgt="fc00:1::1")/ICMPv6NDOptDstLLAddr(lladdr=pf0))
show("NA_DAD", Ether(dst="33:33:00:00:00:01", src=pf0)/IPv6(src="fc00:1::2", dst="ff02::1", hlim=255)/ICMPv6ND_NA(R=0, S=0, O=1, tgt="fc00:1::2")/ICMPv6NDOptDstLLAddr(lladdr=pf0))
show("ECHO_HOST", Ether(dst=router0, src=pf0)/IPv6(src="fc00:1::1", dst="fc00::ffff", hlim=64)/ICMPv6EchoReply(id=0x4242, seq=1, data=b"ping"))

# Router discovery probes from pf0.
show("NS_MCAST", Ether(dst="33:33:ff:00:ff:ff", src=pf0)/IPv6(src=ll0, dst="ff02::1:ff00:ffff", hlim=255)/ICMPv6ND_NS(tgt="fe80::ffff")/ICMPv6NDOptSrcLLAddr(lladdr=pf0))
show("NS_UCAST", Ether(dst=router0, src=pf0)/IPv6(src=ll0, dst="fe80::ffff", hlim=255)/ICMPv6ND_NS(tgt="fe80::ffff")/ICMPv6NDOptSrcLLAddr(lladdr=pf0))
show("RS", Ether(dst="33:33:00:00:00:02", src=pf0)/IPv6(src=ll0, dst="ff02::2", hlim=255)/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr=pf0))
