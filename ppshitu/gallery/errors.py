"""The gallery's user-facing error."""
from ..errors import PPShiTuError


class GalleryError(PPShiTuError):
    """A gallery directory is missing, damaged or does not match the model or vectors given."""
