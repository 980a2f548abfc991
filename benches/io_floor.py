#!/usr/bin/env python3
"""The disk's floor under one durable `issue` (benches/serve-issue.sh).

Does, RUNS times in DIR, the file-system work the issuance protocol needs and
nothing else: three new files written, each fsync'd, their directory fsync'd
(the key must be durable before the record); 2 KB written into an existing
store file, fdatasync'd, its directory fsync'd (the record); three renames and
one directory fsync (the final names). Prints p50/p99 in milliseconds. No
signing, no sled, no process start: what any implementation with the same
durability pays on this disk.
"""
import os
import statistics
import sys
import time


def sync_dir(d):
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def one(out, store, i):
    names = [f"f{i}.key", f"f{i}.chain.pem", f"f{i}.pem"]
    start = time.perf_counter()
    fds = []
    for n in names:
        fd = os.open(os.path.join(out, "." + n + ".partial"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"-" * 900)
        fds.append(fd)
    for fd in fds:
        os.fsync(fd)
        os.close(fd)
    sync_dir(out)
    fd = os.open(os.path.join(store, "db"), os.O_WRONLY)
    os.pwrite(fd, os.urandom(2048), (i % 256) * 2048)
    os.fdatasync(fd)
    os.close(fd)
    sync_dir(store)
    for n in names:
        os.rename(os.path.join(out, "." + n + ".partial"), os.path.join(out, n))
    sync_dir(out)
    return (time.perf_counter() - start) * 1e3


def main():
    base, runs = sys.argv[1], int(sys.argv[2])
    out, store = os.path.join(base, "floor-out"), os.path.join(base, "floor-store")
    os.makedirs(out)
    os.makedirs(store)
    with open(os.path.join(store, "db"), "wb") as f:
        f.write(b"\0" * 256 * 2048)
        f.flush()
        os.fsync(f.fileno())
    ms = sorted(one(out, store, i) for i in range(runs))
    p99 = ms[min(len(ms) - 1, int((len(ms) - 1) * 0.99))]
    print(f"p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms ({runs} runs)")


if __name__ == "__main__":
    main()
