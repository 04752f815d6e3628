from scapy.all import *
vm_mac = "66:66:66:66:66:02"
gw_mac = "22:22:22:22:22:02"
ll = "fe80::6466:66ff:fe66:6602"
# NA reply to NS
na = Ether(dst=vm_mac, src=gw_mac)/IPv6(src="fe80::1", dst=ll, hlim=255)/ICMPv6ND_NA(R=1,S=1,O=1,tgt="fe80::1")/ICMPv6NDOptDstLLAddr(lladdr=gw_mac)
print("NA", bytes(na).hex())
na2 = Ether(dst="33:33:00:00:00:01", src=gw_mac)/IPv6(src="fe80::1", dst="ff02::1", hlim=255)/ICMPv6ND_NA(R=1,S=0,O=1,tgt="fe80::1")/ICMPv6NDOptDstLLAddr(lladdr=gw_mac)
print("NA_DAD", bytes(na2).hex())
ra = Ether(dst=vm_mac, src=gw_mac)/IPv6(src="fe80::1", dst=ll, hlim=255)/ICMPv6ND_RA(chlim=255, M=1, O=1, routerlifetime=0xffff, reachabletime=0, retranstimer=0, prf=0)/ICMPv6NDOptSrcLLAddr(lladdr=gw_mac)
print("RA", bytes(ra).hex())
ra2 = Ether(dst="33:33:00:00:00:01", src=gw_mac)/IPv6(src="fe80::1", dst="ff02::1", hlim=255)/ICMPv6ND_RA(chlim=255, M=1, O=1, routerlifetime=0xffff, reachabletime=0, retranstimer=0, prf=0)/ICMPv6NDOptSrcLLAddr(lladdr=gw_mac)
print("RA_MC", bytes(ra2).hex())
# requests for cross-check of the test builders
ns = Ether(dst="33:33:ff:00:00:01", src=vm_mac)/IPv6(src=ll, dst="ff02::1:ff00:1", hlim=255)/ICMPv6ND_NS(tgt="fe80::1")/ICMPv6NDOptSrcLLAddr(lladdr=vm_mac)
print("NS", bytes(ns).hex())
rs = Ether(dst="33:33:00:00:00:02", src=vm_mac)/IPv6(src=ll, dst="ff02::2", hlim=255)/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr=vm_mac)
print("RS", bytes(rs).hex())
