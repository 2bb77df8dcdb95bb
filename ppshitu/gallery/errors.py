"""The gallery's user-facing error."""
from ..errors import PPShiTuError


class GalleryError(PPShiTuError):
    """A gallery directory is missing, damaged or does not match the model or vectors given."""


class GalleryWriteError(GalleryError):
    """A new gallery version could not be written (disk full, a quota, no permission ...); the gallery
    is unchanged. `errno`: the OS error's number, when there was one."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno
