"""A zip member flagged encrypted (found by a 100-minute fuzz run of the npz reader): zipfile raises
RuntimeError asking for a password; the scanner and the npz reader say so in one line instead."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from forgeml.cli import main
from forgeml.errors import InputError
from forgeml.parity.inputs import read_npz
from forgeml.security.pickle_scan import scan_file


def _zip_with_encrypted_flag(members: dict[str, bytes]) -> bytes:
    """A valid zip whose members' headers then get the "encrypted" bit (zipfile never writes it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    raw = bytearray(buf.getvalue())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header, central directory entry
        i = raw.find(sig)
        while i >= 0:
            raw[i + at] |= 0x1
            i = raw.find(sig, i + 4)
    return bytes(raw)


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def test_npz_with_an_encrypted_member_is_one_input_error(tmp_path):
    p = tmp_path / "in.npz"
    p.write_bytes(_zip_with_encrypted_flag({"x.npy": _npy(np.zeros((2, 3), np.float32))}))
    with pytest.raises(InputError, match="encrypted"):
        read_npz(p)


def test_scan_refuses_a_torch_archive_with_an_encrypted_member(tmp_path, capsys):
    p = tmp_path / "model.pt"
    p.write_bytes(_zip_with_encrypted_flag({"archive/data.pkl": pickle.dumps({"w": 1}, protocol=2),
                                            "archive/version": b"3\n"}))
    report = scan_file(p)
    assert any("encrypted" in line for line in report.problems), report.problems
    code = main(["scan", str(p)])
    err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err.out + err.err
