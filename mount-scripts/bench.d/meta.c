/*
 * Metadata workload for mount-scripts/bench, compiled at bench time into
 * bench-work/bin/ (never committed as a binary).
 *
 *   meta DIR NFILES NDIRS SIZE PHASES [BATCH]
 *
 * Files are DIR/dNNNNN/fNNNNNNN; file i lives in directory i * NDIRS / NFILES.
 * The directories are made first if missing; once all phases ran, those
 * that are empty are removed (neither is counted). PHASES is a
 * comma-separated list, run in the order given:
 *   create  open(O_CREAT|O_EXCL|O_WRONLY) + write SIZE bytes + close
 *   stat    stat() (and check the size)
 *   unlink  unlink()
 *   readdir list every directory (opendir, readdir to the end, closedir)
 *           and check that all NFILES files are there: once ("readdir_first",
 *           cold when the caller dropped the caches just before), then
 *           READDIR_PASSES more times ("readdir_again": the median pass)
 * BATCH (default NFILES) runs all the phases on files 0..BATCH-1, then on the
 * next BATCH files, and so on, so that at most BATCH files exist at once;
 * the times of each phase are added up (readdir takes no BATCH).
 * For each phase it prints one line:
 *   phase=NAME ops=N seconds=S ops_per_s=R p50_us=A p99_us=B p999_us=C
 * p50/p99/p99.9 are the latencies of single calls (create: open + write +
 * close of one file), nearest rank, from a clock read around each call;
 * for readdir, ops counts entries and there are no percentiles.
 * Any failing call ends the program with status 1 and the reason on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *root;
static long nfiles, ndirs, size;
static char *payload;
/* per-call latencies of the phase being run, in ns (nfiles of them) */
static long *lat;
static long nlat;

#define READDIR_PASSES 5

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "meta: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void dir_path(char *buf, size_t len, long d)
{
	snprintf(buf, len, "%s/d%05ld", root, d);
}

static void file_path(char *buf, size_t len, long i)
{
	long d = i * ndirs / nfiles;
	snprintf(buf, len, "%s/d%05ld/f%07ld", root, d, i);
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* nearest rank: the smallest value with at least p% of them at or below it */
static double percentile_us(const long *sorted, long n, double p)
{
	long rank = (long)(p / 100.0 * n + 0.999999);
	if (rank < 1)
		rank = 1;
	return sorted[rank > n ? n - 1 : rank - 1] / 1000.0;
}

static void report(const char *phase, long ops, double seconds, long *lats, long n)
{
	printf("phase=%s ops=%ld seconds=%.6f ops_per_s=%.1f", phase, ops,
	       seconds, seconds > 0 ? ops / seconds : 0.0);
	if (n > 0) {
		qsort(lats, n, sizeof(*lats), by_value);
		printf(" p50_us=%.1f p99_us=%.1f p999_us=%.1f", percentile_us(lats, n, 50),
		       percentile_us(lats, n, 99), percentile_us(lats, n, 99.9));
	}
	printf("\n");
	fflush(stdout);
}

static double phase_create(long first, long end)
{
	char path[4096];
	double start = now();
	for (long i = first; i < end; i++) {
		file_path(path, sizeof(path), i);
		long t0 = now_ns();
		int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			die("open", path);
		long done = 0;
		while (done < size) {
			ssize_t n = write(fd, payload + done, size - done);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("write", path);
			}
			done += n;
		}
		if (close(fd) != 0)
			die("close", path);
		lat[nlat++] = now_ns() - t0;
	}
	return now() - start;
}

static double phase_stat(long first, long end)
{
	char path[4096];
	struct stat st;
	double start = now();
	for (long i = first; i < end; i++) {
		file_path(path, sizeof(path), i);
		long t0 = now_ns();
		if (stat(path, &st) != 0)
			die("stat", path);
		lat[nlat++] = now_ns() - t0;
		if (st.st_size != size) {
			fprintf(stderr, "meta: %s has size %lld, expected %ld\n",
				path, (long long)st.st_size, size);
			exit(1);
		}
	}
	return now() - start;
}

static double phase_unlink(long first, long end)
{
	char path[4096];
	double start = now();
	for (long i = first; i < end; i++) {
		file_path(path, sizeof(path), i);
		long t0 = now_ns();
		if (unlink(path) != 0)
			die("unlink", path);
		lat[nlat++] = now_ns() - t0;
	}
	return now() - start;
}

