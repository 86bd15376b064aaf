"""Exceptions with messages that name the file/field and what was expected."""

__all__ = ["EIEError", "ImageFormatError", "ConfigError", "InputError", "ToolMissing"]


class EIEError(ValueError):
    """Base class: every user-facing failure of the golden model."""


class ImageFormatError(EIEError):
    """An EIE image file (or in-memory image) violates docs/image-format.md."""


class ConfigError(EIEError):
    """A hardware configuration cannot run the given image (sizes, widths)."""


class InputError(EIEError):
    """An input array given by the user is unusable (shape, dtype, NaN/inf)."""


class ToolMissing(EIEError):
    """An external tool is not installed; the message says how to install it."""
