from scapy.all import *
vm = "66:66:66:66:66:02"; gw = "22:22:22:22:22:02"
data = b"abcdefghijklmnopqrstuvwxyz012345"
rep = Ether(dst=vm, src=gw)/IP(src="169.254.0.1", dst="10.100.1.1", ttl=64, id=0, flags=0)/ICMP(type=0, id=0x1234, seq=7)/data
print("ECHO4", bytes(rep).hex())
ll = "fe80::6466:66ff:fe66:6602"
rep6 = Ether(dst=vm, src=gw)/IPv6(src="fe80::1", dst=ll, hlim=64)/ICMPv6EchoReply(id=0x1234, seq=7, data=data)
print("ECHO6LL", bytes(rep6).hex())
rep6g = Ether(dst=vm, src=gw)/IPv6(src="fe80::1", dst="2000:100:1::1", hlim=64)/ICMPv6EchoReply(id=0x1234, seq=7, data=data)
print("ECHO6G", bytes(rep6g).hex())
# time exceeded for UDP 10.100.1.1:40000 -> 10.100.1.2:5000 ttl 1 id 1, payload b"hello"
orig = IP(src="10.100.1.1", dst="10.100.1.2", ttl=1, id=1, flags=0)/UDP(sport=40000, dport=5000)/b"hello"
orig = IP(bytes(orig))
te = Ether(dst=vm, src=gw)/IP(src="169.254.0.1", dst="10.100.1.1", ttl=64, id=0, flags=0)/ICMP(type=11, code=0)/bytes(orig)
print("TE4", bytes(te).hex())
orig6 = IPv6(src="2000:100:1::1", dst="2000:100:1::2", hlim=1)/UDP(sport=40000, dport=5000)/b"hello"
orig6 = IPv6(bytes(orig6))
te6 = Ether(dst=vm, src=gw)/IPv6(src="fe80::1", dst="2000:100:1::1", hlim=64)/ICMPv6TimeExceeded(code=0)/bytes(orig6)
print("TE6", bytes(te6).hex())
