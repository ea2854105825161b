/*
 * cg.c - self-verifying MPI conjugate-gradient test program.
 *
 * Solves A x = b where A is the 7-point finite-difference Laplacian on an
 * N x N x N grid with homogeneous Dirichlet boundaries (diagonal 6,
 * off-diagonals -1; symmetric positive definite).  The exact discrete
 * solution x* is a deterministic pseudo-random function of the global grid
 * index and b = A x* is computed analytically from it, so the result can be
 * checked independently of the decomposition.
 *
 * The grid is split into z-slabs across ranks.  Each rank stores its slab
 * plus one ghost plane below and above; ghost planes are filled with
 * MPI_Sendrecv before every matrix-vector product (ghosts at the physical
 * boundary stay zero, which implements the Dirichlet condition).  Dot
 * products use MPI_Allreduce.
 *
 * Verification (all ranks agree via MPI_Allreduce):
 *   - true residual ||b - A x|| / ||b|| recomputed after each solve < 10*tol
 *   - relative error ||x - x*|| / ||x*|| <= 10 * kappa(A) * tol, where kappa
 *     is the exact condition number of the discrete operator (this is the
 *     standard bound  ||e||/||x*|| <= kappa ||r||/||b||)
 *   - optional "ballast" memory (--mem-mb) is filled with a rank-specific
 *     pattern, checksummed at start and fully re-verified at the end.
 *
 * With --min-seconds the solve is repeated from scratch (x = 0) until the
 * requested wall time has passed; every solve is verified.
 *
 * Exit status (identical on all ranks): 0 success, 1 verification failure,
 * 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_N 4096
#define MAX_MEM_MB (1024 * 1024)

struct options {
    int n;              /* grid edge */
    int iters;          /* max CG iterations per solve */
    double tol;         /* relative residual target */
    long mem_mb;        /* ballast MiB per rank */
    double min_seconds; /* repeat solves until this much wall time passed */
    long sleep_ms;      /* sleep after each CG iteration */
    int verbose;
};

/* Slab decomposition of the global grid along z. */
struct grid {
    int nx, ny, nz;  /* global sizes */
    int z0, nzl;     /* first global plane owned, number of planes owned */
    size_t plane;    /* nx*ny */
    size_t nloc;     /* nzl*plane: owned points */
    int up, down;    /* neighbour ranks (z+1 / z-1) or MPI_PROC_NULL */
};

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Exact solution: deterministic value in [0.5, 1.5) per global point.
 * Pseudo-random (not smooth) so that b excites all eigenmodes and CG has
 * real work to do. */
static double xstar(const struct grid *g, int i, int j, int k)
{
    uint64_t gi = (uint64_t)i + (uint64_t)g->nx * ((uint64_t)j + (uint64_t)g->ny * (uint64_t)k);
    return 0.5 + (double)(splitmix64(gi) >> 11) * 0x1.0p-53;
}

/* (A x*)(i,j,k) computed directly from the exact solution. */
static double rhs(const struct grid *g, int i, int j, int k)
{
    double v = 6.0 * xstar(g, i, j, k);
    if (i > 0) v -= xstar(g, i - 1, j, k);
    if (i < g->nx - 1) v -= xstar(g, i + 1, j, k);
    if (j > 0) v -= xstar(g, i, j - 1, k);
    if (j < g->ny - 1) v -= xstar(g, i, j + 1, k);
    if (k > 0) v -= xstar(g, i, j, k - 1);
    if (k < g->nz - 1) v -= xstar(g, i, j, k + 1);
    return v;
}

/* Condition number of the 7-point Dirichlet Laplacian on nx*ny*nz. */
static double laplacian_kappa(const struct grid *g)
{
    const int dims[3] = { g->nx, g->ny, g->nz };
    double lmin = 0.0, lmax = 0.0;
    for (int d = 0; d < 3; d++) {
        double c = cos(M_PI / (dims[d] + 1));
        lmin += 2.0 - 2.0 * c;
        lmax += 2.0 + 2.0 * c;
    }
    return lmax / lmin;
}

