"""Image folders as people have them: odd file names, odd files, links, and folders that cannot work.

Unreadable files are skipped, counted and listed, never fatal; what cannot work is refused by a message
that names the path (as text: bytes that are not UTF-8 as \\xNN).
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filtag_kg.data import InputSpec, image_files, image_folder
from filtag_kg.errors import UserError

RNG = np.random.default_rng(3)


def _image(mode: str = "L", size: int = 12) -> Image.Image:
    """A random image of a PIL mode: L, RGB, RGBA, I;16 (16-bit gray) or CMYK."""
    if mode == "I;16":
        return Image.fromarray(RNG.integers(0, 65535, (size, size), dtype=np.uint16))
    rgb = Image.fromarray(RNG.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return rgb if mode == "RGB" else rgb.convert(mode)


def _bytes(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def odd_folder(root: Path) -> dict[str, bool]:
    """Class folders 'cat' and 'dog' of files of every odd kind, by id: whether it is readable."""
    cat, dog = root / "cat", root / "dog"
    for d in (cat, dog, cat / ".hidden-folder"):
        d.mkdir(parents=True)
    readable = {
        "cat/plain.png": _bytes(_image(), "PNG"), "cat/UPPER.PNG": _bytes(_image(), "PNG"),
        "cat/UPPER.JPG": _bytes(_image("RGB"), "JPEG"), "cat/UPPER.JPEG": _bytes(_image("RGB"), "JPEG"),
        "cat/with space.png": _bytes(_image(), "PNG"), "cat/new\nline.png": _bytes(_image(), "PNG"),
        "cat/ünï 猫.png": _bytes(_image(), "PNG"),
        "dog/jpeg-inside.png": _bytes(_image("RGB"), "JPEG"), "dog/gray.png": _bytes(_image("L"), "PNG"),
        "dog/rgba.png": _bytes(_image("RGBA"), "PNG"), "dog/16-bit.png": _bytes(_image("I;16"), "PNG"),
        "dog/cmyk.jpg": _bytes(_image("CMYK"), "JPEG"), "dog/gif-inside.png": _bytes(_image("RGB"), "GIF"),
        "dog/bmp-inside.jpg": _bytes(_image("RGB"), "BMP"),
    }
    jpeg = _bytes(_image("RGB", 64), "JPEG")
    unreadable = {"cat/empty.png": b"", "cat/empty.jpg": b"", "dog/truncated.jpg": jpeg[:len(jpeg) // 2],
                  "dog/text.png": b"not an image"}
    for name, data in {**readable, **unreadable}.items():
        (root / name).write_bytes(data)
    fd = os.open(os.fsencode(cat) + b"/\xff\xfe.png", os.O_WRONLY | os.O_CREAT, 0o644)  # not UTF-8
    os.write(fd, _bytes(_image(), "PNG"))
    os.close(fd)
    (cat / ".hidden.png").write_bytes(b"")  # hidden: left out, not skipped
    (cat / ".hidden-folder" / "x.png").write_bytes(b"")
    (dog / "anim.gif").write_bytes(_bytes(_image("RGB"), "GIF"))  # other kinds: left out with a warning
    (dog / "picture.bmp").write_bytes(_bytes(_image("RGB"), "BMP"))
    (dog / "link.png").symlink_to(cat / "plain.png")
    (dog / "loop1.png").symlink_to(dog / "loop2.png")
    (dog / "loop2.png").symlink_to(dog / "loop1.png")
    (dog / "gone.png").symlink_to(dog / "missing.png")
    (dog / "again").symlink_to(dog)  # a folder link back up: read once
    return {**dict.fromkeys([*readable, "cat/\\xff\\xfe.png", "dog/link.png"], True),
            **dict.fromkeys([*unreadable, "dog/loop1.png", "dog/loop2.png", "dog/gone.png"], False)}


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_odd_files_are_read_or_skipped_never_fatal(tmp_path, capsys: pytest.CaptureFixture[str], channels: int) -> None:
    """Every kind of file a folder may hold, for models of 1, 3 and 4 channels: what decodes is read (upper-case
    suffixes, odd names, a JPEG or GIF under a PNG name, gray, RGBA, 16-bit, CMYK, a link); empty, truncated or
    foreign files and links to nothing are skipped (their positions never come), hidden ones left out."""
    expected = odd_folder(tmp_path / "imgs")
    source = image_folder(tmp_path / "imgs", fraction=1)
    assert "2 file(s) in the class folders are not JPEG or PNG and are left out (.gif ×1, .bmp ×1)" \
        in capsys.readouterr().err
    split = source.split("train")
    assert sorted(split.ids) == sorted(expected) and source.classes == ["cat", "dog"]
    json.dumps(split.ids, ensure_ascii=False).encode()  # every id is UTF-8 text, as JSON and RDF take it
    seen: list[int] = []
    for images, _, positions in split.dataset(InputSpec(8, 8, channels), batch_size=4):
        assert images.shape[1:] == (8, 8, channels) and np.all(np.isfinite(images.numpy()))
        assert float(images.numpy().max()) <= 255  # 16-bit PNGs scaled to 8 bits, as the rest
        seen += positions.numpy().tolist()
    read = {split.ids[p] for p in seen}
    assert read == {i for i, ok in expected.items() if ok}, sorted(read ^ {i for i, ok in expected.items() if ok})


def test_a_data_folder_named_in_bytes_that_are_not_utf8_is_recorded_as_text(tmp_path) -> None:
    """A --data folder whose name is not UTF-8 was collected with its name and root as lone surrogates
    ('r\\udcffoot'), then `filtag-kg export` of its tags failed with a UnicodeEncodeError traceback; and
    messages showed such a path as \\udcff where others show \\xff."""
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xffoot"))
    for folder in (root / "cat", tmp_path / "plain" / "cat"):
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "a.png")
    source = image_folder(root)
    assert source.name == "r\\xffoot" and source.root == f"{tmp_path}/r\\xffoot"
    assert source.label_space.startswith("r\\xffoot-")
    (source.name + source.root + source.label_space).encode()  # UTF-8 text, as JSON, RDF and hashes need
    held = image_folder(tmp_path / "plain", heldout=root, classes=["cat"])
    assert held.split_info["heldout_root"] == f"{tmp_path}/r\\xffoot"
    with pytest.raises(UserError, match=r"^image folder .*/r\\xffoot/nothing does not exist or is not a folder$"):
        image_folder(root / "nothing")
    with pytest.raises(UserError, match=r"^image file .*/r\\xffoot/x\.png does not exist$"):
        image_files([root / "x.png"], ["cat"])


def test_image_files_that_are_folders_or_links_to_nothing_are_named_so(tmp_path) -> None:
    """`explain`'s image files: a folder, or a link that leads nowhere, was said 'not to exist'."""
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    loop = "is a symbolic link to nothing (its target is missing, or links lead in a loop)"
    for name, problem in (("loop1.png", loop),
                          ("gone.png", "is a symbolic link to nothing"), ("folder.png", "is a folder, not a file"),
                          ("missing.png", "does not exist")):
        with pytest.raises(UserError) as raised:
            image_files([tmp_path / name], ["cat"])
        assert str(raised.value).startswith(f"image file {tmp_path / name} {problem}"), str(raised.value)


