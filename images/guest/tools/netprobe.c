/*
 * netprobe: UDP probes for measuring packet loss and outage (e.g. migration
 * downtime).  Part of the supercloud tiny guest image; static, IPv4 only.
 *
 * Datagram format (16+ bytes): "NPRB" magic, u32 sequence (network order),
 * u64 sender timestamp in ns (sender's monotonic clock, opaque to others),
 * optional padding up to --size.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
  "usage:\n"
  "  netprobe send <ipv4> <port> [--interval-ms 10] [--count 100] [--size 64] [--linger-ms 500]\n"
  "      send sequence-numbered datagrams; if the peer echoes them (netprobe echo),\n"
  "      the replies are counted. Prints one JSON line at the end:\n"
  "      {\"sent\":N,\"received\":echoed,\"lost\":N-echoed,\"maxGapMs\":largest gap between echoes}\n"
  "  netprobe recv <port> [--seconds 10] [--count N]\n"
  "      receive datagrams until the time is up (or N were received), then print\n"
  "      {\"received\":R,\"lost\":L,\"maxGapMs\":G,\"firstSeq\":a,\"lastSeq\":b,\"duplicates\":d}\n"
  "      lost counts sequence numbers missing between the first and last received;\n"
  "      maxGapMs is the longest time between two consecutive arrivals.\n"
  "  netprobe echo <port> [--seconds S]\n"
  "      send every datagram back to its sender (forever unless --seconds).\n"
  "SIGINT/SIGTERM end send/recv early and still print the summary.\n";

#define MAGIC "NPRB"
#define HDR 16
#define MAXSEQ (1u << 24)

static volatile sig_atomic_t g_stop = 0;
static void on_stop (int s) { (void)s; g_stop = 1; }

static uint64_t now_ns (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_u (const char *what, const char *s, unsigned long max, unsigned long *out) {
  char *end = NULL;
  if (s == NULL) { fprintf(stderr, "netprobe: %s needs a value\n", what); return 0; }
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > max) { fprintf(stderr, "netprobe: bad %s: %s\n", what, s); return 0; }
  *out = v;
  return 1;
}

static int bind_udp (unsigned long port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("netprobe: socket"); return -1; }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("netprobe: bind"); close(fd); return -1; }
  return fd;
}

/* Tracks received sequence numbers: counts, duplicates, gaps between arrivals. */
struct tally {
  unsigned char *seen;
  uint64_t received, duplicates;
  uint32_t first, last;
  int any;
  uint64_t last_arrival, max_gap;
};

static void tally_add (struct tally *t, uint32_t seq, uint64_t at) {
  if (seq >= MAXSEQ) return;
  if (t->seen[seq >> 3] & (1u << (seq & 7))) { t->duplicates++; return; }
  t->seen[seq >> 3] |= (unsigned char)(1u << (seq & 7));
  t->received++;
  if (!t->any) { t->first = t->last = seq; t->any = 1; }
  else {
    if (seq < t->first) t->first = seq;
    if (seq > t->last) t->last = seq;
    uint64_t gap = at - t->last_arrival;
    if (gap > t->max_gap) t->max_gap = gap;
  }
  t->last_arrival = at;
}

static int parse_probe (const unsigned char *buf, ssize_t n, uint32_t *seq) {
  if (n < HDR || memcmp(buf, MAGIC, 4) != 0) return 0;
  uint32_t s;
  memcpy(&s, buf + 4, 4);
  *seq = ntohl(s);
  return 1;
}

