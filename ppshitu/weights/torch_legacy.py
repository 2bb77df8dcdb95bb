"""Read PyTorch's legacy (pre-1.6, non-zip) `torch.save` format with numpy alone: no torch, no code run.

The file is five pickles in a row -- magic number, protocol version, sys info, the saved object (a
state dict whose tensors name their storage by persistent id), the list of storage keys -- followed
by each storage's raw bytes in the order of that list: an int64 element count, then the elements.
Pickle can call any importable function, so the unpickler resolves only the few names a state dict
uses and refuses everything else before it can run.

Tensors keep their own size, stride and offset into the storage; many checkpoints converted from
TensorFlow store permuted strides, so reading the bytes as contiguous arrays silently scrambles them.
"""
import io
import os
import pickle
import struct
from collections import OrderedDict, namedtuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import WeightsError
from ..utils.files import open_regular

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class WeightsFormatError(WeightsError):
    """A weights file is not in the format it claims, is damaged, or asks to run code."""


class _StorageType:
    """Stands in for `torch.FloatStorage` etc.: all the reader needs is the element type."""

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


_Storage = namedtuple("_Storage", "key dtype numel")
_TensorRef = namedtuple("_TensorRef", "storage offset size stride")


def _rebuild_tensor_v2(storage, offset, size, stride, *_requires_grad_hooks_metadata):
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,  # the state dict itself and each tensor's (empty) hooks
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a torch state dict") from None

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel, view_metadata); views of storages predate torch 0.4
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and pid[5] is None):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, _view = pid
        storage = _Storage(str(key), storage_type.dtype, int(numel))
        self.storages[storage.key] = storage
        return storage


def _tensor(ref, data, honour_strides):
    size, itemsize = ref.size, data.itemsize
    if 0 in size:
        return np.empty(size, data.dtype.newbyteorder("="))
    if honour_strides:
        # as_strided reads whatever memory the strides point at, so check the extent against the storage first
        extent = ref.offset + sum((n - 1) * s for n, s in zip(size, ref.stride)) + 1
        if ref.offset < 0 or min(ref.stride, default=0) < 0 or extent > data.size:
            raise ValueError(f"tensor of size {size}, stride {ref.stride}, offset {ref.offset} "
                             f"overruns storage {ref.storage.key} of {data.size} elements")
        view = as_strided(data[ref.offset:], size, tuple(s * itemsize for s in ref.stride))
    else:
        count = int(np.prod(size, dtype=np.int64))
        if ref.offset + count > data.size:
            raise ValueError(f"tensor of size {size} overruns storage {ref.storage.key}")
        view = data[ref.offset:ref.offset + count].reshape(size)
    return np.array(view, dtype=data.dtype.newbyteorder("="))  # a copy, native byte order


def _read(f, honour_strides):
    file_size = os.fstat(f.fileno()).st_size

    def load():
        return _RestrictedUnpickler(f).load()

    if load() != MAGIC_NUMBER:
        raise ValueError("no legacy torch magic number")
    if load() != PROTOCOL_VERSION:
        raise ValueError("unsupported torch protocol version")
    sys_info = load()
    byteorder = "<" if sys_info.get("little_endian", True) else ">"

    unpickler = _RestrictedUnpickler(f)  # keeps the storages the state dict's tensors name
    state = unpickler.load()
    if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
        raise ValueError("the saved object is not a state dict of tensors")
    keys = load()

    arrays = {}
    for key in keys:
        storage = unpickler.storages.get(str(key))
        if storage is None:
            raise ValueError(f"storage {key} is listed but no tensor uses it")
        dtype = storage.dtype.newbyteorder(byteorder)
        head = f.read(8)
        if len(head) != 8:
            raise EOFError(f"truncated before storage {key}")
        (numel,) = struct.unpack(byteorder + "q", head)
        if numel != storage.numel:
            raise ValueError(f"storage {key} holds {numel} elements, its tensors expect {storage.numel}")
        if numel * dtype.itemsize > file_size - f.tell():  # checked before read() allocates that much
            raise EOFError(f"truncated in storage {key}")
        raw = f.read(numel * dtype.itemsize)
        arrays[storage.key] = np.frombuffer(raw, dtype)

    missing = [s for s in unpickler.storages if s not in arrays]
    if missing:
        raise ValueError(f"storages {missing[:3]} are used but not in the file")
    return OrderedDict((str(name), _tensor(ref, arrays[ref.storage.key], honour_strides))
                       for name, ref in state.items())


def load_torch_legacy(path, honour_strides=True):
    """{name: numpy array} of a legacy-format torch state dict, in the file's order.

    honour_strides=False reads each tensor as contiguous bytes (wrong for permuted layouts; tests use it
    to show the strides matter)."""
    path = str(path)
    try:
        # regular files only (utils/files.py): a FIFO would block the read, a device never end it
        with io.BufferedReader(open_regular(path)) as f:
            if f.read(4) == b"PK\x03\x04":
                raise ValueError("this is the zip-based torch format (torch >= 1.6), not the legacy one")
            f.seek(0)
            return _read(f, honour_strides)
    except OSError as e:
        raise WeightsFormatError(f"cannot read {path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise WeightsFormatError(f"{path} is not a readable legacy torch state dict: {e}") from None
