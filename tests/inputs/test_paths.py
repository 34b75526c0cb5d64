"""One function builds every path from DICOM values or user text: safe, below its root,
distinct for distinct values, the same for the same value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adit_workbench.dicom.paths import (
    UnsafePath,
    component,
    free_name,
    instance_file,
    uid_component,
    within,
)
from tests.inputs.corpus import HOSTILE_UIDS

RESERVED = ["CON", "con", "NUL", "AUX", "PRN", "COM1", "lpt9", "NUL.txt", "CON.dcm"]


@pytest.mark.parametrize("value", [*HOSTILE_UIDS, *RESERVED, "", " ", "\u202e", "a/../b"])
def test_component_is_one_safe_part(value: str) -> None:
    part = component(value)
    assert part and "/" not in part and "\\" not in part and "\x00" not in part
    assert not part.startswith(".") and part not in (".", "..")
    assert not any(ord(c) < 32 for c in part)
    assert part.split(".")[0].upper() not in {"CON", "NUL", "AUX", "PRN", "COM1", "LPT9"}
    assert len(part) <= 120


def test_distinct_values_keep_distinct_names_and_same_value_same_name() -> None:
    # "1.2.3\x00" is "1.2.3" padded as DICOM pads UIDs: the same UID, rightly one name.
    names = [uid_component(v) for v in [*HOSTILE_UIDS, "1.2.4", "_a~x"]]
    assert len(set(names)) == len(names)
    assert uid_component("../a") == uid_component("../a")
    assert uid_component("1.2.840.10008.1.2") == "1.2.840.10008.1.2"


def test_readable_form_without_hash_for_descriptions() -> None:
    assert component("T1 / axial", unique=False) == "T1 _ axial"
    assert component("CON", unique=False) == "_CON"


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
def test_instance_file_stays_below_root(tmp_path: Path, uid: str) -> None:
    path = instance_file(tmp_path, uid, uid, uid)
    assert tmp_path.resolve() in path.resolve().parents


def test_within_refuses_traversal_absolute_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    for parts in (("..", "x"), ("/etc/passwd",), ("a/../../x",), ("link", "x")):
        with pytest.raises(UnsafePath):
            within(root, *parts)
    assert within(root, "a", "b.dcm") == root / "a" / "b.dcm"


def test_free_name_gives_a_distinct_instance_its_own_name(tmp_path: Path) -> None:
    target = tmp_path / "x.dcm"
    target.write_text("first")
    path, already = free_name(target, lambda p: p.read_text() == "second")
    assert path == tmp_path / "x~2.dcm" and not already
    path.write_text("second")
    again, already = free_name(target, lambda p: p.read_text() == "second")
    assert again == path and already
