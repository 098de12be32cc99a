"""Preprocessed inputs read from ``.npy`` / ``.npz`` files, as untrusted input.

``allow_pickle`` stays off: an object array in a ``.npy`` would run arbitrary code when unpickled, so it is
refused by name. Every way a file can be unusable (missing, truncated, not an array file, an object array, an
archive with several arrays) is an :class:`~edgeformer.errors.InvalidInputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError

ARRAY_SUFFIXES = (".npy", ".npz")


def read_array_file(path: str | Path, input_name: str | None = None) -> np.ndarray:
    """The array in ``path``: a ``.npy``, or a ``.npz`` holding one array (or one named ``input_name``).

    Raises:
        InvalidInputError: the file is missing, unreadable, truncated, pickled, or an archive whose array is
            ambiguous; the message names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InvalidInputError(f"{path}: {what}; pass a .npy or .npz file of a preprocessed input.")
    try:
        with path.open("rb") as f:
            head = f.read(6)
        if not head.startswith((b"\x93NUMPY", b"PK")):  # np.load would try to unpickle anything else
            raise InvalidInputError(
                f"{path}: not a numpy array file (it starts with {head!r}); save the array with np.save or np.savez."
            )
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return _one_array(path, loaded, input_name)
        return loaded
    except InvalidInputError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e):  # numpy's words for an object array
            raise InvalidInputError(
                f"{path}: holds a pickled object array, which edgeformer never loads (unpickling runs code); "
                "save a numeric array instead: np.save(path, x.astype(np.float32))."
            ) from e
        raise _unreadable(path, e) from e
    # numpy's and zipfile's parsers raise more types on a corrupt file: TokenError, SyntaxError (a v1 header, a dtype
    # string) and NotImplementedError (a zip version), found by fuzz/; the block only reads, so nothing of ours hides
    except Exception as e:
        raise _unreadable(path, e) from e


def _one_array(path: Path, archive: np.lib.npyio.NpzFile, input_name: str | None) -> np.ndarray:
    names = list(archive.files)
    name = input_name if input_name is not None and input_name in names else names[0] if len(names) == 1 else None
    if name is not None:
        array = archive[name]
        if not isinstance(array, np.ndarray):  # numpy hands back the raw bytes of a member that is no .npy
            raise InvalidInputError(f"{path}: {name} in the archive is not a .npy array; save it with np.savez.")
        return array
    wanted = f" or one named {input_name!r}" if input_name else ""
    raise InvalidInputError(
        f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); predict needs exactly one{wanted}."
    )


def _unreadable(path: Path, e: BaseException) -> InvalidInputError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return InvalidInputError(
        f"{path}: not a readable numpy array file ({reason}); the file is truncated or not made by np.save/np.savez."
    )
