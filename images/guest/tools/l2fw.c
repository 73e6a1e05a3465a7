/*
 * l2fw: a transparent layer-2 firewall between two interfaces.  Part of the
 * supercloud tiny guest image; static, no dependencies.
 *
 * Each interface gets an AF_PACKET raw socket (ETH_P_ALL, bound to it) and is
 * set up and promiscuous; every frame received on one side is matched against
 * the rules (first match wins, else the default action) and, when allowed,
 * sent out of the other side unchanged.
 *
 * Details that make it correct rather than merely working:
 *  - Frames the kernel itself sends (and anything we inject) show up on the
 *    sockets as PACKET_OUTGOING; they are never forwarded (PACKET_IGNORE_OUTGOING
 *    where the kernel has it, and a sll_pkttype check always).
 *  - The receive path strips the outer 802.1Q tag before packet sockets see a
 *    frame; PACKET_AUXDATA gives it back and it is re-inserted before sending.
 *  - PACKET_VNET_HDR carries checksum-offload and GSO state across: a frame
 *    whose checksum the sender left to the NIC, or a GRO-merged 64 KiB TCP
 *    burst, goes out the other side as the same kind of frame.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef TP_STATUS_VLAN_TPID_VALID
#define TP_STATUS_VLAN_TPID_VALID (1 << 6)
#endif

static const char usage[] =
  "usage: l2fw <if-a> <if-b> [--allow MATCH | --drop MATCH]... [--default allow|drop] [--quiet]\n"
  "\n"
  "Forwards every frame between two interfaces (brought up, promiscuous, no\n"
  "addresses needed) except those the rules drop. Rules are tried in order;\n"
  "the first that matches decides; otherwise --default (allow unless given).\n"
  "\n"
  "MATCH is one or more terms joined by '+' (all must hold):\n"
  "  any                    every frame\n"
  "  arp | ipv4 | ipv6      by (inner) ethertype; ip = ipv4, ip6 = ipv6\n"
  "  ethertype:0xNNNN       by (inner) ethertype\n"
  "  icmp | icmp6           IPv4 ICMP / IPv6 ICMPv6\n"
  "  tcp | udp | sctp       IPv4 or IPv6 L4 protocol\n"
  "  tcp:P | tcp:P-Q        TCP with source or destination port P (or in P..Q);\n"
  "  udp:P | udp:P-Q          stateless, so a rule for a service passes its replies\n"
  "  proto:N                IP protocol number N\n"
  "  vlan | vlan:ID         802.1Q-tagged (with outer VLAN ID)\n"
  "  untagged               no 802.1Q tag\n"
  "Tagged frames are matched on their inner ethertype and IP header.\n"
  "\n"
  "Counters (one JSON line) are printed to stdout on SIGUSR1 and at exit\n"
  "(SIGINT/SIGTERM):\n"
  "  {\"forwarded\":F,\"dropped\":D,\"sendErrors\":E,\"rules\":[{\"rule\":\"allow icmp\",\"frames\":N,\"bytes\":B},...,\n"
  "   {\"rule\":\"default drop\",...}]}\n"
  "\n"
  "example: l2fw eth0 eth1 --allow arp --allow icmp --allow udp:7 --allow tcp:80 --default drop\n";

enum kind { K_ANY, K_ETHERTYPE, K_IPPROTO, K_PORT, K_VLAN, K_UNTAGGED };

struct term {
  enum kind kind;
  uint16_t ethertype;   /* K_ETHERTYPE; 0 = any IP for K_IPPROTO/K_PORT */
  int ipv;              /* K_IPPROTO: 0 = v4 or v6, 4, 6 */
  uint8_t proto;        /* K_IPPROTO / K_PORT */
  uint16_t lo, hi;      /* K_PORT range, K_VLAN id (lo == 0xffff: any id) */
};

#define MAX_TERMS 8
#define MAX_RULES 128

struct rule {
  int allow;
  char text[96];
  int nterms;
  struct term terms[MAX_TERMS];
  uint64_t frames, bytes;
};

static struct rule rules[MAX_RULES + 1]; /* the last used slot is the default */
static int nrules = 0;
static uint64_t g_forwarded = 0, g_dropped = 0, g_send_errors = 0;
static volatile sig_atomic_t g_stop = 0, g_dump = 0;

static void on_stop (int s) { (void)s; g_stop = 1; }
static void on_usr1 (int s) { (void)s; g_dump = 1; }

static int parse_num (const char *s, unsigned long max, int base, unsigned long *out) {
  char *end = NULL;
  if (*s == '\0') return 0;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno != 0 || end == s || *end != '\0' || v > max) return 0;
  *out = v;
  return 1;
}

static int parse_term (const char *s, struct term *t) {
  memset(t, 0, sizeof *t);
  const char *colon = strchr(s, ':');
  size_t klen = colon != NULL ? (size_t)(colon - s) : strlen(s);
  const char *arg = colon != NULL ? colon + 1 : NULL;
  unsigned long v, w;
#define KEY(k) (klen == strlen(k) && strncmp(s, k, klen) == 0)
  if (KEY("any") && arg == NULL) { t->kind = K_ANY; return 1; }
  if (KEY("untagged") && arg == NULL) { t->kind = K_UNTAGGED; return 1; }
  if (KEY("arp") && arg == NULL) { t->kind = K_ETHERTYPE; t->ethertype = ETH_P_ARP; return 1; }
  if ((KEY("ipv4") || KEY("ip")) && arg == NULL) { t->kind = K_ETHERTYPE; t->ethertype = ETH_P_IP; return 1; }
  if ((KEY("ipv6") || KEY("ip6")) && arg == NULL) { t->kind = K_ETHERTYPE; t->ethertype = ETH_P_IPV6; return 1; }
  if (KEY("ethertype") && arg != NULL) {
    if (!parse_num(arg, 0xffff, 0, &v)) return 0;
    t->kind = K_ETHERTYPE; t->ethertype = (uint16_t)v; return 1;
  }
  if (KEY("icmp") && arg == NULL) { t->kind = K_IPPROTO; t->ipv = 4; t->proto = IPPROTO_ICMP; return 1; }
  if (KEY("icmp6") && arg == NULL) { t->kind = K_IPPROTO; t->ipv = 6; t->proto = IPPROTO_ICMPV6; return 1; }
  if (KEY("proto") && arg != NULL) {
    if (!parse_num(arg, 255, 10, &v)) return 0;
    t->kind = K_IPPROTO; t->proto = (uint8_t)v; return 1;
  }
  if (KEY("tcp") || KEY("udp") || KEY("sctp")) {
    t->proto = KEY("tcp") ? IPPROTO_TCP : KEY("udp") ? IPPROTO_UDP : IPPROTO_SCTP;
    if (arg == NULL) { t->kind = K_IPPROTO; return 1; }
    char buf[32];
    if (strlen(arg) >= sizeof buf) return 0;
    strcpy(buf, arg);
    char *dash = strchr(buf, '-');
    if (dash != NULL) *dash = '\0';
    if (!parse_num(buf, 65535, 10, &v) || v == 0) return 0;
    w = v;
    if (dash != NULL && (!parse_num(dash + 1, 65535, 10, &w) || w < v)) return 0;
    t->kind = K_PORT; t->lo = (uint16_t)v; t->hi = (uint16_t)w; return 1;
  }
  if (KEY("vlan")) {
    t->kind = K_VLAN;
    if (arg == NULL) { t->lo = 0xffff; return 1; }
    if (!parse_num(arg, 4094, 10, &v)) return 0;
    t->lo = (uint16_t)v; return 1;
  }
#undef KEY
  return 0;
}

static int add_rule (int allow, const char *match) {
  if (nrules >= MAX_RULES) { fprintf(stderr, "l2fw: too many rules (max %d)\n", MAX_RULES); return 0; }
  struct rule *r = &rules[nrules];
  memset(r, 0, sizeof *r);
  r->allow = allow;
  snprintf(r->text, sizeof r->text, "%s %s", allow ? "allow" : "drop", match);
  char buf[256];
  size_t mlen = strlen(match);
  if (mlen >= sizeof buf || mlen == 0 || match[0] == '+' || match[mlen - 1] == '+' || strstr(match, "++") != NULL) {
    fprintf(stderr, "l2fw: bad match '%s' (see --help)\n", match);
    return 0;
  }
  strcpy(buf, match);
  char *save = NULL;
  for (char *tok = strtok_r(buf, "+", &save); tok != NULL; tok = strtok_r(NULL, "+", &save)) {
    if (r->nterms >= MAX_TERMS) { fprintf(stderr, "l2fw: too many terms in '%s'\n", match); return 0; }
    if (!parse_term(tok, &r->terms[r->nterms])) { fprintf(stderr, "l2fw: bad match term '%s' in '%s' (see --help)\n", tok, match); return 0; }
    r->nterms++;
  }
  if (r->nterms == 0) { fprintf(stderr, "l2fw: bad match '%s'\n", match); return 0; }
  nrules++;
  return 1;
}

/* What the matcher needs to know about one frame. */
struct frame_info {
  int tagged;
  uint16_t vlan_id;     /* outer tag */
  uint16_t ethertype;   /* inner (after every tag) */
  int ipv;              /* 4, 6 or 0 */
  int have_proto;
  uint8_t proto;
  int have_ports;
  uint16_t sport, dport;
};

static void parse_frame (const uint8_t *f, size_t len, int aux_tagged, uint16_t aux_vid, struct frame_info *fi) {
  memset(fi, 0, sizeof *fi);
  if (aux_tagged) { fi->tagged = 1; fi->vlan_id = aux_vid; }
  if (len < 14) return;
  size_t off = 12;
  uint16_t et = (uint16_t)(f[off] << 8 | f[off + 1]);
  /* Tags still in the frame: the outer one when the kernel did not strip it, inner QinQ tags. */
  while ((et == ETH_P_8021Q || et == ETH_P_8021AD) && off + 6 <= len) {
    if (!fi->tagged) { fi->tagged = 1; fi->vlan_id = (uint16_t)((f[off + 2] << 8 | f[off + 3]) & 0x0fff); }
    off += 4;
    et = (uint16_t)(f[off] << 8 | f[off + 1]);
  }
  fi->ethertype = et;
  off += 2;
  const uint8_t *p = f + off;
  size_t rem = len > off ? len - off : 0;
  size_t l4 = 0;
  if (et == ETH_P_IP && rem >= 20 && (p[0] >> 4) == 4) {
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > rem) return;
    fi->ipv = 4;
    fi->have_proto = 1;
    fi->proto = p[9];
    uint16_t frag = (uint16_t)(p[6] << 8 | p[7]);
    if ((frag & 0x1fff) != 0) return; /* not the first fragment: no L4 header */
    l4 = ihl;
  } else if (et == ETH_P_IPV6 && rem >= 40 && (p[0] >> 4) == 6) {
    fi->ipv = 6;
    fi->have_proto = 1;
    fi->proto = p[6];
    l4 = 40;
  } else {
    return;
  }
  if ((fi->proto == IPPROTO_TCP || fi->proto == IPPROTO_UDP || fi->proto == IPPROTO_SCTP) && rem >= l4 + 4) {
    fi->have_ports = 1;
    fi->sport = (uint16_t)(p[l4] << 8 | p[l4 + 1]);
    fi->dport = (uint16_t)(p[l4 + 2] << 8 | p[l4 + 3]);
  }
}

static int term_matches (const struct term *t, const struct frame_info *fi) {
  switch (t->kind) {
    case K_ANY: return 1;
    case K_UNTAGGED: return !fi->tagged;
    case K_VLAN: return fi->tagged && (t->lo == 0xffff || t->lo == fi->vlan_id);
    case K_ETHERTYPE: return fi->ethertype == t->ethertype;
    case K_IPPROTO:
      if (!fi->have_proto || fi->proto != t->proto) return 0;
      return t->ipv == 0 || t->ipv == fi->ipv;
    case K_PORT:
      if (!fi->have_proto || fi->proto != t->proto || !fi->have_ports) return 0;
      return (fi->sport >= t->lo && fi->sport <= t->hi) || (fi->dport >= t->lo && fi->dport <= t->hi);
  }
  return 0;
}

static struct rule *decide (const struct frame_info *fi) {
  for (int i = 0; i < nrules; i++) {
    int all = 1;
    for (int j = 0; j < rules[i].nterms && all; j++) all = term_matches(&rules[i].terms[j], fi);
    if (all) return &rules[i];
  }
  return &rules[nrules];
}