static int cmd_send (int argc, char **argv) {
  if (argc < 2) { fputs(usage, stderr); return 2; }
  unsigned long port, interval = 10, count = 100, size = 64, linger = 500;
  struct sockaddr_in dst;
  memset(&dst, 0, sizeof dst);
  dst.sin_family = AF_INET;
  if (inet_pton(AF_INET, argv[0], &dst.sin_addr) != 1) { fprintf(stderr, "netprobe: bad IPv4 address %s\n", argv[0]); return 2; }
  if (!parse_u("port", argv[1], 65535, &port)) return 2;
  dst.sin_port = htons((uint16_t)port);
  for (int i = 2; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--interval-ms") == 0) { if (!parse_u(argv[i], v, 3600000, &interval)) return 2; i++; }
    else if (strcmp(argv[i], "--count") == 0) { if (!parse_u(argv[i], v, MAXSEQ - 1, &count)) return 2; i++; }
    else if (strcmp(argv[i], "--size") == 0) { if (!parse_u(argv[i], v, 65000, &size)) return 2; i++; }
    else if (strcmp(argv[i], "--linger-ms") == 0) { if (!parse_u(argv[i], v, 3600000, &linger)) return 2; i++; }
    else { fprintf(stderr, "netprobe: unknown argument %s\n", argv[i]); return 2; }
  }
  if (size < HDR) size = HDR;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) { perror("netprobe: socket"); return 1; }
  struct tally echoes;
  memset(&echoes, 0, sizeof echoes);
  echoes.seen = calloc(MAXSEQ / 8, 1);
  unsigned char *buf = calloc(1, size > 2048 ? size : 2048);
  if (echoes.seen == NULL || buf == NULL) { fprintf(stderr, "netprobe: out of memory\n"); return 1; }
  memcpy(buf, MAGIC, 4);

  uint64_t start = now_ns(), sent = 0, send_errors = 0;
  uint64_t end_at = 0;
  while (!g_stop) {
    uint64_t t = now_ns();
    if (sent < count) {
      uint64_t due = start + sent * interval * 1000000ull;
      if (t >= due) {
        uint32_t s = htonl((uint32_t)sent);
        memcpy(buf + 4, &s, 4);
        memcpy(buf + 8, &t, 8);
        if (sendto(fd, buf, size, 0, (struct sockaddr *)&dst, sizeof dst) < 0) send_errors++;
        sent++;
        if (sent == count) end_at = now_ns() + linger * 1000000ull;
        continue;
      }
    } else if (t >= end_at) break;
    uint64_t next = sent < count ? start + sent * interval * 1000000ull : end_at;
    int wait_ms = next > t ? (int)((next - t + 999999) / 1000000) : 0;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, wait_ms) > 0) {
      ssize_t n;
      uint32_t seq;
      while ((n = recv(fd, buf, 2048, MSG_DONTWAIT)) > 0) {
        if (parse_probe(buf, n, &seq)) tally_add(&echoes, seq, now_ns());
      }
      memcpy(buf, MAGIC, 4);
    }
  }
  printf("{\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"maxGapMs\":%.1f,\"sendErrors\":%" PRIu64 "}\n",
         sent, echoes.received, sent - echoes.received, (double)echoes.max_gap / 1e6, send_errors);
  return 0;
}

static int cmd_recv (int argc, char **argv) {
  if (argc < 1) { fputs(usage, stderr); return 2; }
  unsigned long port, seconds = 10, count = 0;
  if (!parse_u("port", argv[0], 65535, &port)) return 2;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--seconds") == 0) { if (!parse_u(argv[i], v, 86400 * 365, &seconds)) return 2; i++; }
    else if (strcmp(argv[i], "--count") == 0) { if (!parse_u(argv[i], v, MAXSEQ, &count)) return 2; i++; }
    else { fprintf(stderr, "netprobe: unknown argument %s\n", argv[i]); return 2; }
  }
  int fd = bind_udp(port);
  if (fd < 0) return 1;
  struct tally t;
  memset(&t, 0, sizeof t);
  t.seen = calloc(MAXSEQ / 8, 1);
  if (t.seen == NULL) { fprintf(stderr, "netprobe: out of memory\n"); return 1; }
  unsigned char buf[65536];
  uint64_t end_at = now_ns() + (uint64_t)seconds * 1000000000ull;
  while (!g_stop) {
    uint64_t now = now_ns();
    if (now >= end_at) break;
    if (count > 0 && t.received >= count) break;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int wait_ms = (int)((end_at - now) / 1000000ull) + 1;
    if (wait_ms > 200) wait_ms = 200;
    if (poll(&pfd, 1, wait_ms) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    uint32_t seq;
    if (n > 0 && parse_probe(buf, n, &seq)) tally_add(&t, seq, now_ns());
  }
  uint64_t span = t.any ? (uint64_t)(t.last - t.first) + 1 : 0;
  printf("{\"received\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"maxGapMs\":%.1f,\"firstSeq\":%ld,\"lastSeq\":%ld,\"duplicates\":%" PRIu64 "}\n",
         t.received, span - t.received, (double)t.max_gap / 1e6,
         t.any ? (long)t.first : -1L, t.any ? (long)t.last : -1L, t.duplicates);
  return 0;
}

static int cmd_echo (int argc, char **argv) {
  if (argc < 1) { fputs(usage, stderr); return 2; }
  unsigned long port, seconds = 0;
  if (!parse_u("port", argv[0], 65535, &port)) return 2;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--seconds") == 0) { if (!parse_u(argv[i], v, 86400 * 365, &seconds)) return 2; i++; }
    else { fprintf(stderr, "netprobe: unknown argument %s\n", argv[i]); return 2; }
  }
  int fd = bind_udp(port);
  if (fd < 0) return 1;
  unsigned char buf[65536];
  uint64_t end_at = seconds > 0 ? now_ns() + (uint64_t)seconds * 1000000000ull : 0;
  uint64_t echoed = 0;
  while (!g_stop) {
    if (end_at != 0 && now_ns() >= end_at) break;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, 200) <= 0) continue;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) continue;
    if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl) >= 0) echoed++;
  }
  printf("{\"echoed\":%" PRIu64 "}\n", echoed);
  return 0;
}

int main (int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "send") == 0) return cmd_send(argc - 2, argv + 2);
  if (strcmp(argv[1], "recv") == 0) return cmd_recv(argc - 2, argv + 2);
  if (strcmp(argv[1], "echo") == 0) return cmd_echo(argc - 2, argv + 2);
  fprintf(stderr, "netprobe: unknown command %s\n%s", argv[1], usage);
  return 2;
}
