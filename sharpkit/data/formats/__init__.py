"""The on-disk dataset formats, one module each; :mod:`sharpkit.data.datasets` registers their loaders by name.

- :mod:`.cifar`: CIFAR-10 / CIFAR-100, the pickled batches of the official python archives.
- :mod:`.tinyimagenet`: TinyImageNet, the JPEG folders of ``tiny-imagenet-200/``, decoded once into a cache.
- :mod:`.cifar_c`: CIFAR-10-C / CIFAR-100-C, one ``.npy`` per corruption (downloaded or generated).
- :mod:`.npz`: one ``.npz`` file of train and test arrays.
- :mod:`.digits`: scikit-learn's bundled digits, upsampled to 32 px (no files).
- :mod:`._common`: what they share: the data root, the "where it looked" messages, downloads, label checks.

A format module knows nothing of the registry (none imports :mod:`sharpkit.data.datasets`), so the
registry imports them without a cycle and each name is registered once, there.
"""
