/* workers.c - the supervisor of several worker processes; see workers.h. */
#define _GNU_SOURCE
#include "workers.h"

#include "config.h"
#include "gateway.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 30000 /* a worker not serving by then has failed */
#define STOP_TIMEOUT_S 30      /* workers drain in a few seconds; then SIGKILL */
#define RESTART_DELAY_MIN_MS 500
#define RESTART_DELAY_MAX_MS 30000
#define STABLE_AFTER_S 10      /* a worker that ran this long restarts at once */
#define SUPERVISOR_TICK_MS 200 /* restarts are due at most this late */

struct worker {
    pid_t pid;               /* 0: not running */
    struct timespec started; /* CLOCK_MONOTONIC */
    unsigned delay_ms;       /* before the next restart (doubles while it keeps dying) */
    struct timespec restart_at;
};

unsigned workers_count(const struct wsg_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        n = 1;
    return n > WSG_MAX_WORKERS ? WSG_MAX_WORKERS : (unsigned)n;
}

int workers_check_listeners(const struct wsg_config *cfg, char *err, size_t err_len)
{
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const struct wsg_listen *l = &cfg->listen[i];
        char why[200];
        if (wsg_listen_is_unix(l)) {
            /* Each worker would replace the others' socket file. */
            snprintf(err, err_len,
                     "listen[%zu] unix:%s: a unix-socket listener needs \"workers\": 1", i,
                     l->host);
            return -1;
        }
        /* Without SO_REUSEPORT: any socket already on the port makes this fail. */
        int fd = listener_bind(l->host, l->port, false, why, sizeof(why));
        if (fd < 0) {
            snprintf(err, err_len, "listen[%zu] %s:%d: %s", i, l->host, l->port, why);
            return -1;
        }
        close(fd);
    }
    return 0;
}

void workers_ready(void)
{
    struct workers_state *w = &gateway_get()->worker;
    if (w->ready_fd < 0)
        return;
    char c = 'r';
    ssize_t n;
    do
        n = write(w->ready_fd, &c, 1);
    while (n < 0 && errno == EINTR);
    close(w->ready_fd);
    w->ready_fd = -1;
}

static long ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_nsec - t->tv_nsec) / 1000000L;
}

static void describe_status(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, len, "status %d", status);
}

/* Forks worker `number` and waits until it serves. Returns its pid, or 0 if
 * it died or hung while starting (then it is reaped or killed). */
static pid_t start_worker(unsigned number, worker_main_fn worker_main, void *ctx,
                          const sigset_t *worker_mask)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        log_error("cannot start a worker", "error", strerror(errno));
        return 0;
    }
    pid_t supervisor = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot start a worker", "error", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        gateway_get()->worker.ready_fd = fds[1];
        /* A worker must not outlive its supervisor: nothing would stop it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != supervisor)
            _exit(EXIT_FAILURE);
        /* SIGHUP before the worker's own handler is installed must not kill it. */
        signal(SIGHUP, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, worker_mask, NULL);
        metrics_set_worker(number - 1);
        log_set_worker((int)number);
        exit(worker_main(number, ctx));
    }
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    char c;
    int rc;
    do
        rc = poll(&p, 1, START_TIMEOUT_MS);
    while (rc < 0 && errno == EINTR);
    ssize_t got = rc > 0 ? read(fds[0], &c, 1) : -1;
    close(fds[0]);
    if (got == 1) {
        metrics_worker_started(number - 1);
        return pid;
    }
    /* EOF: it exited before serving (it logged why); nothing: it hung. */
    char num[12];
    snprintf(num, sizeof(num), "%u", number);
    if (got != 0) {
        log_error("worker did not start in time; killed", "worker", num);
        kill(pid, SIGKILL);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    metrics_worker_gone(number - 1);
    return 0;
}

static void signal_all(struct worker *w, unsigned n, int sig)
{
    for (unsigned i = 0; i < n; i++)
        if (w[i].pid > 0)
            kill(w[i].pid, sig);
}

static unsigned running_count(const struct worker *w, unsigned n)
{
    unsigned count = 0;
    for (unsigned i = 0; i < n; i++)
        count += w[i].pid > 0;
    return count;
}

/* When a worker that ended is started again: at once if it had run a while
 * (ran_long), else after a delay that doubles while it keeps dying young. */
