/*
 * memload: allocate a working set, fill it with a verifiable pattern, and keep
 * it busy.  Part of the supercloud tiny guest image (static, no dependencies).
 *
 * Every 8-byte word of page p written in generation g holds
 *   pattern(p, g, i) = mix64(p * 2^20 + g) + i * 0x9E3779B97F4A7C15
 * so the expected contents are known at any time from the per-page generation.
 * The checksum is FNV-style over all words actually read back from memory; a
 * fresh fill (generation 0) of the same --mb gives the same checksum on any
 * machine, so tests can compare it with a value computed elsewhere.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / 8u)

static const char usage[] =
  "usage: memload [--mb N] [--checksum] [--seconds S] [--write-mbps R] [--verify] [--hold]\n"
  "\n"
  "Allocates N MiB (default 64), writes every page with a pattern derived from\n"
  "the page index and a generation number, then:\n"
  "  --checksum       print 'checksum <16 hex>' of the freshly filled working set and exit\n"
  "                   (deterministic: same --mb gives the same checksum everywhere)\n"
  "  --seconds S      keep rewriting pages (generation+1 per page) for S seconds,\n"
  "                   printing 'memload t=<s> ops/s=<pages written/s> mbps=<MiB/s> gen=<g>'\n"
  "                   once a second; 0 = run until killed\n"
  "  --write-mbps R   limit rewriting to R MiB/s (default: unlimited)\n"
  "  --verify         check every page against its expected pattern after the fill\n"
  "                   and at the end; prints 'verify ok' or 'verify FAILED page=<p> ...'\n"
  "                   and exits 1 on a mismatch\n"
  "  --hold           after the fill, print the checksum and wait; on SIGUSR1 verify\n"
  "                   and print the checksum again (compare before/after a migration);\n"
  "                   SIGTERM/SIGINT end it\n"
  "Without --seconds or --hold it fills once, prints 'filled <N> MiB checksum <hex>', exits.\n"
  "Output lines are flushed immediately.\n";

static volatile sig_atomic_t g_usr1 = 0, g_stop = 0;
static void on_usr1 (int s) { (void)s; g_usr1 = 1; }
static void on_stop (int s) { (void)s; g_stop = 1; }

static uint64_t mix64 (uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double now_s (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_page (uint64_t *mem, size_t p, uint32_t gen) {
  uint64_t *w = mem + p * WORDS;
  uint64_t v = mix64(((uint64_t)p << 20) + gen);
  for (unsigned i = 0; i < WORDS; i++) { w[i] = v; v += 0x9E3779B97F4A7C15ull; }
}

/* returns the index of the first bad word in the page, or -1 */
static long check_page (const uint64_t *mem, size_t p, uint32_t gen, uint64_t *got, uint64_t *want) {
  const uint64_t *w = mem + p * WORDS;
  uint64_t v = mix64(((uint64_t)p << 20) + gen);
  for (unsigned i = 0; i < WORDS; i++) {
    if (w[i] != v) { *got = w[i]; *want = v; return (long)i; }
    v += 0x9E3779B97F4A7C15ull;
  }
  return -1;
}

static uint64_t checksum (const uint64_t *mem, size_t pages) {
  uint64_t h = 0xCBF29CE484222325ull;
  size_t n = pages * WORDS;
  for (size_t i = 0; i < n; i++) { h ^= mem[i]; h *= 0x100000001B3ull; }
  return h;
}

static int verify (const uint64_t *mem, const uint32_t *gen, size_t pages) {
  for (size_t p = 0; p < pages; p++) {
    uint64_t got = 0, want = 0;
    long i = check_page(mem, p, gen[p], &got, &want);
    if (i >= 0) {
      printf("verify FAILED page=%zu word=%ld gen=%u got=%016" PRIx64 " want=%016" PRIx64 "\n",
             p, i, gen[p], got, want);
      return 0;
    }
  }
  printf("verify ok pages=%zu\n", pages);
  return 1;
}