static void dump_counters (void) {
  printf("{\"forwarded\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"sendErrors\":%" PRIu64 ",\"rules\":[", g_forwarded, g_dropped, g_send_errors);
  for (int i = 0; i <= nrules; i++) {
    printf("%s{\"rule\":\"%s\",\"frames\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", i == 0 ? "" : ",", rules[i].text, rules[i].frames, rules[i].bytes);
  }
  printf("]}\n");
  fflush(stdout);
}

struct side {
  const char *name;
  int ifindex;
  int fd;
};

static int open_side (struct side *s) {
  s->ifindex = (int)if_nametoindex(s->name);
  if (s->ifindex == 0) { fprintf(stderr, "l2fw: no interface %s\n", s->name); return 0; }
  s->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (s->fd < 0) { perror("l2fw: socket(AF_PACKET)"); return 0; }
  int one = 1;
  /* Best effort: older kernels lack it; the sll_pkttype check below covers them. */
  setsockopt(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  if (setsockopt(s->fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) < 0) { perror("l2fw: PACKET_AUXDATA"); return 0; }
  if (setsockopt(s->fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) { perror("l2fw: PACKET_VNET_HDR"); return 0; }
  int buf = 4 << 20;
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = s->ifindex;
  if (bind(s->fd, (struct sockaddr *)&sll, sizeof sll) < 0) { fprintf(stderr, "l2fw: bind %s: %s\n", s->name, strerror(errno)); return 0; }
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = s->ifindex;
  mr.mr_type = PACKET_MR_PROMISC;
  if (setsockopt(s->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) { fprintf(stderr, "l2fw: promiscuous %s: %s\n", s->name, strerror(errno)); return 0; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", s->name);
  if (ioctl(s->fd, SIOCGIFFLAGS, &ifr) < 0) { fprintf(stderr, "l2fw: flags of %s: %s\n", s->name, strerror(errno)); return 0; }
  if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s->fd, SIOCSIFFLAGS, &ifr) < 0) { fprintf(stderr, "l2fw: set %s up: %s\n", s->name, strerror(errno)); return 0; }
  }
  return 1;
}

#define FRAME_MAX (256 * 1024)
static uint8_t frame[FRAME_MAX];

/* Reads one frame from `in`; forwards it to `out` unless a rule drops it. 0 when nothing was queued. */
static int pump (struct side *in, struct side *out) {
  struct virtio_net_hdr vh;
  struct sockaddr_ll from;
  union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(struct tpacket_auxdata))]; } ctl;
  struct iovec iov[2] = { { &vh, sizeof vh }, { frame, sizeof frame } };
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n = recvmsg(in->fd, &msg, MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) fprintf(stderr, "l2fw: recv %s: %s\n", in->name, strerror(errno));
    return 0;
  }
  if (from.sll_pkttype == PACKET_OUTGOING) return 1; /* sent by this machine (or by us): never loop it back */
  if ((size_t)n < sizeof vh || (msg.msg_flags & MSG_TRUNC)) { g_send_errors++; return 1; }
  size_t len = (size_t)n - sizeof vh;

  int tagged = 0;
  uint16_t tci = 0, tpid = ETH_P_8021Q;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
    struct tpacket_auxdata aux;
    memcpy(&aux, CMSG_DATA(c), sizeof aux);
    if ((aux.tp_status & TP_STATUS_VLAN_VALID) || aux.tp_vlan_tci != 0) {
      tagged = 1;
      tci = aux.tp_vlan_tci;
      if (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) tpid = aux.tp_vlan_tpid;
    }
  }

  struct frame_info fi;
  parse_frame(frame, len, tagged, (uint16_t)(tci & 0x0fff), &fi);
  struct rule *r = decide(&fi);
  r->frames++;
  r->bytes += len + (tagged ? 4 : 0);
  if (!r->allow) { g_dropped++; return 1; }
  if (len < 14) { g_send_errors++; return 1; }

  /* Put the stripped tag back between the MAC addresses and the ethertype. */
  uint8_t tag[4] = { (uint8_t)(tpid >> 8), (uint8_t)tpid, (uint8_t)(tci >> 8), (uint8_t)tci };
  struct iovec oiov[4];
  int oc = 0;
  oiov[oc++] = (struct iovec){ &vh, sizeof vh };
  if (tagged) {
    if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) vh.csum_start = (__virtio16)(vh.csum_start + 4);
    if (vh.hdr_len != 0) vh.hdr_len = (__virtio16)(vh.hdr_len + 4);
    oiov[oc++] = (struct iovec){ frame, 12 };
    oiov[oc++] = (struct iovec){ tag, 4 };
    oiov[oc++] = (struct iovec){ frame + 12, len - 12 };
  } else {
    oiov[oc++] = (struct iovec){ frame, len };
  }
  struct sockaddr_ll to;
  memset(&to, 0, sizeof to);
  to.sll_family = AF_PACKET;
  to.sll_ifindex = out->ifindex;
  to.sll_protocol = tagged ? htons(tpid) : htons((uint16_t)(frame[12] << 8 | frame[13]));
  to.sll_halen = ETH_ALEN;
  memcpy(to.sll_addr, frame, ETH_ALEN);
  struct msghdr om;
  memset(&om, 0, sizeof om);
  om.msg_name = &to;
  om.msg_namelen = sizeof to;
  om.msg_iov = oiov;
  om.msg_iovlen = (size_t)oc;
  for (int tries = 0; ; tries++) {
    if (sendmsg(out->fd, &om, 0) >= 0) { g_forwarded++; return 1; }
    if ((errno == ENOBUFS || errno == EAGAIN || errno == EINTR) && tries < 3) { usleep(1000); continue; }
    g_send_errors++;
    if (g_send_errors <= 10) fprintf(stderr, "l2fw: send %s (%zu bytes): %s\n", out->name, len, strerror(errno));
    return 1;
  }
}

