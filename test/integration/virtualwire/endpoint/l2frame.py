#!/usr/bin/env python3
"""Raw Ethernet frames for the endpoint integration test (no VLAN devices or tc on this kernel).

  l2frame.py send IFNAME DST_MAC VID MARKER [COUNT]   send COUNT frames (VID 0: untagged, else 802.1Q, PCP 5)
  l2frame.py recv IFNAME MARKER EXPECT TIMEOUT_S      print one JSON line per received frame carrying MARKER

Received frames report the 802.1Q tag whether the kernel left it inline or moved it to
PACKET_AUXDATA (it untags on receive).
"""
import json, select, socket, struct, sys, time

ETH_P_ALL = 3
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETHERTYPE = 0x88b5  # IEEE local experimental


def mac(b):
    return ':'.join('%02x' % x for x in b)


def send(ifname, dst, vid, marker, count):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    src = s.getsockname()[4]
    tag = struct.pack('!HH', 0x8100, (5 << 13) | vid) if vid > 0 else b''
    frame = bytes.fromhex(dst.replace(':', '')) + src + tag + struct.pack('!H', ETHERTYPE) + marker.encode().ljust(46, b'\0')
    for _ in range(count):
        s.send(frame)
        time.sleep(0.05)


def recv(ifname, marker, expect, timeout):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    print('ready', flush=True)
    found = 0
    deadline = time.time() + timeout
    m = marker.encode()
    while found < expect and time.time() < deadline:
        r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
        if not r:
            break
        data, anc, _flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
        if addr[2] == PACKET_OUTGOING or m not in data:
            continue
        vlan = None
        for lvl, typ, d in anc:
            if lvl == SOL_PACKET and typ == PACKET_AUXDATA:
                status, _len, _snap, _mac, _net, tci, tpid = struct.unpack('IIIHHHH', d[:20])
                if status & TP_STATUS_VLAN_VALID:
                    vlan = {'tpid': tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, 'vid': tci & 0xfff, 'pcp': tci >> 13}
        et = struct.unpack('!H', data[12:14])[0]
        if vlan is None and et in (0x8100, 0x88a8):
            tci = struct.unpack('!H', data[14:16])[0]
            vlan = {'tpid': et, 'vid': tci & 0xfff, 'pcp': tci >> 13}
            et = struct.unpack('!H', data[16:18])[0]
        print(json.dumps({'dst': mac(data[0:6]), 'src': mac(data[6:12]), 'vlan': vlan, 'ethertype': et}), flush=True)
        found += 1


if __name__ == '__main__':
    if sys.argv[1] == 'send':
        send(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]) if len(sys.argv) > 6 else 3)
    else:
        recv(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
