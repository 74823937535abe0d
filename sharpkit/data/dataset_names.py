"""What a sharpkit dataset name says, parsed in one place: the registered name and, optionally, a path.

A dataset name is a registered name (``cifar10``, ``digits``, ``tinyimagenet``, ``cifar10-c``...), optionally
followed by ``:`` and a path: ``npz:../shared/data/cifar10-jpeg-20k.npz``, ``cifar10-c:/some/dir``. The
registered part is read case-insensitively and without its surrounding spaces, the path without its
surrounding spaces; everything after the first ``:`` is the path, so a path may itself hold ``:``
(``npz:C:/data/x.npz``). Which names are registered, and which of them take a path, is the registry's
business (:mod:`sharpkit.data.datasets`); this module only parses.

Configs store a dataset name as it was given (run ids hash that text), so :attr:`DatasetName.text` is the
name to store and show; :attr:`DatasetName.base` and :attr:`DatasetName.path` are what it means.

Pure Python (no torch, no numpy): the torch-free analysis layer imports it.

Examples:
    >>> from sharpkit.data.dataset_names import parse_dataset_name
    >>> name = parse_dataset_name(" NPZ : data/cifar10-small.npz ")
    >>> name.base, name.path, name.stem
    ('npz', 'data/cifar10-small.npz', 'cifar10-small')
    >>> parse_dataset_name("cifar10-c:/some/dir").family
    'cifar10'
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DatasetName", "parse_dataset_name"]

_FORMS = ("a registered name such as 'cifar10' or 'digits', optionally followed by ':' and a path "
          "('npz:data/my.npz', 'cifar10-c:/some/dir')")


@dataclass(frozen=True)
class DatasetName:
    """A parsed dataset name; ``DatasetName(text)`` parses ``text`` (as :func:`parse_dataset_name` does).

    Attributes:
        text: the name exactly as given (what a config stores).
        base: the registered part: the text before the first ``:``, without surrounding spaces, lower case.
        path: the text after the first ``:`` without surrounding spaces; ``None`` without a ``:`` or when
            nothing but spaces follows it (``npz:``).

    Raises:
        ValueError: ``text`` is not a string, or its registered part is empty (``""``, ``" "``, ``":x"``).

    Examples:
        >>> from sharpkit.data.dataset_names import DatasetName
        >>> DatasetName("npz:C:/data/x.npz")
        DatasetName(text='npz:C:/data/x.npz', base='npz', path='C:/data/x.npz')
        >>> name = DatasetName("CIFAR10")
        >>> name.base, name.path, name.has_colon, name.exact_base
        ('cifar10', None, False, '')
    """

    text: str
    base: str = field(init=False)
    path: str | None = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ValueError(f"Expected a dataset name as a string: {_FORMS}, but got {self.text!r} "
                             f"({type(self.text).__name__}).")
        head, _, tail = self.text.partition(":")
        base = head.strip().lower()
        if not base:
            empty = "is empty" if not self.text.strip() else "has nothing before ':'"
            raise ValueError(f"Expected a dataset name: {_FORMS}, but got {self.text!r}, which {empty}.")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "path", tail.strip() or None)

    @property
    def has_colon(self) -> bool:
        """Whether the name has a ``:``, that is a path part, even an empty one (``digits:`` has one: the
        registry refuses it for a dataset that takes no path).

        Examples:
            >>> from sharpkit.data.dataset_names import parse_dataset_name
            >>> parse_dataset_name("npz:").has_colon, parse_dataset_name("npz:").path
            (True, None)
        """
        return ":" in self.text

    @property
    def exact_base(self) -> str:
        """:attr:`base` when the name spells it exactly as registered (lower case, no spaces around it),
        else ``""``.

        What the choices made when a run's config is built match on (the recipe, the augmentation, the
        reproduced weight-decay+SAM bug), as do the dry run and the names a reader sees: a name spelt
        otherwise (``"CIFAR100"``, ``" tinyimagenet"``) loads the same data, but has always been given the
        fallback there (CIFAR-10's recipe), and a config's run id hashes what that fallback chose.

        Examples:
            >>> from sharpkit.data.dataset_names import parse_dataset_name
            >>> parse_dataset_name("cifar100").exact_base, parse_dataset_name("CIFAR100").exact_base
            ('cifar100', '')
        """
        return self.base if self.text.partition(":")[0] == self.base else ""

    @property
    def family(self) -> str:
        """The clean dataset a corrupted test set (a registered name ending in ``-c``) is made from; for any
        other name its :attr:`base`.

        Examples:
            >>> from sharpkit.data.dataset_names import parse_dataset_name
            >>> parse_dataset_name("cifar100-c").family, parse_dataset_name("digits").family
            ('cifar100', 'digits')
        """
        return self.base.removesuffix("-c")

    @property
    def stem(self) -> str | None:
        """The file or folder name of :attr:`path` without its folders (``/`` or ``\\``) and without a
        ``.npz`` suffix; ``None`` without a path.

        Examples:
            >>> from sharpkit.data.dataset_names import parse_dataset_name
            >>> parse_dataset_name("npz:../shared/data/cifar10-jpeg-20k.npz").stem
            'cifar10-jpeg-20k'
            >>> parse_dataset_name("npz:C:\\\\data\\\\tiny.npz").stem
            'tiny'
        """
        if self.path is None:
            return None
        return self.path.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".npz")

    def with_path(self, path: str) -> str:
        """This name with ``path`` as its path: the registered part as given (case kept, surrounding spaces
        dropped), ``:`` and ``path``.

        Examples:
            >>> from sharpkit.data.dataset_names import parse_dataset_name
            >>> parse_dataset_name(" NPZ:data/x.npz").with_path("/home/me/data/x.npz")
            'NPZ:/home/me/data/x.npz'
        """
        return f"{self.text.partition(':')[0].strip()}:{path}"


def parse_dataset_name(name: str) -> DatasetName:
    """Parse a dataset name into its registered part and its path (see :class:`DatasetName`).

    Raises:
        ValueError: ``name`` is not a string, or its registered part is empty; the message says what a
            dataset name looks like.

    Examples:
        >>> from sharpkit.data.dataset_names import parse_dataset_name
        >>> parse_dataset_name("digits")
        DatasetName(text='digits', base='digits', path=None)
        >>> parse_dataset_name(" Cifar10-C : /data/CIFAR-10-C ").path
        '/data/CIFAR-10-C'
        >>> parse_dataset_name(":data/x.npz")  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: Expected a dataset name: a registered name such as 'cifar10' or 'digits', optionally ... but
        got ':data/x.npz', which has nothing before ':'.
    """
    return DatasetName(name)
