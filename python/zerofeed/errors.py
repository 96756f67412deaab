"""Exceptions raised by zerofeed.

Every class subclasses :class:`ZerofeedError` *and* the built-in exception that fits, so
``except ValueError`` keeps working, and each carries ``argument``: the name of the
parameter at fault. Messages say what was wrong and how to fix it.

Example:
    >>> import zerofeed as zf
    >>> try:
    ...     zf.view(bytearray(4))[9]
    ... except IndexError as err:
    ...     print(type(err).__name__, err.argument)
    ViewIndexError key

"""

from __future__ import annotations


class ZerofeedError(Exception):
    """Base class of every zerofeed error; ``argument`` names the parameter at fault."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class ViewIndexError(ZerofeedError, IndexError):
    """An index outside a view's shape, or more indices than axes."""


class LayoutError(ZerofeedError, ValueError):
    """A shape, stride, slice or reshape request that cannot be a view."""


class DTypeError(ZerofeedError, TypeError):
    """An element type zerofeed does not handle, or mismatched types."""


class UnsupportedSourceError(ZerofeedError, TypeError):
    """An object that exposes neither the buffer protocol, DLPack nor an array interface."""


class ExportError(ZerofeedError, BufferError):
    """A conversion that cannot be done as asked (e.g. ``copy=False`` where a copy is needed)."""


class ReadOnlyError(ZerofeedError, BufferError):
    """A writable export of read-only data."""


class DeviceError(ZerofeedError, ValueError):
    """Data on a device the target cannot read, or a device that is not there."""


class NpyFormatError(ZerofeedError, ValueError):
    """A ``.npy`` file whose header or size is invalid; the message names the file and field."""


class MemoryBudgetError(ZerofeedError, MemoryError):
    """Memory that cannot be had within the budget, the memlock limit or available RAM."""


class PipelineError(ZerofeedError, ValueError):
    """An invalid Loader configuration or op chain."""


class SourceChangedError(ZerofeedError, OSError):
    """A memory-mapped file changed (truncated, rewritten) after it was opened.

    Raised by zerofeed's own reads of it (Loader batches, copies, conversions that copy) for
    the batch that saw the change and every later one; the message names the file. Reads by
    other code through zero-copy views never crash: the vanished bytes read as zeros.
    """


class FileMissingError(ZerofeedError, FileNotFoundError):
    """A path that does not exist (``open_npy`` and friends)."""


class SourceIOError(ZerofeedError, OSError):
    """The operating system refused to open, read or map a file (permissions, limits)."""


class ImageDecodeError(ZerofeedError, ValueError):
    """Image bytes that do not decode: truncated or corrupt JPEG/PNG, an empty file, a file
    that is not an image, an unsupported format (GIF, WebP, ...), or more pixels than
    ``max_pixels``. ``file`` names the file, ``shard.tar:member`` or ``bytes[i]``.

    Example:
        >>> import zerofeed as zf
        >>> try:
        ...     zf.Images([b"GIF89a..."])[0]
        ... except zf.ImageDecodeError as err:
        ...     print(err.file, "|", err)
        bytes[0] | bytes[0]: GIF is not supported: convert it to JPEG or PNG

    """

    file: str = ""


class ImageSourceError(ZerofeedError, ValueError):
    """An image source that cannot be built: a folder without images, labels of the wrong
    length, a tar shard cut short or with a member outside the archive. ``file`` names the
    folder, file or shard (empty when the fault is not in one).
    """

    file: str = ""


class InternalError(ZerofeedError, RuntimeError):
    """A bug in zerofeed (a Rust panic caught at the boundary); please report the message."""


class FrameworkMissingError(ZerofeedError, ImportError):
    """A framework that is not installed; the message says how to install it."""


ALL_ERRORS: dict[str, type[ZerofeedError]] = {
    cls.__name__: cls
    for cls in (
        ViewIndexError,
        LayoutError,
        DTypeError,
        UnsupportedSourceError,
        ExportError,
        ReadOnlyError,
        DeviceError,
        NpyFormatError,
        MemoryBudgetError,
        PipelineError,
        SourceChangedError,
        FileMissingError,
        SourceIOError,
        InternalError,
        FrameworkMissingError,
        ImageDecodeError,
        ImageSourceError,
    )
}