static void schedule_restart(struct worker *wk, bool ran_long)
{
    if (ran_long)
        wk->delay_ms = 0;
    else
        wk->delay_ms = wk->delay_ms ? wk->delay_ms * 2 : RESTART_DELAY_MIN_MS;
    if (wk->delay_ms > RESTART_DELAY_MAX_MS)
        wk->delay_ms = RESTART_DELAY_MAX_MS;
    clock_gettime(CLOCK_MONOTONIC, &wk->restart_at);
    wk->restart_at.tv_sec += wk->delay_ms / 1000;
    wk->restart_at.tv_nsec += (long)(wk->delay_ms % 1000) * 1000000L;
    if (wk->restart_at.tv_nsec >= 1000000000L) {
        wk->restart_at.tv_sec++;
        wk->restart_at.tv_nsec -= 1000000000L;
    }
}

/* Reaps every exited worker. While serving, schedules its restart: at once
 * if it had run a while, else after a delay that doubles while it keeps
 * dying young. Returns how many exited with a status other than 0. */
static unsigned reap(struct worker *w, unsigned n, int stopping)
{
    unsigned failed = 0;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < n; i++) {
            if (w[i].pid != pid)
                continue;
            w[i].pid = 0;
            metrics_worker_gone(i);
            char num[12], how[64];
            snprintf(num, sizeof(num), "%u", i + 1);
            describe_status(status, how, sizeof(how));
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                failed++;
            if (stopping)
                break;
            schedule_restart(&w[i], ms_since(&w[i].started) >= STABLE_AFTER_S * 1000L);
            char delay[24];
            snprintf(delay, sizeof(delay), "%.1f", w[i].delay_ms / 1000.0);
            log_error("worker died; restarting it", "worker", num, "status", how, "restart_in_s",
                      delay);
            break;
        }
    }
    return failed;
}

static void on_signal_never_run(int sig) { (void)sig; }

int workers_run(unsigned n, worker_main_fn worker_main, worker_hangup_fn on_hangup, void *ctx)
{
    struct worker *w = calloc(n, sizeof(*w));
    if (!w)
        return 2;
    /* The supervisor takes its signals synchronously (sigtimedwait); the
     * workers get the mask it had before. The handlers never run (the signals
     * stay blocked); they are there because as PID 1 in a container, a signal
     * whose disposition is the default would not be delivered at all. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal_never_run;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t handled, before;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGHUP);
    sigaddset(&handled, SIGCHLD);
    sigprocmask(SIG_BLOCK, &handled, &before);

    char count[12];
    snprintf(count, sizeof(count), "%u", n);
    int exit_status = 0, stopping = 0;
    struct timespec stop_deadline = {0, 0};
    for (unsigned i = 0; i < n; i++) {
        w[i].pid = start_worker(i + 1, worker_main, ctx, &before);
        if (w[i].pid == 0) {
            log_error("a worker failed to start; stopping the others", "workers", count);
            exit_status = 2;
            stopping = 1;
            signal_all(w, n, SIGTERM);
            clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
            stop_deadline.tv_sec += STOP_TIMEOUT_S;
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &w[i].started);
    }
    if (!stopping)
        log_info("workers started", "workers", count);

    while (stopping ? running_count(w, n) > 0 : 1) {
        struct timespec wait = {0, SUPERVISOR_TICK_MS * 1000000L};
        siginfo_t info;
        int sig = sigtimedwait(&handled, &info, &wait);
        if (sig == SIGCHLD || sig < 0) {
            if (reap(w, n, stopping) > 0 && stopping)
                exit_status = 2;
        } else if (sig == SIGHUP && !stopping) {
            if (on_hangup)
                on_hangup(ctx);
            signal_all(w, n, SIGHUP);
        } else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            stopping = 1;
            log_info("stopping workers", "workers", count);
            signal_all(w, n, SIGTERM);
            clock_gettime(CLOCK_MONOTONIC, &stop_deadline);
            stop_deadline.tv_sec += STOP_TIMEOUT_S;
        }
        if (stopping) {
            if (stop_deadline.tv_sec && ms_since(&stop_deadline) >= 0) {
                log_error("workers still running after the drain deadline; killed");
                signal_all(w, n, SIGKILL);
                stop_deadline.tv_sec = 0;
                exit_status = 2;
            }
            continue;
        }
        for (unsigned i = 0; i < n; i++) {
            if (w[i].pid != 0 || ms_since(&w[i].restart_at) < 0)
                continue;
            w[i].pid = start_worker(i + 1, worker_main, ctx, &before);
            clock_gettime(CLOCK_MONOTONIC, &w[i].started);
            if (w[i].pid == 0) /* try again later, a little later each time */
                schedule_restart(&w[i], false);
        }
    }
    sigprocmask(SIG_SETMASK, &before, NULL);
    free(w);
    return exit_status;
}
