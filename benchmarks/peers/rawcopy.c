/* rawcopy: the lab's raw-copy reference reader. It receives on one of loglab's transports and
 * copies every whole line to a file, stamped with its receipt time, and does nothing else: no
 * validation, no parsing, no counters. It is the floor an aggregator is measured against (what
 * the kernel and one C reader cost), built by the lab itself (benchmarks/peers/rawcopy.py).
 *
 *   rawcopy MODE FAMILY ADDRESS OUTPUT
 *     MODE    stream (newline framing, a connection per producer), seqpacket (a connection per
 *             producer, one message per record), dgram (one bound socket, one message per
 *             datagram), fifo (a named pipe, newline framing)
 *     FAMILY  unix (ADDRESS is a path) or inet (ADDRESS is a port on 127.0.0.1)
 *     OUTPUT  lines "<receipt time, ns since the epoch>\t<line>\n"
 *
 * One thread, one epoll loop, as loglab's default aggregator: per wakeup, read what every ready
 * descriptor holds (64 KiB reads, recvmmsg of 64 datagrams), one clock_gettime per read, and one
 * write(2) of everything gathered when the wakeup's work is done (or when 256 KiB are pending).
 * A line longer than a read's buffer is cut at 64 KiB. SIGTERM/SIGINT: write what is pending, exit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_BYTES (64 * 1024)
#define OUT_BYTES (256 * 1024)
#define BATCH 64
#define MAX_FDS 65536

static volatile sig_atomic_t stopping;
static char out[OUT_BYTES + READ_BYTES * 2 + 64];
static size_t out_len;
static int out_fd;

struct conn { char *carry; size_t len; };  /* a stream connection's partial line */
static struct conn conns[MAX_FDS];

static void die(const char *what) { perror(what); exit(1); }
static void on_signal(int sig) { (void)sig; stopping = 1; }

static void flush_out(void) {
    size_t done = 0;
    while (done < out_len) {
        ssize_t n = write(out_fd, out + done, out_len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("write");
        done += (size_t)n;
    }
    out_len = 0;
}

static int stamp_of(char *dst) {  /* the receipt time, as decimal ns, and a tab */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return sprintf(dst, "%lld\t", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

static void emit(const char *stamp, int stamp_len, const char *line, size_t len) {
    if (out_len + stamp_len + len + 1 > sizeof out) flush_out();
    memcpy(out + out_len, stamp, stamp_len);
    memcpy(out + out_len + stamp_len, line, len);
    out_len += stamp_len + len;
    out[out_len++] = '\n';
}

/* Stream bytes: every whole line goes out; the rest waits in the connection's carry. */
static void take_stream(struct conn *c, const char *buf, size_t n, const char *stamp, int stamp_len) {
    const char *p = buf, *end = buf + n, *nl;
    if (c->len) {  /* finish the partial line first */
        nl = memchr(p, '\n', n);
        size_t part = nl ? (size_t)(nl - p) : n;
        if (c->len + part > READ_BYTES) part = READ_BYTES - c->len;
        memcpy(c->carry + c->len, p, part);
        c->len += part;
        if (!nl && c->len < READ_BYTES) return;
        emit(stamp, stamp_len, c->carry, c->len);
        c->len = 0;
        p = nl ? nl + 1 : p + part;
    }
    while (p < end && (nl = memchr(p, '\n', end - p))) {
        emit(stamp, stamp_len, p, nl - p);
        p = nl + 1;
    }
    if (p < end) {
        if (!c->carry && !(c->carry = malloc(READ_BYTES))) die("malloc");
        c->len = end - p;
        memcpy(c->carry, p, c->len);
    }
}

static char bufs[BATCH][READ_BYTES];

/* Datagrams (and seqpacket records): each is one line, its trailing newline dropped. Returns
 * 0 when the socket is empty (or, connected, closed). */
static int take_datagrams(int fd) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    char stamp[32];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){bufs[i], READ_BYTES};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return 0;
    int stamp_len = stamp_of(stamp);
    for (int i = 0; i < n; i++) {
        size_t len = msgs[i].msg_len;
        if (len == 0) return 0;  /* seqpacket: the peer closed */
        while (len && bufs[i][len - 1] == '\n') len--;
        emit(stamp, stamp_len, bufs[i], len);
    }
    return 1;
}

static int listen_on(const char *mode, const char *family, const char *address) {
    int type = !strcmp(mode, "seqpacket") ? SOCK_SEQPACKET : !strcmp(mode, "dgram") ? SOCK_DGRAM : SOCK_STREAM;
    int fd, one = 1;
    if (!strcmp(family, "unix")) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(address) >= sizeof sa.sun_path) { fprintf(stderr, "path too long\n"); exit(2); }
        strcpy(sa.sun_path, address);
        unlink(address);
        if ((fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) die("socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(address))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if ((fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");  /* "Address already in use" */
    }
    if (type != SOCK_DGRAM && listen(fd, 4096) < 0) die("listen");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: rawcopy stream|seqpacket|dgram|fifo unix|inet ADDRESS OUTPUT\n");
        return 2;
    }
    const char *mode = argv[1];
    int fifo = !strcmp(mode, "fifo"), dgram = !strcmp(mode, "dgram"), seqpacket = !strcmp(mode, "seqpacket");
    struct sigaction sa = {.sa_handler = on_signal};  /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((out_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) die(argv[4]);

    /* The FIFO is opened read-write, so that it never reads end-of-file between writers. */
    int main_fd = fifo ? open(argv[3], O_RDWR | O_NONBLOCK | O_CLOEXEC) : listen_on(mode, argv[2], argv[3]);
    if (main_fd < 0) die(argv[3]);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = main_fd}, ready[256];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, main_fd, &ev) < 0) die("epoll_ctl");
    int accepting = !fifo && !dgram;
    char stamp[32];

    while (!stopping) {
        int n = epoll_wait(ep, ready, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (accepting && fd == main_fd) {
                int c;
                while ((c = accept4(main_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAX_FDS) { close(c); continue; }
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            if (dgram || seqpacket) {
                int open_ = 1;
                for (int k = 0; k < 16 && (open_ = take_datagrams(fd)); k++) {}
                if (seqpacket && !open_) {  /* empty or closed: closed if a peek reads 0 */
                    char b;
                    if (recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) == 0) close(fd);
                }
                continue;
            }
            ssize_t got = read(fd, bufs[0], READ_BYTES);
            if (got > 0) {
                take_stream(&conns[fd], bufs[0], (size_t)got, stamp, stamp_of(stamp));
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                struct conn *c = &conns[fd];
                if (c->len) emit(stamp, stamp_of(stamp), c->carry, c->len);  /* a last line without newline */
                c->len = 0;
                close(fd);
            }
        }
        flush_out();
    }
    flush_out();
    return 0;
}
