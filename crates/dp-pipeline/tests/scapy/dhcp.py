from scapy.all import *
vm = "66:66:66:66:66:02"; gw = "22:22:22:22:22:02"
chaddr = bytes.fromhex("666666666602") + b"\0"*10
R121 = b'\x10\xa9\xfe\x00\x00\x00\x00\x00\xa9\xfe\x00\x01'
def reply(name, mtype, dst_mac=vm, dst_ip="10.100.1.1", ciaddr="0.0.0.0", yiaddr="10.100.1.1", siaddr="169.254.0.1", giaddr="169.254.0.1", flags=0, file=b"", extra=[], xid=0x11223344):
    opts = [("message-type", mtype)]
    if mtype != 6:
        opts += [("lease_time",0xffffffff),("server_id","169.254.0.1"),(121, R121),("subnet_mask","255.255.255.255"),("interface-mtu",1337)] + extra
    else:
        opts += [("server_id","169.254.0.1")]
    opts += ["end"]
    bootp = BOOTP(op=2, xid=xid, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr, siaddr=siaddr, giaddr=giaddr, chaddr=chaddr, file=file)/DHCP(options=opts)
    raw = bytes(bootp)
    if len(raw) < 300: raw += b"\0"*(300-len(raw))
    p = Ether(dst=dst_mac, src=gw)/IP(src="169.254.0.1", dst=dst_ip, ttl=64, id=0, flags=0)/UDP(sport=67, dport=68)/Raw(raw)
    print(name, bytes(p).hex())
reply("OFFER", 2)
reply("ACK", 5)
reply("ACK_RENEW", 5, ciaddr="10.100.1.1")
reply("OFFER_DNS_HOST", 2, extra=[("name_server","8.8.4.4","8.8.8.8"),("hostname",b"vm1.example")])
reply("OFFER_PXE", 2, dst_mac="ff:ff:ff:ff:ff:ff", dst_ip="255.255.255.255", siaddr="192.168.100.5", file=b"ipxe/x86_64/ipxe.new", extra=[("router","169.254.0.1")])
reply("ACK_IPXE", 5, dst_mac="ff:ff:ff:ff:ff:ff", dst_ip="255.255.255.255", siaddr="192.168.100.5", file=b"http://192.168.100.5/boot.ipxe", extra=[("router","169.254.0.1")])
reply("OFFER_BCAST", 2, dst_mac="ff:ff:ff:ff:ff:ff", dst_ip="255.255.255.255", flags=0x8000)
reply("NAK", 6, dst_mac="ff:ff:ff:ff:ff:ff", dst_ip="255.255.255.255", yiaddr="0.0.0.0", siaddr="0.0.0.0", giaddr="0.0.0.0")