/* Sleep for ms milliseconds, resuming after signal interruptions (e.g. a
 * checkpoint/restart signal must not shorten or abort the sleep). */
static void sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec req = { ms / 1000, (ms % 1000) * 1000000L }, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

static double global_sum(double v)
{
    double s;
    MPI_Allreduce(&v, &s, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

/* ------------------------------------------------------------------ */
/* distributed vectors: (nzl + 2) planes, plane 0 and nzl+1 are ghosts   */
/* ------------------------------------------------------------------ */

static double *vec_alloc(const struct grid *g)
{
    double *v = calloc(((size_t)g->nzl + 2) * g->plane, sizeof *v);
    if (!v) {
        fprintf(stderr, "cg: out of memory allocating vector\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return v;
}

/* Pointer to the first owned point (skips the lower ghost plane). */
static inline double *own(const struct grid *g, double *v)
{
    return v + g->plane;
}

static void halo_exchange(const struct grid *g, double *v)
{
    const int cnt = (int)g->plane;
    double *first = v + g->plane;                       /* lowest owned plane */
    double *last = v + (size_t)g->nzl * g->plane;       /* highest owned plane */
    double *ghost_lo = v;
    double *ghost_hi = v + ((size_t)g->nzl + 1) * g->plane;

    if (g->nzl == 0)
        return; /* inactive rank (more ranks than planes) */
    /* upward: send my top plane up, receive lower ghost from below */
    MPI_Sendrecv(last, cnt, MPI_DOUBLE, g->up, 10,
                 ghost_lo, cnt, MPI_DOUBLE, g->down, 10,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    /* downward: send my bottom plane down, receive upper ghost from above */
    MPI_Sendrecv(first, cnt, MPI_DOUBLE, g->down, 11,
                 ghost_hi, cnt, MPI_DOUBLE, g->up, 11,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* y = A u on owned points; u must have valid ghost planes. */
static void apply_A(const struct grid *g, const double *u, double *y)
{
    const int nx = g->nx, ny = g->ny;
    const size_t pl = g->plane;
    for (int k = 1; k <= g->nzl; k++) {
        for (int j = 0; j < ny; j++) {
            size_t idx = (size_t)k * pl + (size_t)j * nx;
            for (int i = 0; i < nx; i++, idx++) {
                double v = 6.0 * u[idx] - u[idx - pl] - u[idx + pl];
                if (i > 0) v -= u[idx - 1];
                if (i < nx - 1) v -= u[idx + 1];
                if (j > 0) v -= u[idx - nx];
                if (j < ny - 1) v -= u[idx + nx];
                y[idx - pl] = v;
            }
        }
    }
}

static double dot(const struct grid *g, const double *a, const double *b)
{
    double s = 0.0;
    for (size_t i = 0; i < g->nloc; i++)
        s += a[i] * b[i];
    return global_sum(s);
}

/* ------------------------------------------------------------------ */
/* ballast memory                                                       */
/* ------------------------------------------------------------------ */

static uint64_t ballast_word(int rank, size_t i)
{
    return splitmix64(((uint64_t)rank << 48) ^ (uint64_t)i ^ 0x5a5a000000000000ULL);
}

static uint64_t ballast_checksum(const uint64_t *b, size_t nwords)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a over 64-bit words */
    for (size_t i = 0; i < nwords; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* CG solve                                                             */
/* ------------------------------------------------------------------ */

struct workspace {
    double *x, *p; /* with ghost planes (used in apply_A) */
    double *r, *q, *b;
};

struct solve_result {
    int iters;
    double relres_cg;   /* recurrence residual at exit */
    double relres_true; /* recomputed ||b - A x|| / ||b|| */
    double relerr;      /* ||x - x*|| / ||x*|| */
    double maxerr;      /* max |x - x*| */
    double xsum;        /* sum of x */
};

static void cg_solve(const struct grid *g, const struct options *o, struct workspace *w,
                     double bnorm, double xsnorm, int rank, int solve_no, double t_start,
                     struct solve_result *res)
{
    double *x = own(g, w->x), *p = own(g, w->p);
    double *r = w->r, *q = w->q, *b = w->b;
    const size_t n = g->nloc;
    double last_print = MPI_Wtime();

    /* start from scratch: x = 0, r = p = b */
    memset(w->x, 0, ((size_t)g->nzl + 2) * g->plane * sizeof(double));
    memcpy(r, b, n * sizeof(double));
    memcpy(p, b, n * sizeof(double));
    double rr = dot(g, r, r);
    int it = 0;

    while (it < o->iters && sqrt(rr) / bnorm > o->tol) {
        halo_exchange(g, w->p);
        apply_A(g, w->p, q);
        double alpha = rr / dot(g, p, q);
        for (size_t i = 0; i < n; i++) {
            x[i] += alpha * p[i];
            r[i] -= alpha * q[i];
        }
        double rr_new = dot(g, r, r);
        double beta = rr_new / rr;
        for (size_t i = 0; i < n; i++)
            p[i] = r[i] + beta * p[i];
        rr = rr_new;
        it++;

        sleep_ms(o->sleep_ms);
        /* intra-solve progress for long (slow) solves; rank 0 only */
        if (rank == 0 && MPI_Wtime() - last_print >= 1.0) {
            last_print = MPI_Wtime();
            printf("cg: solve %d iter %d relres=%.3e elapsed=%.2fs\n", solve_no, it,
                   sqrt(rr) / bnorm, last_print - t_start);
            fflush(stdout);
        }
    }
    res->iters = it;
    res->relres_cg = sqrt(rr) / bnorm;

    /* true residual r = b - A x */
    halo_exchange(g, w->x);
    apply_A(g, w->x, q);
    double rloc = 0.0, eloc = 0.0, emax = 0.0, sloc = 0.0;
    size_t idx = 0;
    for (int k = 0; k < g->nzl; k++)
        for (int j = 0; j < g->ny; j++)
            for (int i = 0; i < g->nx; i++, idx++) {
                double d = b[idx] - q[idx];
                double e = x[idx] - xstar(g, i, j, g->z0 + k);
                rloc += d * d;
                eloc += e * e;
                if (fabs(e) > emax) emax = fabs(e);
                sloc += x[idx];
            }
    double loc[3] = { rloc, eloc, sloc }, glob[3];
    MPI_Allreduce(loc, glob, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&emax, &res->maxerr, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    res->relres_true = sqrt(glob[0]) / bnorm;
    res->relerr = sqrt(glob[1]) / xsnorm;
    res->xsum = glob[2];
}

/* ------------------------------------------------------------------ */
/* option parsing                                                       */
/* ------------------------------------------------------------------ */

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--n N] [--iters K] [--tol T] [--mem-mb M] [--min-seconds S]\n"
            "          [--sleep-ms MS] [--verbose]\n"
            "  --n N            grid edge, grid is N^3 (default 32, 1..%d)\n"
            "  --iters K        max CG iterations per solve (default 200)\n"
            "  --tol T          relative residual tolerance (default 1e-8)\n"
            "  --mem-mb M       extra verified ballast memory per rank in MiB (default 0)\n"
            "  --min-seconds S  repeat solves until S seconds have elapsed (default 0)\n"
            "  --sleep-ms MS    sleep MS milliseconds after each CG iteration (default 0)\n"
            "  --verbose        per-rank start line includes rank count\n",
            prog, MAX_N);
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

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* Returns 0 on success, -1 on a usage error (message printed if loud). */
static int parse_options(int argc, char **argv, struct options *o, int loud)
{
    enum { OPT_N = 1, OPT_ITERS, OPT_TOL, OPT_MEM, OPT_MINSEC, OPT_SLEEP, OPT_VERBOSE };
    static const struct option longopts[] = {
        { "n", required_argument, NULL, OPT_N },
        { "iters", required_argument, NULL, OPT_ITERS },
        { "tol", required_argument, NULL, OPT_TOL },
        { "mem-mb", required_argument, NULL, OPT_MEM },
        { "min-seconds", required_argument, NULL, OPT_MINSEC },
        { "sleep-ms", required_argument, NULL, OPT_SLEEP },
        { "verbose", no_argument, NULL, OPT_VERBOSE },
        { NULL, 0, NULL, 0 },
    };
    *o = (struct options){ .n = 32, .iters = 200, .tol = 1e-8 };
    opterr = loud; /* only rank 0 lets getopt complain */
    int c, li = 0;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, &li)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_N:
            bad = parse_long(optarg, 1, MAX_N, &v);
            o->n = (int)v;
            break;
        case OPT_ITERS:
            bad = parse_long(optarg, 1, INT_MAX, &v);
            o->iters = (int)v;
            break;
        case OPT_TOL:
            bad = parse_double(optarg, 1e-300, 1.0, &o->tol);
            break;
        case OPT_MEM:
            bad = parse_long(optarg, 0, MAX_MEM_MB, &o->mem_mb);
            break;
        case OPT_MINSEC:
            bad = parse_double(optarg, 0.0, 1e9, &o->min_seconds);
            break;
        case OPT_SLEEP:
            bad = parse_long(optarg, 0, 3600L * 1000, &o->sleep_ms);
            break;
        case OPT_VERBOSE:
            o->verbose = 1;
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

    /* Every rank parses the same argv, so all reach the same verdict. */
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

    if (opt.verbose) {
        printf("cg: rank %d of %d on host %s\n", rank, nprocs, host);
    } else {
        if (rank == 0)
            printf("cg: %d ranks, grid %d^3, mem-mb %ld\n", nprocs, opt.n, opt.mem_mb);
        printf("cg: rank %d host %s\n", rank, host);
    }
    fflush(stdout);

    /* z-slab decomposition; if there are more ranks than planes the
     * trailing ranks own nothing and only take part in collectives. */
    struct grid g = { .nx = opt.n, .ny = opt.n, .nz = opt.n };
    g.plane = (size_t)g.nx * g.ny;
    {
        int base = g.nz / nprocs, extra = g.nz % nprocs;
        g.nzl = base + (rank < extra ? 1 : 0);
        g.z0 = rank * base + (rank < extra ? rank : extra);
        g.nloc = (size_t)g.nzl * g.plane;
        int last_active = (nprocs < g.nz ? nprocs : g.nz) - 1;
        g.down = (rank > 0 && rank <= last_active) ? rank - 1 : MPI_PROC_NULL;
        g.up = (rank < last_active) ? rank + 1 : MPI_PROC_NULL;
    }

    /* Ballast: allocate, fill (touching every page) and checksum. */
    size_t bwords = (size_t)opt.mem_mb * (1024 * 1024 / sizeof(uint64_t));
    uint64_t *ballast = NULL, ballast_sum0 = 0;
    int alloc_ok = 1, all_alloc_ok;
    if (bwords) {
        ballast = malloc(bwords * sizeof *ballast);
        if (!ballast) {
            fprintf(stderr, "cg: rank %d: cannot allocate %ld MiB ballast\n", rank, opt.mem_mb);
            alloc_ok = 0;
        } else {
            for (size_t i = 0; i < bwords; i++)
                ballast[i] = ballast_word(rank, i);
            ballast_sum0 = ballast_checksum(ballast, bwords);
        }
    }
    MPI_Allreduce(&alloc_ok, &all_alloc_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_alloc_ok) {
        if (rank == 0) {
            printf("VERIFICATION FAILED\n");
            fflush(stdout);
        }
        free(ballast);
        MPI_Finalize();
        return 1;
    }

    /* Set up b = A x* and the norms used for relative quantities. */
    struct workspace w = {
        .x = vec_alloc(&g), .p = vec_alloc(&g),
        .r = vec_alloc(&g), .q = vec_alloc(&g), .b = vec_alloc(&g),
    };
    double xs2 = 0.0;
    {
        size_t idx = 0;
        for (int k = 0; k < g.nzl; k++)
            for (int j = 0; j < g.ny; j++)
                for (int i = 0; i < g.nx; i++, idx++) {
                    double xv = xstar(&g, i, j, g.z0 + k);
                    w.b[idx] = rhs(&g, i, j, g.z0 + k);
                    xs2 += xv * xv;
                }
    }
    const double bnorm = sqrt(dot(&g, w.b, w.b));
    const double xsnorm = sqrt(global_sum(xs2));
    const double kappa = laplacian_kappa(&g);
    const double res_tol = 10.0 * opt.tol;
    const double err_tol = 10.0 * kappa * opt.tol;

    /* Repeat solves; rank 0's clock decides (broadcast) whether to go on
     * so that every rank performs the same number of solves. */
    const double t0 = MPI_Wtime();
    double last_print = -1e9;
    struct solve_result res = { 0 };
    int solves = 0, failed_solves = 0, more;
    do {
        solves++;
        cg_solve(&g, &opt, &w, bnorm, xsnorm, rank, solves, t0, &res);
        /* res is identical on all ranks (Allreduce), so is the verdict */
        int ok = res.relres_true < res_tol && res.relerr <= err_tol && isfinite(res.xsum);
        if (!ok)
            failed_solves++;
        double now = MPI_Wtime();
        more = now - t0 < opt.min_seconds;
        MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
        /* Small grids solve in milliseconds: report the first and last
         * solve, every failure, and otherwise at most one line per second. */
        if (rank == 0 && (solves == 1 || !more || !ok || now - last_print >= 1.0)) {
            last_print = now;
            printf("cg: solve %d done, iters=%d relres=%.3e err=%.3e elapsed=%.2fs %s\n",
                   solves, res.iters, res.relres_true, res.relerr, now - t0, ok ? "ok" : "FAILED");
            fflush(stdout);
        }
    } while (more);

    /* Re-verify ballast: checksum against the start and word-by-word
     * against the regenerated pattern. */
    long long bad_words = 0, all_bad_words;
    if (bwords) {
        if (ballast_checksum(ballast, bwords) != ballast_sum0)
            bad_words++; /* count a checksum change even if words match */
        for (size_t i = 0; i < bwords; i++)
            if (ballast[i] != ballast_word(rank, i))
                bad_words++;
        if (bad_words)
            fprintf(stderr, "cg: rank %d: ballast corrupted (%lld mismatches)\n", rank, bad_words);
    }
    MPI_Allreduce(&bad_words, &all_bad_words, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);

    int success = failed_solves == 0 && all_bad_words == 0;
    if (rank == 0) {
        printf("ranks=%d\n", nprocs);
        printf("grid=%d^3\n", opt.n);
        printf("solves=%d failed_solves=%d\n", solves, failed_solves);
        printf("iterations=%d\n", res.iters);
        printf("residual=%.6e (limit %.3e)\n", res.relres_true, res_tol);
        printf("error=%.6e (limit %.3e) max_abs_error=%.6e\n", res.relerr, err_tol, res.maxerr);
        printf("checksum=%.4f\n", res.xsum);
        if (bwords)
            printf("ballast=%s (%ld MiB/rank, %lld mismatches)\n",
                   all_bad_words ? "CORRUPTED" : "ok", opt.mem_mb, all_bad_words);
        else
            printf("ballast=none\n");
        printf("elapsed=%.2fs\n", MPI_Wtime() - t0);
        printf("%s\n", success ? "VERIFICATION SUCCESSFUL" : "VERIFICATION FAILED");
        fflush(stdout);
    }

    free(w.x);
    free(w.p);
    free(w.r);
    free(w.q);
    free(w.b);
    free(ballast);
    MPI_Finalize();
    return success ? 0 : 1;
}