def test_folders_that_cannot_work_are_named(tmp_path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UserError, match=re.escape(f"image folder {tmp_path / 'file'} does not exist or is not a")):
        image_folder(tmp_path / "file")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(UserError, match="flat has no class sub-folders"):
        image_folder(tmp_path / "flat")
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "empty").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "imgs" / "cat" / "a.png")
    with pytest.raises(UserError, match=re.escape(f"class folder {tmp_path / 'imgs' / 'empty'} has no JPEG or PNG")):
        image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "empty" / "a.gif").write_bytes(_bytes(_image("RGB"), "GIF"))
    (tmp_path / "imgs" / "empty" / "b.GIF").write_bytes(_bytes(_image("RGB"), "GIF"))
    (tmp_path / "imgs" / "empty" / "c.bmp").write_bytes(_bytes(_image("RGB"), "BMP"))
    empty = tmp_path / "imgs" / "empty"
    with pytest.raises(UserError, match=re.escape(f"class folder {empty} has no JPEG or PNG images "
                                                  "(it holds 3 other file(s): .gif ×2, .bmp ×1)")):
        image_folder(tmp_path / "imgs")
    for f in (tmp_path / "imgs" / "empty").iterdir():
        f.unlink()
    (tmp_path / "imgs" / "empty").rmdir()
    with pytest.raises(UserError, match=re.escape(f"class folder {tmp_path / 'imgs' / 'cat'} does not match any of the "
                                                  "model's 2 classes")):
        image_folder(tmp_path / "imgs", classes=["bear", "dog"])
    os.mkdir(os.fsencode(tmp_path / "imgs") + b"/\xffcls")
    with pytest.raises(UserError, match=r"imgs/\\xffcls: its name is not valid UTF-8; rename it"):
        image_folder(tmp_path / "imgs")