int main (int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { fputs(usage, stdout); return 0; }
  }
  if (argc < 3) { fputs(usage, stderr); return 2; }
  struct side sides[2] = { { argv[1], 0, -1 }, { argv[2], 0, -1 } };
  if (strcmp(argv[1], argv[2]) == 0) { fprintf(stderr, "l2fw: the two interfaces must differ\n"); return 2; }
  int default_allow = 1, quiet = 0;
  for (int i = 3; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--allow") == 0 || strcmp(argv[i], "--drop") == 0) {
      if (v == NULL) { fprintf(stderr, "l2fw: %s needs a match\n", argv[i]); return 2; }
      if (!add_rule(argv[i][2] == 'a', v)) return 2;
      i++;
    } else if (strcmp(argv[i], "--default") == 0) {
      if (v == NULL || (strcmp(v, "allow") != 0 && strcmp(v, "drop") != 0)) { fprintf(stderr, "l2fw: --default needs allow or drop\n"); return 2; }
      default_allow = strcmp(v, "allow") == 0;
      i++;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = 1;
    } else {
      fprintf(stderr, "l2fw: unknown argument %s (see --help)\n", argv[i]);
      return 2;
    }
  }
  struct rule *def = &rules[nrules];
  memset(def, 0, sizeof *def);
  def->allow = default_allow;
  snprintf(def->text, sizeof def->text, "default %s", default_allow ? "allow" : "drop");

  for (int i = 0; i < 2; i++) if (!open_side(&sides[i])) return 1;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  if (!quiet) {
    fprintf(stderr, "l2fw: forwarding %s <-> %s, %d rule%s, default %s\n", sides[0].name, sides[1].name, nrules, nrules == 1 ? "" : "s", default_allow ? "allow" : "drop");
  }
  struct pollfd pfd[2] = { { sides[0].fd, POLLIN, 0 }, { sides[1].fd, POLLIN, 0 } };
  while (!g_stop) {
    if (g_dump) { g_dump = 0; dump_counters(); }
    int n = poll(pfd, 2, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("l2fw: poll");
      break;
    }
    for (int i = 0; i < 2; i++) {
      if (pfd[i].revents & POLLNVAL) { fprintf(stderr, "l2fw: socket of %s closed\n", sides[i].name); g_stop = 1; }
      if (pfd[i].revents & POLLERR) {
        /* e.g. ENETDOWN while the link flaps: report, clear, keep going. */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(sides[i].fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0 && !quiet) fprintf(stderr, "l2fw: %s: %s\n", sides[i].name, strerror(err));
      }
      /* Drain a bounded batch per side so neither direction starves the other. */
      if (pfd[i].revents & POLLIN) for (int k = 0; k < 64 && pump(&sides[i], &sides[1 - i]); k++) {}
    }
  }
  dump_counters();
  return 0;
}
