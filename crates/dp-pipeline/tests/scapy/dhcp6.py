from scapy.all import *
from scapy.layers.dhcp6 import *
vm = "66:66:66:66:66:02"; gw = "22:22:22:22:22:02"
ll = "fe80::6466:66ff:fe66:6602"
TRID = 0xabcdef
IAID = 0x18702501
INF = 0xffffffff
dns = ["2001:4860:4860::6464", "2002:4861:4861::6464"]
def frame(name, msg, dst_ll=ll, dst_mac=vm):
    p = Ether(dst=dst_mac, src=gw)/IPv6(src="fe80::1", dst=dst_ll, hlim=64)/UDP(sport=547, dport=546)/msg
    print(name, bytes(p).hex())
sid = DHCP6OptServerId(duid=DUID_LL(lladdr=gw))
cid = DHCP6OptClientId(duid=DUID_LL(lladdr=vm))
def iana(addr="2000:100:1::1"):
    return DHCP6OptIA_NA(iaid=IAID, T1=INF, T2=INF, ianaopts=[DHCP6OptIAAddress(addr=addr, preflft=INF, validlft=INF, iaaddropts=[DHCP6OptStatusCode(statuscode=0)])])
frame("ADVERTISE", DHCP6_Advertise(trid=TRID)/sid/cid/iana()/DHCP6OptDNSServers(dnsservers=dns))
frame("ADVERTISE_NODNS", DHCP6_Advertise(trid=TRID)/sid/cid/iana())
frame("REPLY_RAPID", DHCP6_Reply(trid=TRID)/sid/cid/iana()/DHCP6OptRapidCommit()/DHCP6OptDNSServers(dnsservers=dns))
frame("REPLY", DHCP6_Reply(trid=TRID)/sid/cid/iana()/DHCP6OptDNSServers(dnsservers=dns))
frame("REPLY_CONFIRM", DHCP6_Reply(trid=TRID)/sid/DHCP6OptStatusCode(statuscode=0))
frame("REPLY_NOTONLINK", DHCP6_Reply(trid=TRID)/sid/cid/DHCP6OptStatusCode(statuscode=4))
frame("REPLY_INFO", DHCP6_Reply(trid=TRID)/sid/cid/DHCP6OptDNSServers(dnsservers=dns))
vm4 = "66:66:66:66:66:05"; gw4 = "22:22:22:22:22:05"
ll4 = "fe80::6466:66ff:fe66:6605"
p = Ether(dst=vm4, src=gw4)/IPv6(src="fe80::1", dst=ll4, hlim=64)/UDP(sport=547, dport=546)/DHCP6_Reply(trid=TRID)/DHCP6OptServerId(duid=DUID_LL(lladdr=gw4))/DHCP6OptClientId(duid=DUID_LL(lladdr=vm4))/DHCP6OptStatusCode(statuscode=2)
print("REPLY_NOADDRS", bytes(p).hex())
# a request as scapy / dpservice's test builds it, for cross-checking the Rust builder
req = Ether(dst="33:33:00:01:00:02", src=vm)/IPv6(src=ll, dst="ff02::1:2", hlim=1)/UDP(sport=546, dport=547)/DHCP6_Solicit(trid=TRID)/DHCP6OptClientId(duid=DUID_LL(lladdr=vm))/DHCP6OptIA_NA(iaid=IAID, T1=0, T2=0)/DHCP6OptElapsedTime(elapsedtime=0)/DHCP6OptOptReq(reqopts=[23])
print("SOLICIT", bytes(req).hex())
# PXE: boot file URL (option 59) last, after the DNS servers; VM1's PXE server 2001:dede::1, boot file "ipxe"
frame("ADVERTISE_PXE", DHCP6_Advertise(trid=TRID)/sid/cid/iana()/DHCP6OptDNSServers(dnsservers=dns)/DHCP6OptBootFileUrl(optdata=b"tftp://[2001:dede::1]/ipxe/x86_64/ipxe.new"))
frame("ADVERTISE_IPXE", DHCP6_Advertise(trid=TRID)/sid/cid/iana()/DHCP6OptDNSServers(dnsservers=dns)/DHCP6OptBootFileUrl(optdata=b"http://[2001:dede::1]/ipxe"))
