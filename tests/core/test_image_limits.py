"""The one image reader (ppshitu.utils.image): a pixel limit checked on the header before any
decoding (files and uploaded bytes alike), list files whose paths contain spaces, and the
minimum size / detail a recognisable image needs."""
import struct
import zlib

import cv2
import numpy as np
import pytest

from ppshitu.errors import PPShiTuError
from ppshitu.utils import image as image_mod
from ppshitu.utils.image import (DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS_ENV, ImageReadError, ImageTooLargeError,
                                 ImageTooSmallError, check_recognisable, decode_image, is_uniform, list_images,
                                 max_image_pixels, read_image, set_max_image_pixels)


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_zeros(width, height):
    """A valid black RGB PNG, compressed row by row (20000 x 20000: ~5 MB, 1.2 GB once decoded)."""
    z, row, parts = zlib.compressobj(1), b"\0" * (1 + 3 * width), []
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def jpeg_declaring(width, height):
    """A small real JPEG whose SOF0 header is patched to declare width x height."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    set_max_image_pixels(None)
    yield
    set_max_image_pixels(None)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_of_zeros(20000, 20000))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel decoding starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("cv2.imdecode was called: the image was decoded before the limit was checked")
    monkeypatch.setattr(image_mod.cv2, "imdecode", refuse)


def test_a_small_file_declaring_400_megapixels_is_refused_before_decoding(bomb, no_decoding):
    assert bomb.stat().st_size < 6_000_000
    with pytest.raises(ImageTooLargeError) as e:
        read_image(bomb)
    msg = str(e.value)
    assert str(bomb) in msg and "20000 x 20000" in msg and str(DEFAULT_MAX_IMAGE_PIXELS) in msg
    assert "Global.max_image_pixels" in msg and MAX_PIXELS_ENV in msg  # how to raise it
    assert isinstance(e.value, ImageReadError)  # bulk readers skip it like any unreadable image


def test_uploaded_bytes_are_refused_the_same_way(bomb, no_decoding):
    data = bomb.read_bytes()
    for payload in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        with pytest.raises(ImageTooLargeError, match="upload 7"):
            decode_image(payload, "upload 7")


def test_a_jpeg_header_is_checked_too_and_past_pils_own_limit(no_decoding):
    with pytest.raises(ImageTooLargeError, match=r"9000 x 9000"):
        decode_image(jpeg_declaring(9000, 9000), "big.jpg")
    # 900 MP is past PIL's own decompression-bomb limit (~179 MP): still our clear message ...
    with pytest.raises(ImageTooLargeError, match="max_image_pixels"):
        decode_image(jpeg_declaring(30000, 30000), "huge.jpg")
    # ... and with our limit raised past PIL's, the header is still read (and the size still checked)
    with pytest.raises(ImageTooLargeError, match=r"30000 x 30000"):
        decode_image(jpeg_declaring(30000, 30000), "huge.jpg", max_pixels=800_000_000)


def test_the_limit_is_configurable_call_then_setter_then_environment(tmp_path, monkeypatch):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8))
    assert read_image(img).shape == (100, 120, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "11999")
    assert max_image_pixels() == 11999
    with pytest.raises(ImageTooLargeError, match="11999"):
        read_image(img)
    set_max_image_pixels(12000)            # the tools set Global.max_image_pixels here: it wins
    assert read_image(img).shape == (100, 120, 3)
    with pytest.raises(ImageTooLargeError, match="100"):
        read_image(img, max_pixels=100)    # a call's own limit wins over both
    set_max_image_pixels(None)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(PPShiTuError, match=MAX_PIXELS_ENV):
        read_image(img)
    with pytest.raises(PPShiTuError, match="max_image_pixels"):
        set_max_image_pixels(0)


def test_raising_the_limit_decodes_a_large_image(tmp_path):
    data = png_of_zeros(7000, 6000)  # 42 MP, just past the default
    with pytest.raises(ImageTooLargeError):
        decode_image(data, "x.png")
    assert decode_image(data, "x.png", max_pixels=50_000_000).shape == (6000, 7000, 3)


def test_not_an_image_is_still_a_plain_read_error(tmp_path):
    for content in (b"", b"not an image at all", png_of_zeros(8, 8)[:30]):
        p = tmp_path / "bad.png"
        p.write_bytes(content)
        with pytest.raises(ImageReadError, match="bad.png"):
            read_image(p)
    with pytest.raises(ImageReadError, match="nowhere.jpg"):
        read_image(tmp_path / "nowhere.jpg")


def test_list_file_paths_may_contain_spaces(tmp_path):
    (tmp_path / "my photos").mkdir()
    for name in ("my photos/cat 1.jpg", "my", "plain.jpg"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("my photos/cat 1.jpg\n  plain.jpg  \nplain.jpg\tsome label\nplain.jpg paddleclas-label\n\n")
    assert list_images(listing) == [str(tmp_path / "my photos/cat 1.jpg"), str(tmp_path / "plain.jpg"),
                                    str(tmp_path / "plain.jpg"), str(tmp_path / "plain.jpg")]
    (tmp_path / "gone.txt").write_text("my photo.jpg\n")  # not there: named whole, never cut to "my"
    assert list_images(tmp_path / "gone.txt") == [str(tmp_path / "my photo.jpg")]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ImageReadError, match="names no images"):
        list_images(tmp_path / "empty.txt")


def test_too_small_and_detail_free_images():
    with pytest.raises(ImageTooSmallError, match=r"tiny.png: 1 x 1 .*at least 8 px"):
        check_recognisable(np.zeros((1, 1, 3), np.uint8), "tiny.png")
    with pytest.raises(ImageTooSmallError):
        check_recognisable(np.zeros((7, 300, 3), np.uint8), "strip")
    check_recognisable(np.zeros((8, 8, 3), np.uint8), "ok")
    rng = np.random.default_rng(0)
    assert is_uniform(np.zeros((240, 320, 3), np.uint8))
    assert is_uniform(np.full((50, 50, 3), (255, 0, 0), np.uint8))  # flat colour: 0 std in every channel
    faint = np.clip(rng.normal(0, 1, (240, 320, 3)), 0, 255).astype(np.uint8)
    assert is_uniform(faint)                                          # JPEG-level noise on black
    assert not is_uniform(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    gradient = np.repeat(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], 240, 0).repeat(3, 2)
    assert not is_uniform(gradient)
    small_object = np.zeros((1000, 1000, 3), np.uint8)
    small_object[500:560, 500:560] = 200                              # a 60 px object in a black photo
    assert not is_uniform(small_object)
    assert not is_uniform(np.zeros((10, 10, 3), np.uint8), min_std=0)  # 0: the test is off