static int parse_num (const char *opt, const char *s, double *out) {
  char *end = NULL;
  if (s == NULL) { fprintf(stderr, "memload: %s needs a value\n", opt); return 0; }
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    fprintf(stderr, "memload: bad value for %s: %s\n", opt, s);
    return 0;
  }
  *out = v;
  return 1;
}

int main (int argc, char **argv) {
  double mb = 64, seconds = -1, mbps = 0;
  int want_checksum = 0, want_verify = 0, hold = 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { fputs(usage, stdout); return 0; }
    else if (strcmp(a, "--mb") == 0) { if (!parse_num(a, i + 1 < argc ? argv[++i] : NULL, &mb)) return 2; }
    else if (strcmp(a, "--seconds") == 0) { if (!parse_num(a, i + 1 < argc ? argv[++i] : NULL, &seconds)) return 2; }
    else if (strcmp(a, "--write-mbps") == 0) { if (!parse_num(a, i + 1 < argc ? argv[++i] : NULL, &mbps)) return 2; }
    else if (strcmp(a, "--checksum") == 0) want_checksum = 1;
    else if (strcmp(a, "--verify") == 0) want_verify = 1;
    else if (strcmp(a, "--hold") == 0) hold = 1;
    else { fprintf(stderr, "memload: unknown argument %s\n%s", a, usage); return 2; }
  }
  size_t pages = (size_t)(mb * 1024.0 * 1024.0 / PAGE);
  if (pages == 0) { fprintf(stderr, "memload: --mb must be > 0\n"); return 2; }

  uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint32_t *gen = calloc(pages, sizeof *gen);
  if (mem == MAP_FAILED || gen == NULL) { fprintf(stderr, "memload: cannot allocate %zu pages: %s\n", pages, strerror(errno)); return 1; }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = on_stop; sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);

  for (size_t p = 0; p < pages; p++) write_page(mem, p, 0);
  int ok = 1;
  if (want_verify) ok = verify(mem, gen, pages);

  if (want_checksum) {
    printf("checksum %016" PRIx64 "\n", checksum(mem, pages));
    return ok ? 0 : 1;
  }
  if (hold) {
    printf("holding %zu pages checksum %016" PRIx64 "\n", pages, checksum(mem, pages));
    while (!g_stop) {
      if (g_usr1) {
        g_usr1 = 0;
        ok = verify(mem, gen, pages) && ok;
        printf("checksum %016" PRIx64 "\n", checksum(mem, pages));
      }
      pause();
    }
    return ok ? 0 : 1;
  }
  if (seconds < 0) {
    printf("filled %zu MiB checksum %016" PRIx64 "\n", pages * PAGE / (1024 * 1024), checksum(mem, pages));
    return ok ? 0 : 1;
  }

  /* rewrite loop */
  double start = now_s(), last = start;
  uint64_t written = 0, since = 0;
  size_t p = 0;
  uint32_t cur_gen = 1;
  const size_t batch = 16;
  while (!g_stop) {
    double t = now_s();
    if (seconds > 0 && t - start >= seconds) break;
    if (g_usr1) { g_usr1 = 0; ok = verify(mem, gen, pages) && ok; }
    if (mbps > 0) {
      double allowed = (t - start) * mbps * 1024.0 * 1024.0 / PAGE;
      if ((double)written >= allowed) { usleep(2000); goto report; }
    }
    for (size_t k = 0; k < batch; k++) {
      gen[p]++;
      write_page(mem, p, gen[p]);
      if (++p == pages) { p = 0; cur_gen++; }
    }
    written += batch; since += batch;
report:
    t = now_s();
    if (t - last >= 1.0) {
      double rate = (double)since / (t - last);
      printf("memload t=%.0f ops/s=%.0f mbps=%.1f gen=%u\n", t - start, rate, rate * PAGE / (1024.0 * 1024.0), cur_gen);
      since = 0; last = t;
    }
  }
  if (want_verify) ok = verify(mem, gen, pages) && ok;
  printf("done pages_written=%" PRIu64 " checksum %016" PRIx64 "\n", written, checksum(mem, pages));
  return ok ? 0 : 1;
}
