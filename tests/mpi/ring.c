/*
 * ring.c - self-verifying MPI message-integrity test program.
 *
 * Runs rounds of traffic for a given wall-clock duration.  In round `seq`:
 *
 *   1. ring:      every rank sends one message to (rank+1)%P and receives one
 *                 from (rank-1+P)%P.  The message carries a header
 *                 (sender, destination, seq) and a payload that is a
 *                 deterministic pattern of (sender, seq).  All ring messages
 *                 use the same tag, so MPI matching cannot hide reordering:
 *                 the receiver requires exactly seq == current round, which
 *                 detects lost, duplicated and reordered messages, and checks
 *                 source, header and every payload byte.
 *   2. allreduce: MPI_SUM of (received seq, hash of received payload); every
 *                 rank checks it against the value computed locally
 *                 (P*seq, sum over all senders of the payload hash).
 *   3. bcast:     from rotating root seq%P, a pattern of (root, seq) that
 *                 every rank verifies.
 *
 * Whether another round is run is decided by rank 0 from its clock and
 * broadcast, so all ranks run the same number of rounds.  At the end error
 * counts are summed and round counts compared across ranks.
 *
 * Exit status (identical on all ranks): 0 success, 1 verification failure,
 * 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING_TAG 42
#define MAX_SIZE (64L * 1024 * 1024)
#define MAX_REPORTED_ERRORS 20

/* pattern "salts" so ring and bcast payloads differ */
#define SALT_RING 0x52494e47ULL  /* "RING" */
#define SALT_BCAST 0x42434153ULL /* "BCAS" */

struct options {
    double seconds;
    long size; /* payload bytes */
    long sleep_ms;
};

struct header {
    int32_t sender;
    int32_t dest;
    uint64_t seq;
};

/* Per-rank error bookkeeping. */
struct errors {
    long long count;
    int rank;
};

/* Count an error; print the first MAX_REPORTED_ERRORS of them to stderr. */
static void report(struct errors *e, unsigned long long seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct errors *e, unsigned long long seq, const char *fmt, ...)
{
    e->count++;
    if (e->count > MAX_REPORTED_ERRORS)
        return;
    /* format into one buffer so lines from different ranks do not interleave */
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ring: rank %d round %llu: ERROR: %s\n", e->rank, seq, msg);
    if (e->count == MAX_REPORTED_ERRORS)
        fprintf(stderr, "ring: rank %d: further errors not shown\n", e->rank);
    fflush(stderr);
}

/* ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Fill buf[0..len) with the deterministic pattern for (salt, sender, seq). */
static void fill_pattern(unsigned char *buf, size_t len, uint64_t salt, int sender, uint64_t seq)
{
    uint64_t seed = splitmix64(salt ^ ((uint64_t)(uint32_t)sender << 40) ^ splitmix64(seq));
    size_t i = 0;
    for (uint64_t w = 0; i < len; w++) {
        uint64_t v = splitmix64(seed + w);
        size_t n = len - i < sizeof v ? len - i : sizeof v;
        memcpy(buf + i, &v, n);
        i += n;
    }
}

