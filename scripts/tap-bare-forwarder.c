// The ceiling of a TAP read/write dataplane, for scripts/bench-compare.sh --bare-tap.
//
// Usage: tap-bare-forwarder TAP0 TAP1
// Creates (or attaches to) two TAPs with IFF_VNET_HDR and TUNSETOFFLOAD (checksum, TSO4/6,
// ECN: as our daemon's VM ports), then forwards every frame, virtio-net header and all, from
// each to the other: one thread per direction, blocking read(2) into one 64 KiB buffer and
// write(2) of it. No parsing, no lookup, no polling: what is left is the kernel's cost of
// moving a (super)frame through two TAPs. Runs until killed (the script bounds it).
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VNET_HDR_LEN 10
#define BUF_LEN (VNET_HDR_LEN + 65536 + 64)

static int open_tap(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) { perror("open /dev/net/tun"); exit(1); }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); exit(1); }
    int size = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &size) < 0) { perror("TUNSETVNETHDRSZ"); exit(1); }
    unsigned long offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    if (ioctl(fd, TUNSETOFFLOAD, offloads) < 0) { perror("TUNSETOFFLOAD"); exit(1); }
    return fd;
}

struct dir { int in, out; };

static void *forward(void *arg) {
    const struct dir *d = arg;
    static __thread char buf[BUF_LEN];
    for (;;) {
        ssize_t n = read(d->in, buf, sizeof buf);
        if (n < 0) {
            if (errno != EINTR && errno != EAGAIN)
                usleep(1000); // the device is down (moving between namespaces): do not spin
            continue;
        }
        if (write(d->out, buf, (size_t)n) < 0 && errno != EIO && errno != EAGAIN)
            perror("write");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TAP0 TAP1\n", argv[0]);
        return 2;
    }
    static struct dir ab, ba;
    ab.in = ba.out = open_tap(argv[1]);
    ab.out = ba.in = open_tap(argv[2]);
    pthread_t t;
    if (pthread_create(&t, NULL, forward, &ab) != 0) { perror("pthread_create"); return 1; }
    fprintf(stderr, "forwarding %s <-> %s\n", argv[1], argv[2]);
    forward(&ba);
    return 0;
}
