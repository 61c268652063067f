#!/usr/bin/env python3
"""Prints the functions of a binary that a process has executed, one mangled name a line.

  touched.py PID BINARY        the present pages of PID's text mapping of BINARY (pagemap)
  touched.py --offsets FILE BINARY   the page file offsets touch.so wrote at a process's exit

Run the process with touch.so preloaded, so that only executed pages are present. Every
function symbol (nm) overlapping such a page is printed; built with
`-C llvm-args=-align-all-functions=12`, every function starts on its own page, so "overlaps a
present page" is "was executed"."""
import bisect
import struct
import subprocess
import sys


def run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def main():
    if sys.argv[1] == "--offsets":
        source, binary = sys.argv[2], sys.argv[3]
    else:
        source, binary = int(sys.argv[1]), sys.argv[2]
    syms = []
    for line in run("nm", "-S", "--defined-only", binary).splitlines():
        p = line.split(" ", 3)
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    # The executable segment's virtual address minus its file offset (readelf -l).
    for line in run("readelf", "-lW", binary).splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "R E" in line:
            seg_delta = int(f[2], 16) - int(f[1], 16)
            break
    if isinstance(source, str):
        pages = sorted({int(x, 16) + seg_delta for x in open(source).read().split()})
    else:
        pages = present_pages(source, run("readlink", "-f", binary).strip(), seg_delta)
    seen = set()
    for v in pages:
        j = bisect.bisect_right(starts, v + 4095) - 1
        found = []
        while j >= 0 and syms[j][0] + max(syms[j][1], 1) > v - (1 << 20):
            a, size, name = syms[j]
            if a < v + 4096 and a + max(size, 1) > v and name not in seen:
                seen.add(name)
                found.append(name)
            j -= 1
        for name in reversed(found):
            print(name)


def present_pages(pid, real, seg_delta):
    text = None
    for line in open(f"/proc/{pid}/maps"):
        f = line.split()
        if len(f) >= 6 and f[1] == "r-xp" and f[5] == real:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            text = (lo, hi, int(f[2], 16))
    if text is None:
        sys.exit(f"no text mapping of {real} in process {pid}")
    lo, hi, off = text
    pages = []
    with open(f"/proc/{pid}/pagemap", "rb") as pm:
        for page in range(lo, hi, 4096):
            pm.seek(page // 4096 * 8)
            if struct.unpack("Q", pm.read(8))[0] >> 63:
                pages.append(page - lo + off + seg_delta)
    return pages


main()
