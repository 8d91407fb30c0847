"""File digests: the reused-buffer reader and the threaded multi-file form give hashlib's own answer."""

from __future__ import annotations

import hashlib
import os

from forgeml.ir import sha256_file, sha256_files


def test_file_digests_match_hashlib_across_buffer_edges(tmp_path):
    sizes = [0, 1, (1 << 22) - 1, 1 << 22, (1 << 22) + 7, 3 * (1 << 22) + 5]
    paths = []
    for i, n in enumerate(sizes):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(os.urandom(n))
        paths.append(p)
    want = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert {p: sha256_file(p) for p in paths} == want
    assert sha256_files(paths) == want
    assert sha256_files(paths[:1]) == {paths[0]: want[paths[0]]}
