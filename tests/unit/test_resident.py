"""`red.runtime.resident`: which mappings are handed back, and that handing them back frees torch's
library pages in a real process without changing what torch computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from red.runtime.resident import file_mappings

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 fd:01 123 /usr/bin/python3.11
55d0c0021000-55d0c0200000 r-xp 00021000 fd:01 123 /usr/bin/python3.11
55d0c0300000-55d0c0310000 rw-p 00300000 fd:01 123 /usr/bin/python3.11
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r--s 00000000 00:1a 77 /dev/shm/plasma4wGDdr
7f0000200000-7f0000300000 r-xp 00000000 fd:01 99 /tmp/gone.so (deleted)
7f0000300000-7f0000400000 r-xp 00000000 fd:01 98 /venv/torch/lib/libtorch_cpu.so
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
"""


def test_only_read_only_mappings_of_files_on_disk_are_handed_back() -> None:
    assert file_mappings(MAPS) == [
        (0x55D0C0000000, 0x55D0C0021000),  # the interpreter's read-only data
        (0x55D0C0021000, 0x55D0C0200000),  # its code
        (0x7F0000300000, 0x7F0000400000),  # a library's code
    ]  # not: a writable data segment, the heap, anonymous memory, shared memory, a deleted file, [vdso]


@pytest.mark.parametrize("line", ["", "garbage", "7f00-7f01 r-xp 0 fd:01 1", "7f00-7f01 r-xp 0 fd:01 1 [vvar]"])
def test_lines_without_a_file_are_skipped(line: str) -> None:
    assert file_mappings(line) == []


PROBE = r"""
import hashlib, json, mmap, sys
from red.runtime.resident import release_file_pages, releasing_file_pages

def rollup():
    out = {}
    for line in open("/proc/self/smaps_rollup"):
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out

f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # a file only this process maps
digest = hashlib.sha256(m).hexdigest()  # reads every page
before = rollup()
asked = release_file_pages()
after = rollup()
again = hashlib.sha256(m).hexdigest()  # read back from the file
with releasing_file_pages(every=0.01):
    during = hashlib.sha256(m).hexdigest()
print(json.dumps({"before": before, "after": after, "asked": asked, "same": digest == again == during}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and madvise")
def test_pages_of_a_file_this_process_alone_maps_are_handed_back_and_read_back_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "lib.bin"
    data.write_bytes(os.urandom(64 * 2**20))
    out = subprocess.run([sys.executable, "-c", PROBE, str(data)], capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["asked"] >= 64 * 2**20, got["asked"]
    # Pss_File: the file's pages this process maps (clean, or dirty until the kernel writes the new file).
    file_before, file_after = got["before"]["Pss_File"], got["after"]["Pss_File"]
    assert file_before >= 60 * 1024, file_before  # the 64 MB just read
    assert file_after < file_before - 56 * 1024, (file_before, file_after)
    assert got["after"]["Pss"] < got["before"]["Pss"] - 56 * 1024
    assert got["same"]  # every byte read back after handing the pages back, and while doing it


TORCH_PROBE = r"""
import json, torch
from red.runtime.resident import release_file_pages

def run():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    losses = []
    for _ in range(5):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        losses.append(float(loss))
    return losses

first = run()
asked = release_file_pages()
print(json.dumps({"asked": asked, "first": first, "second": run()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and madvise")
def test_torch_computes_the_same_after_its_library_pages_are_handed_back() -> None:
    out = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["asked"] > 100 * 2**20, got["asked"]  # torch maps hundreds of MB of libraries
    assert got["second"] == got["first"]  # bit for bit
    assert got["first"][-1] < got["first"][0]


NODE_PROBE = r"""
import contextlib, json, sys
import red.runtime.task_node as task_node
from red.tasks.digits import DigitsTask

if sys.argv[1] == "unwrapped":  # what a TaskNode.build that stopped wrapping `import torch` would leave
    task_node.releasing_file_pages = contextlib.nullcontext
config = task_node.BuildConfig(DigitsTask, {}, num_clients=4, seed=0, index=0)
node = task_node.TaskNode("client_0", "train", "f", config=config)
loss = node.task.train(node.model, node.data, node_id="client_0", round=1)
rollup = {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in open("/proc/self/smaps_rollup"))
          if v.strip().endswith("kB")}
print(json.dumps({"Pss_File": rollup["Pss_File"], "trained": loss is not None}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and madvise")
def test_a_cpu_task_node_hands_back_the_library_pages_torch_read_while_loading() -> None:
    # A fresh process each (this one may have torch loaded: PSS would split the pages both map).
    def pss_file(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", NODE_PROBE, mode], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["trained"]
        return int(got["Pss_File"])

    wrapped, unwrapped = pss_file("wrapped"), pss_file("unwrapped")
    # Measured here after a training step: 248 MB of library pages unwrapped, 47 MB wrapped.
    assert wrapped < unwrapped / 2, (wrapped, unwrapped)
