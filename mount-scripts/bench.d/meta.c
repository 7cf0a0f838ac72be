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
 * BATCH (default NFILES) runs all the phases on files 0..BATCH-1, then on the
 * next BATCH files, and so on, so that at most BATCH files exist at once;
 * the times of each phase are added up.
 * For each phase it prints one line:
 *   phase=NAME ops=N seconds=S ops_per_s=R
 * Any failing call ends the program with status 1 and the reason on stderr.
 */
#define _GNU_SOURCE
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

static void report(const char *phase, long ops, double seconds)
{
	printf("phase=%s ops=%ld seconds=%.6f ops_per_s=%.1f\n", phase, ops,
	       seconds, seconds > 0 ? ops / seconds : 0.0);
	fflush(stdout);
}

static double phase_create(long first, long end)
{
	char path[4096];
	double start = now();
	for (long i = first; i < end; i++) {
		file_path(path, sizeof(path), i);
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
		if (stat(path, &st) != 0)
			die("stat", path);
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
		if (unlink(path) != 0)
			die("unlink", path);
	}
	return now() - start;
}

#define MAX_PHASES 16

int main(int argc, char **argv)
{
	if (argc != 6 && argc != 7) {
		fprintf(stderr, "usage: %s DIR NFILES NDIRS SIZE create,stat,unlink [BATCH]\n", argv[0]);
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
	if (!payload)
		return 1;
	for (long i = 0; i < size; i++)
		payload[i] = (char)('a' + i % 26);

	const char *names[MAX_PHASES];
	double seconds[MAX_PHASES] = { 0 };
	int nphases = 0;
	char *phases = strdup(argv[5]);
	for (char *p = strtok(phases, ","); p; p = strtok(NULL, ",")) {
		if (strcmp(p, "create") && strcmp(p, "stat") && strcmp(p, "unlink")) {
			fprintf(stderr, "meta: unknown phase %s\n", p);
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
	for (long first = 0; first < nfiles; first += batch) {
		long end = first + batch < nfiles ? first + batch : nfiles;
		for (int k = 0; k < nphases; k++) {
			if (strcmp(names[k], "create") == 0)
				seconds[k] += phase_create(first, end);
			else if (strcmp(names[k], "stat") == 0)
				seconds[k] += phase_stat(first, end);
			else
				seconds[k] += phase_unlink(first, end);
		}
	}
	for (int k = 0; k < nphases; k++)
		report(names[k], nfiles, seconds[k]);
	for (long d = 0; d < ndirs; d++) {
		dir_path(path, sizeof(path), d);
		if (rmdir(path) != 0 && errno != ENOTEMPTY && errno != EEXIST)
			die("rmdir", path);
	}
	return 0;
}