/* FNV-1a hash of a byte buffer (used for the allreduce cross-check). */
static uint64_t hash_bytes(const unsigned char *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) { /* word-at-a-time for speed */
        uint64_t v;
        memcpy(&v, buf + i, 8);
        h ^= v;
        h *= 0x100000001b3ULL;
    }
    for (; i < len; i++) {
        h ^= buf[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Sleep for ms milliseconds, resuming after signal interruptions. */
static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec req = { ms / 1000, (ms % 1000) * 1000000L }, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "ring: out of memory (%zu bytes)\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

/* ------------------------------------------------------------------ */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--seconds S] [--size BYTES] [--sleep-ms MS]\n"
            "  --seconds S     run for S seconds of wall time (default 10)\n"
            "  --size BYTES    message payload size (default 4096, max %ld)\n"
            "  --sleep-ms MS   pause MS milliseconds per round (default 0)\n",
            prog, MAX_SIZE);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o, int loud)
{
    enum { OPT_SECONDS = 1, OPT_SIZE, OPT_SLEEP };
    static const struct option longopts[] = {
        { "seconds", required_argument, NULL, OPT_SECONDS },
        { "size", required_argument, NULL, OPT_SIZE },
        { "sleep-ms", required_argument, NULL, OPT_SLEEP },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct options){ .seconds = 10.0, .size = 4096, .sleep_ms = 0 };
    opterr = loud; /* only rank 0 lets getopt complain */
    int c, li = 0;
    while ((c = getopt_long(argc, argv, "", longopts, &li)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_SECONDS: {
            char *end;
            errno = 0;
            o->seconds = strtod(optarg, &end);
            bad = errno || end == optarg || *end || !(o->seconds >= 0.0 && o->seconds <= 1e9);
            break;
        }
        case OPT_SIZE:
            bad = parse_long(optarg, 0, MAX_SIZE, &o->size);
            break;
        case OPT_SLEEP:
            bad = parse_long(optarg, 0, 3600L * 1000, &o->sleep_ms);
            break;
        default:
            return -1; /* getopt already reported it */
        }
        if (bad) {
            if (loud)
                fprintf(stderr, "%s: invalid value '%s' for --%s\n", argv[0], optarg,
                        longopts[li].name);
            return -1;
        }
    }
    if (optind < argc) {
        if (loud)
            fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    int rank, nprocs;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nprocs);

    struct options opt;
    if (parse_options(argc, argv, &opt, rank == 0) != 0) {
        if (rank == 0)
            usage(argv[0]);
        MPI_Finalize();
        return 2;
    }

    char host[256];
    if (gethostname(host, sizeof host) != 0)
        strcpy(host, "unknown");
    host[sizeof host - 1] = '\0';
    if (rank == 0)
        printf("ring: %d ranks, size %ld, seconds %g, sleep-ms %ld\n", nprocs, opt.size,
               opt.seconds, opt.sleep_ms);
    printf("ring: rank %d host %s\n", rank, host);
    fflush(stdout);

    const int right = (rank + 1) % nprocs;
    const int left = (rank - 1 + nprocs) % nprocs;
    const size_t psize = (size_t)opt.size;
    const int msg_len = (int)(sizeof(struct header) + psize);

    unsigned char *sendbuf = xmalloc(msg_len);
    unsigned char *recvbuf = xmalloc(msg_len);
    unsigned char *bcastbuf = xmalloc(psize);
    unsigned char *expect = xmalloc(psize);

    struct errors err = { .count = 0, .rank = rank };
    const double t0 = MPI_Wtime();
    double last_progress = t0;
    uint64_t seq;

    for (seq = 0;; seq++) {
        /* rank 0 decides whether to run this round; at least one round */
        int more = 0;
        if (rank == 0)
            more = seq == 0 || MPI_Wtime() - t0 < opt.seconds;
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!more)
            break;

        /* --- 1. ring exchange --- */
        struct header h = { .sender = rank, .dest = right, .seq = seq };
        memcpy(sendbuf, &h, sizeof h);
        fill_pattern(sendbuf + sizeof h, psize, SALT_RING, rank, seq);
        memset(recvbuf, 0xee, msg_len); /* poison: stale data cannot pass */
        MPI_Status st;
        MPI_Sendrecv(sendbuf, msg_len, MPI_BYTE, right, RING_TAG,
                     recvbuf, msg_len, MPI_BYTE, MPI_ANY_SOURCE, RING_TAG,
                     MPI_COMM_WORLD, &st);
        int count;
        MPI_Get_count(&st, MPI_BYTE, &count);
        struct header rh;
        memcpy(&rh, recvbuf, sizeof rh);
        if (st.MPI_SOURCE != left)
            report(&err, seq, "message from rank %d, expected %d", st.MPI_SOURCE, left);
        if (count != msg_len)
            report(&err, seq, "message length %d, expected %d", count, msg_len);
        if (rh.sender != left || rh.dest != rank)
            report(&err, seq, "header sender=%d dest=%d, expected %d -> %d", (int)rh.sender,
                   (int)rh.dest, left, rank);
        if (rh.seq != seq)
            report(&err, seq, "sequence %llu, expected %llu (%s)", (unsigned long long)rh.seq,
                   (unsigned long long)seq,
                   rh.seq < seq ? "duplicate/stale" : "lost/reordered");
        fill_pattern(expect, psize, SALT_RING, left, seq);
        if (memcmp(recvbuf + sizeof rh, expect, psize) != 0)
            report(&err, seq, "ring payload from rank %d corrupted", left);

        /* --- 2. allreduce cross-check of seq and payload hashes --- */
        uint64_t loc[2] = { rh.seq, hash_bytes(recvbuf + sizeof rh, psize) }, glob[2];
        MPI_Allreduce(loc, glob, 2, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        uint64_t want_hash = 0; /* unsigned sums wrap identically everywhere */
        for (int s = 0; s < nprocs; s++) {
            if (s == left) {
                want_hash += hash_bytes(expect, psize); /* already generated */
            } else {
                fill_pattern(bcastbuf, psize, SALT_RING, s, seq);
                want_hash += hash_bytes(bcastbuf, psize);
            }
        }
        if (glob[0] != (uint64_t)nprocs * seq)
            report(&err, seq, "allreduce seq sum %llu, expected %llu",
                   (unsigned long long)glob[0], (unsigned long long)((uint64_t)nprocs * seq));
        if (glob[1] != want_hash)
            report(&err, seq, "allreduce payload hash sum mismatch");

        /* --- 3. bcast from a rotating root --- */
        const int root = (int)(seq % (uint64_t)nprocs);
        if (rank == root)
            fill_pattern(bcastbuf, psize, SALT_BCAST, root, seq);
        else
            memset(bcastbuf, 0xee, psize);
        MPI_Bcast(bcastbuf, (int)psize, MPI_BYTE, root, MPI_COMM_WORLD);
        fill_pattern(expect, psize, SALT_BCAST, root, seq);
        if (memcmp(bcastbuf, expect, psize) != 0)
            report(&err, seq, "bcast payload from root %d corrupted", root);

        sleep_ms(opt.sleep_ms);

        if (rank == 0) {
            double now = MPI_Wtime();
            if (now - last_progress >= 1.0) {
                last_progress = now;
                printf("ring: round %llu elapsed=%.2fs\n", (unsigned long long)(seq + 1), now - t0);
                fflush(stdout);
            }
        }
    }

    /* Global verdict: sum of errors, and all ranks must have done the same
     * number of rounds. */
    long long all_errors;
    MPI_Allreduce(&err.count, &all_errors, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    unsigned long long rounds = seq, rmin, rmax;
    MPI_Allreduce(&rounds, &rmin, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&rounds, &rmax, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    if (rmin != rmax)
        all_errors++;
    int success = all_errors == 0;

    if (rank == 0) {
        printf("ranks=%d\n", nprocs);
        printf("rounds=%llu\n", rounds);
        printf("errors=%lld\n", all_errors);
        printf("elapsed=%.2fs\n", MPI_Wtime() - t0);
        printf("%s\n", success ? "VERIFICATION SUCCESSFUL" : "VERIFICATION FAILED");
        fflush(stdout);
    }

    free(sendbuf);
    free(recvbuf);
    free(bcastbuf);
    free(expect);
    MPI_Finalize();
    return success ? 0 : 1;
}