/* One pass over every directory: the seconds it took; checks the count. */
static double readdir_pass(void)
{
	char path[4096];
	long entries = 0;
	double start = now();
	for (long d = 0; d < ndirs; d++) {
		dir_path(path, sizeof(path), d);
		DIR *dir = opendir(path);
		if (!dir)
			die("opendir", path);
		struct dirent *e;
		errno = 0;
		while ((e = readdir(dir)) != NULL)
			if (e->d_name[0] == 'f')
				entries++;
		if (errno != 0)
			die("readdir", path);
		closedir(dir);
	}
	double seconds = now() - start;
	if (entries != nfiles) {
		fprintf(stderr, "meta: listed %ld files under %s, expected %ld\n", entries, root, nfiles);
		exit(1);
	}
	return seconds;
}

static int by_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void phase_readdir(void)
{
	double again[READDIR_PASSES];
	report("readdir_first", nfiles, readdir_pass(), NULL, 0);
	for (int k = 0; k < READDIR_PASSES; k++)
		again[k] = readdir_pass();
	qsort(again, READDIR_PASSES, sizeof(*again), by_double);
	report("readdir_again", nfiles, again[READDIR_PASSES / 2], NULL, 0);
}

#define MAX_PHASES 16

int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: %s DIR NFILES NDIRS SIZE create,stat,readdir,unlink [BATCH]\n", argv[0]);
		return 2;
	}
	root = argv[1];
	nfiles = atol(argv[2]);
	ndirs = atol(argv[3]);
	size = atol(argv[4]);
	long batch = argc == 7 ? atol(argv[6]) : nfiles;
	if (nfiles < 1 || ndirs < 1 || ndirs > nfiles || size < 0 || batch < 1) {
		fprintf(stderr, "meta: need NFILES >= NDIRS >= 1, SIZE >= 0, BATCH >= 1\n");
		return 2;
	}
	payload = malloc(size > 0 ? size : 1);
	lat = malloc(nfiles * sizeof(*lat));
	if (!payload || !lat)
		return 1;
	for (long i = 0; i < size; i++)
		payload[i] = (char)('a' + i % 26);

	const char *names[MAX_PHASES];
	double seconds[MAX_PHASES] = { 0 };
	int nphases = 0;
	char *phases = strdup(argv[5]);
	for (char *p = strtok(phases, ","); p; p = strtok(NULL, ",")) {
		if (strcmp(p, "create") && strcmp(p, "stat") && strcmp(p, "unlink") && strcmp(p, "readdir")) {
			fprintf(stderr, "meta: unknown phase %s\n", p);
			return 2;
		}
		if (strcmp(p, "readdir") == 0 && batch < nfiles) {
			fprintf(stderr, "meta: readdir lists all the files: no BATCH\n");
			return 2;
		}
		if (nphases == MAX_PHASES) {
			fprintf(stderr, "meta: too many phases\n");
			return 2;
		}
		names[nphases++] = p;
	}

	char path[4096];
	for (long d = 0; d < ndirs; d++) {
		dir_path(path, sizeof(path), d);
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			die("mkdir", path);
	}
	/* each phase's latencies, kept across batches until it is reported */
	long *lats[MAX_PHASES] = { 0 }, nlats[MAX_PHASES] = { 0 };
	for (int k = 0; k < nphases; k++)
		if (strcmp(names[k], "readdir") && !(lats[k] = malloc(nfiles * sizeof(long))))
			return 1;
	for (long first = 0; first < nfiles; first += batch) {
		long end = first + batch < nfiles ? first + batch : nfiles;
		for (int k = 0; k < nphases; k++) {
			if (strcmp(names[k], "readdir") == 0) {
				phase_readdir();
				continue;
			}
			nlat = 0;
			if (strcmp(names[k], "create") == 0)
				seconds[k] += phase_create(first, end);
			else if (strcmp(names[k], "stat") == 0)
				seconds[k] += phase_stat(first, end);
			else
				seconds[k] += phase_unlink(first, end);
			memcpy(lats[k] + nlats[k], lat, nlat * sizeof(long));
			nlats[k] += nlat;
		}
	}
	for (int k = 0; k < nphases; k++)
		if (strcmp(names[k], "readdir"))
			report(names[k], nfiles, seconds[k], lats[k], nlats[k]);
	for (long d = 0; d < ndirs; d++) {
		dir_path(path, sizeof(path), d);
		if (rmdir(path) != 0 && errno != ENOTEMPTY && errno != EEXIST)
			die("rmdir", path);
	}
	return 0;
}