def test_class_folders_linked_to_nothing_are_named(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A class folder that is a link to a folder gone (unmounted, moved) or a link loop was left out without
    a word: with the folder names as classes, the class list lost a class; with the model's, the class had
    no images and nothing said so (the warning of unread classes counts the images listed)."""
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "imgs" / "cat" / "a.png")
    (tmp_path / "imgs" / "dog").symlink_to(tmp_path / "elsewhere" / "dog")
    (tmp_path / "imgs" / "eel").symlink_to(tmp_path / "imgs" / "eel")
    assert image_folder(tmp_path / "imgs").classes == ["cat"]
    assert capsys.readouterr().err == (f"warning: {tmp_path / 'imgs'}: 2 link(s) lead to nothing (the target is "
                                       "missing, or links lead in a loop) and are left out: dog, eel\n")
    (tmp_path / "imgs" / "cat" / "a.png").unlink()
    (tmp_path / "imgs" / "cat").rmdir()
    with pytest.raises(UserError, match=r"imgs has no class sub-folders \(expected ROOT/<class>/<image>\.jpg\); "
                                        r"2 link\(s\) lead to nothing"):
        image_folder(tmp_path / "imgs")


def test_a_heldout_class_the_training_folder_lacks_is_named_as_such(tmp_path) -> None:
    """Without a model's class list (a .keras file records none) the classes are the training folder's names;
    a held-out folder of another class was refused as matching none 'of the model's 2 classes'."""
    for folder in ("train/cat", "train/dog", "held/cat", "held/bird"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / folder / "a.png")
    with pytest.raises(UserError) as raised:
        image_folder(tmp_path / "train", heldout=tmp_path / "held")
    assert str(raised.value) == (f"class folder {tmp_path / 'held' / 'bird'} is none of the 2 class folders of "
                                 f"{tmp_path / 'train'} (cat, dog), whose names are the classes: a held-out class "
                                 "needs training images of its own")
    with pytest.raises(UserError, match="does not match any of the model's 3 classes"):  # with a model's: as before
        image_folder(tmp_path / "train", classes=["cat", "dog", "cow"], heldout=tmp_path / "held")


def test_the_training_folder_as_its_own_heldout_folder_is_refused(tmp_path, monkeypatch) -> None:
    """`collect --data imgs --heldout imgs` (or a link to it) evaluated explanations on the very images the tags
    were made from, without a word: Hits@n as good as it gets, and meaningless."""
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "imgs" / "cat" / "a.png")
    (tmp_path / "link").symlink_to(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    for heldout in ("imgs", "./imgs/", tmp_path / "link"):
        message = (f"the held-out folder {os.path.abspath(heldout)} is the training folder {tmp_path / 'imgs'}: the "
                   "held-out images must be others")
        with pytest.raises(UserError, match=re.escape(message)):
            image_folder("imgs", heldout=heldout)


def test_folders_that_cannot_be_listed_are_named(tmp_path, monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    """os.walk passes over a folder it cannot list (no permission): a class sub-folder's images were left out
    without a word, and a class folder that cannot be read was said to have no JPEG or PNG images."""
    for folder in ("imgs/cat/locked", "imgs/cat/open", "imgs/dog"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / folder / "a.png")
    real_scandir, locked = os.scandir, {str(tmp_path / "imgs/cat/locked")}

    def scandir(path: str | os.PathLike[str] = ".") -> object:  # what a folder without read permission does
        if os.fspath(path) in locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # (chmod does not stop root, who may run the tests)
    assert image_folder(tmp_path / "imgs", fraction=1).split("train").ids == ["cat/open/a.png", "dog/a.png"]
    assert capsys.readouterr().err == (f"warning: {tmp_path / 'imgs'}: 1 sub-folder(s) of the class folders cannot be "
                                       f"read and are left out ({tmp_path / 'imgs/cat/locked'}: Permission denied)\n")
    locked.add(str(tmp_path / "imgs/dog"))
    with pytest.raises(UserError, match=re.escape(f"class folder {tmp_path / 'imgs/dog'} cannot be read (Permission "
                                                  "denied); make it readable")):
        image_folder(tmp_path / "imgs")
